"""Errors of the streams package.

StreamsError
+-- StoreError          the metric store refused or failed a request

Reads for users have their own errors (``vmpulse.exceptions``, ReadError).
"""

from __future__ import annotations

__all__ = ["StoreError", "StreamsError"]


class StreamsError(Exception):
    """Base of every error raised by streams/."""


class StoreError(StreamsError):
    """The metric store refused or failed a request; the message says which."""
