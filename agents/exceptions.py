"""Errors raised by the agents package.

Library errors (``OSError`` from sockets, aiokafka errors) are translated where
they cross into our code, so callers catch one hierarchy::

    AgentsError
     +-- FramingError        the framer was driven against its contract (a caller bug)
     +-- TransportError      a stream could not be opened or broke
     |    +-- ConnectError   connecting to a peer failed (retry with back-off)
     |    +-- StreamError    reading or writing an open stream failed
     +-- IdentityError       a transport name does not identify a VM (e.g. not a UUID)
     +-- Refused             a listener turns a connection away (``reason``: a stable code)
          +-- HandshakeError the TCP hello is missing, malformed, stale, replayed or forged

Malformed *input* is never an exception here: the framer reports it as a frame
(:class:`agents.framing.Oversize`, :class:`agents.framing.Overflow`,
:class:`agents.framing.Truncated`) so a bad line cannot crash a connection; only
an Overflow (a line past the receive buffer) makes the bridge close it, on purpose.
"""

from __future__ import annotations

__all__ = [
    "AgentsError",
    "ConnectError",
    "FramingError",
    "HandshakeError",
    "IdentityError",
    "Refused",
    "StreamError",
    "TransportError",
]


class AgentsError(Exception):
    """Base class for every error raised by :mod:`agents`."""


class FramingError(AgentsError):
    """The framer was used against its contract, e.g. fed without being drained."""


class TransportError(AgentsError):
    """A transport stream could not be used."""


class ConnectError(TransportError):
    """Connecting to a peer failed; the caller retries with back-off."""


class StreamError(TransportError):
    """Reading from or writing to an open stream failed."""


class IdentityError(AgentsError):
    """A transport-level name (socket file name, CID) does not identify a VM."""


class Refused(AgentsError):
    """A connection is turned away before it is served; ``reason`` is a stable code for
    metrics, the message is for logs and never contains key material."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class HandshakeError(Refused):
    """The TCP hello is missing, malformed, stale, replayed or wrongly signed."""
