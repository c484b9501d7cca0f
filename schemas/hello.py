"""The signed hello that opens a TCP agent connection, as a msgspec Struct: pure.

On the wire::

    {"type": "hello", "vm_id": "<uuid>", "ts": <epoch seconds, int>,
     "nonce": "<16-64 hex chars>", "sig": "<hex HMAC-SHA256>"}

Its shape (a lowercase UUID, an integer time, a hex nonce) is checked while
decoding; the signature, the clock window and replays are checked by
:mod:`agents.handshake`, which holds the keys.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

__all__ = ["HELLO_FIELDS", "Hello", "decode_hello", "encode_hello"]

# \Z, not $: the whole text must match (``$`` also matches before a final newline).
_UUID: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z"
_NONCE: Final = r"^[0-9a-f]{16,64}\Z"


class Hello(msgspec.Struct, kw_only=True, frozen=True):
    """A hello; a field that is missing is ``None`` and refused by the verifier by name.

    ``type`` is a required field, not a msgspec tag: a lone tagged Struct would
    accept an object without it, and a line that does not say ``hello`` is not one.
    """

    type: Literal["hello"]
    vm_id: Annotated[str, msgspec.Meta(pattern=_UUID)] | None = None
    ts: int | None = None
    nonce: Annotated[str, msgspec.Meta(pattern=_NONCE)] | None = None
    sig: str | None = None


HELLO_FIELDS: Final = ("vm_id", "ts", "nonce", "sig")
"""The fields in the order the verifier names what is wrong with them."""

_decoder = msgspec.json.Decoder(Hello)
_encoder = msgspec.json.Encoder()


def decode_hello(line: bytes) -> Hello:
    """Raises msgspec.DecodeError (not JSON) or msgspec.ValidationError (not a good hello)."""
    return _decoder.decode(line)


def encode_hello(hello: Hello) -> bytes:
    """Compact JSON, ``type`` first (what agents send; no trailing newline)."""
    return _encoder.encode(hello)
