"""Resource events and the outbound envelope (DESIGN.md, Socket.IO contract).

The worker writes :class:`OutboundEvent` to ``events.outbound`` with its
recipients spelled out; a gateway instance never decides *who* may see an
event, it only finds the sockets of the users and rooms the event names. That
keeps authorization in one place (the router) and the gateway stateless.

The names both sides must agree on live here, beside the envelope: the Kafka
key of an event (:func:`routing_key`, the resource it is about, so one
resource's events stay in order) and the Socket.IO rooms the worker addresses
and the gateway joins (:data:`ADMIN_ROOM`, :func:`vm_room`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from random import getrandbits
from typing import Any

import msgspec

__all__ = [
    "ADMIN_ROOM",
    "METRICS_EVENT",
    "METRICS_RESOURCE",
    "VM_ROOM_PREFIX",
    "OutboundEvent",
    "ResourceEvent",
    "data_text",
    "decode_outbound",
    "decode_outbound_for_routing",
    "encode_outbound",
    "routing_key",
    "utc_now_iso",
    "vm_room",
]

METRICS_EVENT = "metricsUpdate"
METRICS_RESOURCE = "metrics"
"""The resource of live metric updates (``metricsUpdate`` to ``vm:<id>`` rooms)."""
ADMIN_ROOM = "admin"
"""The room every admin's sockets are in."""
VM_ROOM_PREFIX = "vm:"
"""``vm:<id>``: the room of a VM's watchers (live metrics, its alerts)."""


def vm_room(vm_id: str) -> str:
    return VM_ROOM_PREFIX + vm_id


def new_event_id() -> str:
    """32 random hex digits, like ``uuid4().hex`` (which cost 4x more: 2.8 us per event).

    From ``random`` (reseeded in a forked child), not ``os.urandom``: an id names an
    event and guards no secret, and a system call per event cost the worker a
    syscall's preemption point on a busy machine (5 % of its samples at 10,000 VMs).
    """
    return getrandbits(128).to_bytes(16).hex()


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


class _RawDataEvent(OutboundEvent, kw_only=True, forbid_unknown_fields=False):
    """An outbound event whose ``data`` stays the JSON text it arrived as."""

    data: msgspec.Raw = msgspec.Raw(b"null")


_outbound_decoder = msgspec.json.Decoder(OutboundEvent)
_raw_data_decoder = msgspec.json.Decoder(_RawDataEvent)
_encoder = msgspec.json.Encoder()


def encode_outbound(event: OutboundEvent) -> bytes:
    return _encoder.encode(event)


def decode_outbound(raw: bytes) -> OutboundEvent:
    return _outbound_decoder.decode(raw)


def decode_outbound_for_routing(raw: bytes) -> OutboundEvent:
    """:func:`decode_outbound`, except that a ``metrics`` event's ``data`` stays raw JSON.

    A gateway routes every live update of every VM and sends the data on unread,
    to the VM's watchers if it has any: decoding it into dicts and encoding them
    again cost a tenth of ``vmpulse up``'s event loop at 2,000 VMs, and the dicts
    kept for ``metrics:recent`` were millions of objects for the cyclic GC to walk
    (issue 11). Every other event is decoded whole (its data is read: VM states).
    The ``msgspec.Raw`` data encodes back verbatim with msgspec.
    """
    event: OutboundEvent = _raw_data_decoder.decode(raw)
    if event.resource != METRICS_RESOURCE:
        return _outbound_decoder.decode(raw)
    event.data = event.data.copy()  # its own bytes, not a view that keeps the record
    return event


def data_text(data: Mapping[str, Any], *names: str) -> str | None:
    """The first of ``names`` that ``data`` holds as a non-empty string."""
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def routing_key(event: ResourceEvent) -> str:
    """The id of the resource an event is about (Kafka key of events.outbound and
    control.events), so one resource's events stay in order; the event's own id
    when ``data`` does not name it."""
    data = event.data if isinstance(event.data, Mapping) else {}
    if event.resource in ("vms", "alerts", "metrics"):
        found = data_text(data, "vmId", "id")
    elif event.resource == "users":
        found = data_text(data, "id", "userId")
    elif event.resource == "departments":
        found = data_text(data, "id", "departmentId")
    else:
        found = data_text(data, "id")
    return found or event.id
