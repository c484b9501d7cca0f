"""The signed hello that opens a TCP agent connection: pure, no I/O.

On TCP (development and tests only) nothing in the transport says which VM is
talking, so the first line must prove it. The line is a :class:`schemas.hello.Hello`::

    {"type": "hello", "vm_id": "<uuid>", "ts": <epoch seconds, int>,
     "nonce": "<16-64 hex chars>", "sig": "<hex HMAC-SHA256>"}

``sig = HMAC-SHA256(vm_key, f"hello|{vm_id}|{ts}|{nonce}")`` where
``vm_key = HMAC-SHA256(VMPULSE_AGENT_SECRET, vm_id)`` (:func:`vm_key`). Per-VM
keys mean a leaked key lets one speak only as its own VM; the host only needs
the master secret. Replays are refused twice over: ``ts`` must lie within
``window_s`` of the bridge's clock, and a nonce seen in that window is refused
(:class:`NonceCache`). The signature is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from typing import Final

import msgspec

from agents.exceptions import HandshakeError
from schemas.hello import HELLO_FIELDS, Hello, decode_hello, encode_hello

__all__ = [
    "HANDSHAKE_MAX_BYTES",
    "HandshakeError",
    "NonceCache",
    "make_hello",
    "verify_hello",
    "vm_key",
]

HANDSHAKE_MAX_BYTES: Final = 4096
"""A hello line is ~200 bytes; a peer that sends more before its first newline is cut off."""

DEFAULT_WINDOW_S: Final = 60.0

# What each field's refusal says; a missing field and a field of the wrong shape alike.
_REFUSALS: Final = {
    "vm_id": ("handshake_malformed", "vm_id is not a lowercase UUID"),
    "ts": ("handshake_malformed", "ts is not an integer"),
    "nonce": ("handshake_malformed", "nonce is not 16-64 hex characters"),
    "sig": ("handshake_unsigned", "hello has no signature"),
}


def vm_key(master_secret: str, vm_id: str) -> bytes:
    """The per-VM key: HMAC-SHA256(master secret, vm id)."""
    return hmac.new(master_secret.encode(), vm_id.encode(), hashlib.sha256).digest()


def _signature(key: bytes, vm_id: str, ts: int, nonce: str) -> str:
    msg = f"hello|{vm_id}|{ts}|{nonce}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def make_hello(
    master_secret: str, vm_id: str, *, ts: int | None = None, nonce: str | None = None
) -> bytes:
    """The hello line (with its ``\\n``) an agent for ``vm_id`` sends first."""
    ts = int(time.time()) if ts is None else ts
    nonce = secrets.token_hex(16) if nonce is None else nonce
    sig = _signature(vm_key(master_secret, vm_id), vm_id, ts, nonce)
    return encode_hello(Hello(type="hello", vm_id=vm_id, ts=ts, nonce=nonce, sig=sig)) + b"\n"


class NonceCache:
    """Nonces seen within the replay window; old ones expire, the size is capped."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, max_size: int = 100_000) -> None:
        self.window_s = window_s
        self.max_size = max_size
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check_and_add(self, nonce: str, now: float) -> bool:
        """True if ``nonce`` is new (and remember it); False for a replay."""
        horizon = now - 2 * self.window_s
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if at >= horizon and len(self._seen) < self.max_size:
                break
            del self._seen[oldest]
        if nonce in self._seen:
            return False
        self._seen[nonce] = now
        return True


def verify_hello(
    line: bytes,
    master_secret: str,
    *,
    now: float,
    nonces: NonceCache,
    window_s: float = DEFAULT_WINDOW_S,
) -> str:
    """The VM id a valid hello proves; raises :class:`HandshakeError` otherwise."""
    hello = _decode(line)
    vm_id, ts, nonce, sig = hello.vm_id, hello.ts, hello.nonce, hello.sig
    for field, value in zip(HELLO_FIELDS, (vm_id, ts, nonce, sig), strict=True):
        if value is None:
            raise HandshakeError(*_REFUSALS[field])
    assert vm_id is not None and ts is not None and nonce is not None and sig is not None
    expected = _signature(vm_key(master_secret, vm_id), vm_id, ts, nonce)
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        raise HandshakeError("handshake_bad_signature", f"bad signature for VM {vm_id}")
    if abs(now - ts) > window_s:
        raise HandshakeError("handshake_stale", f"hello for VM {vm_id} is {now - ts:.0f}s off")
    if not nonces.check_and_add(nonce, now):
        raise HandshakeError("handshake_replay", f"nonce replayed for VM {vm_id}")
    return vm_id


def _decode(line: bytes) -> Hello:
    """The hello of a first line; what is wrong with it as a :class:`HandshakeError`."""
    try:
        return decode_hello(line)
    except msgspec.ValidationError as exc:  # a DecodeError too: caught first
        # msgspec names the first bad field as "... - at `$.<field>`"; anything else
        # (not an object, no or another "type") is not a hello at all.
        field = str(exc).rpartition("`$.")[2].rstrip("`")
        if field in _REFUSALS:
            raise HandshakeError(*_REFUSALS[field]) from None
        raise HandshakeError("handshake_missing", "first line is not a hello") from None
    except msgspec.DecodeError as exc:
        raise HandshakeError("handshake_malformed", "first line is not JSON") from exc
