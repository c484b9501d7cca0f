"""The ``hypervisor.events`` record: one VM's lifecycle change or reconciled state.

Key: the VM uuid. Value: JSON ``{"vm_id", "state", "reason", "time"}`` (exactly
these names; the watcher writes them, the worker reads them):

- ``state``: the VM's power state after the change, one of :data:`STATES`; a
  reader keeps a state it does not know as ``unknown`` rather than refusing the
  record, because libvirt may grow new ones;
- ``reason``: what happened, a lowercase libvirt event detail such as
  ``booted``, ``paused``, ``unpaused``, ``destroyed``, ``shutdown``, ``crashed``,
  or ``reconcile`` for a record of the full reconciliation the watcher emits at
  start and after each reconnect (the record may repeat what the worker knows);
- ``time``: when the watcher saw it, RFC 3339 UTC.

Pure: no I/O, no libvirt import.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import msgspec

__all__ = [
    "POWER_STATES",
    "RECONCILE",
    "STATES",
    "HypervisorEvent",
    "HypervisorEventError",
    "decode_event",
    "decode_hypervisor_event",
    "encode_event",
    "encode_hypervisor_event",
]

STATES: Final = frozenset(
    {
        "running",
        "blocked",
        "paused",
        "shutdown",  # shutting down
        "shutoff",
        "crashed",
        "pmsuspended",
        "nostate",
        "undefined",  # the domain's definition was removed
        "unknown",  # a state this version does not know
    }
)
POWER_STATES: Final = STATES

RECONCILE: Final = "reconcile"


class HypervisorEventError(ValueError):
    """A hypervisor record is malformed."""


class HypervisorEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One lifecycle change of one VM (see the module docstring)."""

    vm_id: str
    state: str
    reason: str = ""
    time: dt.datetime | None = None

    def timestamp(self) -> dt.datetime | None:
        """``time`` as an aware UTC datetime (a zone-less time is taken as UTC)."""
        if self.time is None or self.time.tzinfo is not None:
            return self.time
        return self.time.replace(tzinfo=dt.UTC)


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(HypervisorEvent)


def encode_event(event: HypervisorEvent) -> bytes:
    return _encoder.encode(event)


encode_hypervisor_event = encode_event


def decode_event(data: bytes) -> HypervisorEvent:
    """Raises ``msgspec.DecodeError`` / ``msgspec.ValidationError`` on a malformed record."""
    return _decoder.decode(data)


def decode_hypervisor_event(raw: bytes) -> HypervisorEvent:
    """Decode one record for the worker; raises HypervisorEventError for anything malformed."""
    try:
        event = _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise HypervisorEventError(str(exc)) from exc
    if not event.vm_id:
        raise HypervisorEventError("vm_id is empty")
    state = event.state.strip().lower()
    return msgspec.structs.replace(event, state=state if state in STATES else "unknown")
