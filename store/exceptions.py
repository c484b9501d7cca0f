"""Errors of the metric store, shared by every stage that writes or reads it.

Hierarchy::

    StoreError              the writer's side (``store.clickhouse``): opening the
                            store, an insert, a command or the pipeline's own query
                            failed; the message says which

    ReadError               a read of the metric store did not give rows
    ├── QueryRejected       the SQL policy refused the statement (HTTP 400);
    │                       the message says which rule, never the data
    ├── ReadBusy            too many reads in flight for the process or the user
    │                       (HTTP 429); ``retry_after_s`` says when to come back
    ├── ReadTimeout         the read ran out of time and was cancelled in the
    │                       engine (HTTP 504)
    └── ReadFailed          the engine refused or failed the statement (unknown
                            column, syntax, memory limit); the message is the
                            engine's first line, without the server's version

The gateway turns each into its status; ``vmpulse query`` prints the message.
"""

from __future__ import annotations

__all__ = ["QueryRejected", "ReadBusy", "ReadError", "ReadFailed", "ReadTimeout", "StoreError"]


class StoreError(Exception):
    """The metric store refused or failed a request; the message says which."""


class ReadError(Exception):
    """Base of every error of the read side."""


class QueryRejected(ReadError):
    """The statement is not one read-only SELECT over what the policy allows."""


class ReadBusy(ReadError):
    """Past the concurrency cap of the process or of one user; try again later."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ReadTimeout(ReadError):
    """The read took longer than its limit; the engine was told to stop it."""


class ReadFailed(ReadError):
    """The engine refused or failed the read; ``str(exc)`` is its message."""
