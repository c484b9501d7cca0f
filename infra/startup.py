"""Start failures an operator fixes from the message alone, logged as one line.

A stage that cannot reach its broker, that its cluster refuses, or that cannot listen
where it was told to, does not start: it exits 1 (an orchestrator's restart policy
sees a failure) and says why. mode's and Faust's workers log any start failure with
its traceback, twenty lines of library frames around the one sentence the operator
needs. :class:`StartError` marks the failures whose message is the whole story (what
failed, where, and the setting that decides it), and :class:`OneLineStartErrors`, a
filter on the process's log handler (vmpulse/logs.py), drops their traceback.
Anything else keeps its traceback: it is a bug, and the frames are how it is found.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

__all__ = ["OneLineStartErrors", "StartError", "listening"]


class StartError(Exception):
    """A stage cannot start, for a reason its message names with the setting to change."""

    def __str__(self) -> str:
        # the message alone, also under a library's error class that prefixes its name
        return Exception.__str__(self)


class OneLineStartErrors(logging.Filter):
    """Log a :class:`StartError` as its message, without the traceback (module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, StartError):
            record.msg, record.args = "cannot start: %s", (exc,)
            record.exc_info = None
            record.exc_text = None
        return True


@contextlib.contextmanager
def listening(what: str, host: str | None, port: int, setting: str) -> Iterator[None]:
    """Turn a failed bind (the port is taken, the address is not this host's, a port
    below 1024 without the privilege) into a :class:`StartError` naming ``setting``."""
    try:
        yield
    except OSError as exc:
        where = f"{host or '*'}:{port}"
        # asyncio re-raises a bind's error with the address in its text: the errno's alone
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StartError(f"cannot listen for {what} on {where} ({setting}): {reason}") from exc
