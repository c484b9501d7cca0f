"""A user's Socket.IO namespace room and client-supplied VM ids (``admin`` and ``vm:<id>``
are named beside the event schema, schemas/events.py, since the worker addresses them too).

A user's namespace is a keyed hash of their id, not the id itself: resource
events are named ``<namespace>:<resource>:<action>``, so the name travels to
the browser and into logs, and a keyed hash neither reveals the id nor lets
anyone compute another user's room without the server's secret. Every gateway
instance derives the same name from the same secret, so any instance can reach
any user.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable

from infra.config import Secret

__all__ = [
    "MAX_VM_ID_LENGTH",
    "NAMESPACE_PREFIX",
    "namespace_function",
    "parse_vm_id",
    "user_namespace",
]

NAMESPACE_PREFIX = "user_"
MAX_VM_ID_LENGTH = 128
# 20 hex digits = 80 bits: collisions between users are out of reach, names stay short.
_NAMESPACE_HEX = 20
_NAMESPACE_CACHE = 65_536


def user_namespace(secret: Secret | str, user_id: str) -> str:
    """``user_<first 20 hex of HMAC-SHA256(secret, user id)>``."""
    key = secret.reveal() if isinstance(secret, Secret) else secret
    digest = hmac.new(key.encode(), user_id.encode(), hashlib.sha256).hexdigest()
    return NAMESPACE_PREFIX + digest[:_NAMESPACE_HEX]


def namespace_function(secret: Secret | str) -> Callable[[str], str]:
    """Bind the secret once, so callers (router, namespace) never hold it themselves.

    Results are remembered (bounded, least recently used out first): the
    router names a user's room for every event and every handshake names one,
    and an HMAC each time showed on the profiles.
    """
    key = secret.reveal() if isinstance(secret, Secret) else secret

    @functools.lru_cache(maxsize=_NAMESPACE_CACHE)
    def namespace_of(user_id: str) -> str:
        return user_namespace(key, user_id)

    return namespace_of


def parse_vm_id(value: object) -> str | None:
    """A client-supplied VM id if it is plausible, else None.

    The id is only ever used as a lookup key in the directory; bounding it keeps
    junk out of room names and logs (no control characters, no huge strings).
    """
    if not isinstance(value, str):
        return None
    if not 0 < len(value) <= MAX_VM_ID_LENGTH or not value.isprintable():
        return None
    if value != value.strip():
        return None
    return value
