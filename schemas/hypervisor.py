"""Hypervisor lifecycle records on ``hypervisor.events`` (key = VM id).

The hypervisor watcher (agents/) writes one JSON object per libvirt lifecycle
change: ``{"vm_id": str, "state": str, "reason": str, "time": ISO 8601 or
epoch seconds}``. ``state`` is one of :data:`POWER_STATES`; an unknown state is
kept as ``unknown`` rather than refused, because libvirt may grow new ones.
"""

from __future__ import annotations

import datetime as dt

import msgspec

__all__ = [
    "POWER_STATES",
    "HypervisorEvent",
    "HypervisorEventError",
    "decode_hypervisor_event",
    "encode_hypervisor_event",
]

POWER_STATES = frozenset(
    {"running", "paused", "shutoff", "shutdown", "crashed", "pmsuspended", "blocked", "unknown"}
)


class HypervisorEventError(ValueError):
    """A hypervisor record is malformed."""


class HypervisorEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    vm_id: str
    state: str
    reason: str = ""
    time: str | float | None = None

    def timestamp(self) -> dt.datetime | None:
        """``time`` as an aware UTC datetime, or None if absent or unreadable."""
        try:
            if isinstance(self.time, str):
                parsed = dt.datetime.fromisoformat(self.time.replace("Z", "+00:00"))
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
            if isinstance(self.time, (int, float)):
                return dt.datetime.fromtimestamp(self.time, dt.UTC)
        except (ValueError, OverflowError, OSError):
            return None
        return None


_decoder = msgspec.json.Decoder(HypervisorEvent)
_encoder = msgspec.json.Encoder()


def decode_hypervisor_event(raw: bytes) -> HypervisorEvent:
    """Decode one record; raises HypervisorEventError for anything malformed."""
    try:
        event = _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise HypervisorEventError(str(exc)) from exc
    if not event.vm_id:
        raise HypervisorEventError("vm_id is empty")
    state = event.state.strip().lower()
    return msgspec.structs.replace(event, state=state if state in POWER_STATES else "unknown")


def encode_hypervisor_event(event: HypervisorEvent) -> bytes:
    return _encoder.encode(event)
