"""Errors raised by the gateway, translated at the edge into refusals or HTTP statuses.

Hierarchy::

    GatewayError
    ├── AuthError             a client could not be identified; ``str(exc)`` is the
    │   │                     exact refusal text the Socket.IO contract promises
    │   ├── TokenMissing      "Authentication token required"
    │   ├── TokenInvalid      "Authentication failed" (bad signature, expired, malformed)
    │   └── UnknownUser       "User not found" (valid token, no such user in the directory)

The store's errors (``store.exceptions``: QueryRejected, ReadBusy, ...) are
the store's own; the HTTP API turns them into statuses.

PyJWT errors never leave :mod:`gateway.auth`; they become :class:`TokenInvalid`
so callers handle one family of errors and the refusal text cannot drift.
"""

from __future__ import annotations

__all__ = [
    "AUTH_FAILED",
    "TOKEN_REQUIRED",
    "USER_NOT_FOUND",
    "AuthError",
    "GatewayError",
    "TokenInvalid",
    "TokenMissing",
    "UnknownUser",
]

TOKEN_REQUIRED = "Authentication token required"
AUTH_FAILED = "Authentication failed"
USER_NOT_FOUND = "User not found"


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


class AuthError(GatewayError):
    """A client could not be identified; the message is safe to send to the client.

    Subclasses fix the message so that a refusal never leaks why a token was
    rejected (expired vs. bad signature) nor echoes any part of the token.
    """

    message = AUTH_FAILED

    def __init__(self) -> None:
        super().__init__(self.message)


class TokenMissing(AuthError):
    message = TOKEN_REQUIRED


class TokenInvalid(AuthError):
    message = AUTH_FAILED


class UnknownUser(AuthError):
    message = USER_NOT_FOUND
