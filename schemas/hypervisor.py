"""The ``hypervisor.events`` record: one VM's lifecycle change or reconciled state.

Key: the VM uuid. Value: JSON ``{"vm_id", "state", "reason", "time"}`` (exactly
these names; the worker reads them):

- ``state``: the VM's power state after the change, one of :data:`STATES`;
- ``reason``: what happened, a lowercase libvirt event detail such as
  ``booted``, ``paused``, ``unpaused``, ``destroyed``, ``shutdown``, ``crashed``,
  or ``reconcile`` for a record of the full reconciliation the watcher emits at
  start and after each reconnect (the state is then as libvirt reports it, and
  the record may repeat what the worker already knows);
- ``time``: when the watcher saw it, RFC 3339 UTC.

Pure: no I/O, no libvirt import.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import msgspec

__all__ = ["RECONCILE", "STATES", "HypervisorEvent", "decode_event", "encode_event"]

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
    }
)

RECONCILE: Final = "reconcile"


class HypervisorEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One lifecycle change of one VM (see the module docstring)."""

    vm_id: str
    state: str
    reason: str
    time: dt.datetime


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(HypervisorEvent)


def encode_event(event: HypervisorEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> HypervisorEvent:
    """Raises ``msgspec.DecodeError`` / ``msgspec.ValidationError`` on a malformed record."""
    return _decoder.decode(data)
