"""Resource events and the outbound envelope (DESIGN.md, Socket.IO contract).

The worker writes :class:`OutboundEvent` to ``events.outbound`` with its
recipients spelled out; a gateway instance never decides *who* may see an
event, it only finds the sockets of the users and rooms the event names. That
keeps authorization in one place (the router) and the gateway stateless.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import msgspec

__all__ = [
    "METRICS_EVENT",
    "OutboundEvent",
    "ResourceEvent",
    "decode_outbound",
    "encode_outbound",
    "utc_now_iso",
]

METRICS_EVENT = "metricsUpdate"


def new_event_id() -> str:
    """32 random hex digits, like ``uuid4().hex`` (which cost 4x more: 2.8 us per event)."""
    return os.urandom(16).hex()


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ResourceEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """A change to a resource, as published to ``control.events`` or derived by a stage."""

    resource: str
    action: str
    data: Any = None
    triggered_by: str | None = None
    id: str = msgspec.field(default_factory=new_event_id)
    time: str = msgspec.field(default_factory=utc_now_iso)
    status: str = "success"
    error: str | None = None


class OutboundEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """An event on ``events.outbound`` with the recipients it may reach, and nobody else.

    ``users`` are user ids (each reached in its own namespace room); ``admins``
    adds every admin; ``rooms`` are Socket.IO rooms such as ``vm:<id>``.
    A ``metrics`` resource event is delivered to its rooms as ``metricsUpdate``
    with ``data`` as the payload.
    """

    resource: str
    action: str
    data: Any = None
    id: str = msgspec.field(default_factory=new_event_id)
    timestamp: str = msgspec.field(default_factory=utc_now_iso)
    status: str = "success"
    error: str | None = None
    users: list[str] = msgspec.field(default_factory=list)
    admins: bool = False
    rooms: list[str] = msgspec.field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        """The Socket.IO payload a frontend receives for a resource event."""
        return {
            "status": self.status,
            "error": self.error,
            "data": self.data,
            "timestamp": self.timestamp,
            "id": self.id,
        }


_outbound_decoder = msgspec.json.Decoder(OutboundEvent)
_encoder = msgspec.json.Encoder()


def encode_outbound(event: OutboundEvent) -> bytes:
    return _encoder.encode(event)


def decode_outbound(raw: bytes) -> OutboundEvent:
    return _outbound_decoder.decode(raw)
