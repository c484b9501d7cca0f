"""Socket.IO packets whose JSON is msgspec's: python-socketio's packet format, cheaper.

python-socketio decodes every packet a client sends (CONNECT with its auth,
each event) with engine.io's JSON module, which builds a new stdlib decoder
per call to pass a guard against huge integers; that was a visible share of
a handshake. :class:`SocketIOPacket` keeps python-socketio's framing (types,
namespace, ack ids, binary attachments) and swaps the JSON: msgspec, which
writes the compact form python-socketio asks for. The guard stays: a message
with a run of more than 100 digits (an integer that long costs quadratic time
to parse) goes through engine.io's guarded decoder instead, which refuses
such integers and accepts such strings. Non-ASCII text goes out as UTF-8 instead of
``\\u`` escapes: the same JSON value, and what fan-out (gateway/fanout.py)
writes already. Only this server's packets use it (a packet class, not the
process-wide ``json=`` option, which would change engine.io's packets too).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from engineio import json as eio_json
from socketio import packet as sio_packet

__all__ = ["SocketIOPacket"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_LONG_DIGITS = re.compile(r"\d{101}")


class _MsgspecJson:
    """The two functions python-socketio calls on its packet class's ``json``."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return _encode(obj).decode()

    @staticmethod
    def loads(text: str, **_: Any) -> Any:
        if _LONG_DIGITS.search(text) is not None:
            return eio_json.loads(text)
        return _decode(text)


class SocketIOPacket(sio_packet.Packet):  # type: ignore[misc]
    json = _MsgspecJson
