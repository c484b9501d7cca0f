"""Errors of the streams package.

StreamsError
+-- StoreError          the metric store refused or failed a request
    +-- QueryRejected   a query is not allowed (not read-only, too large)
"""

from __future__ import annotations

__all__ = ["QueryRejected", "StoreError", "StreamsError"]


class StreamsError(Exception):
    """Base of every error raised by streams/."""


class StoreError(StreamsError):
    """The metric store refused or failed a request; the message says which."""


class QueryRejected(StoreError):
    """A query is not allowed by the read-only rules."""
