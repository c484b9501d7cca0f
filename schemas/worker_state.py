"""The ``worker.state`` record: one VM's presence and open alert breaches.

Key: the VM id; value: :class:`VmSnapshot` as JSON; the topic is compacted, so
the newest snapshot of each VM is what a worker taking over its partition
reads back (streams/state_log.py). Defined here, with the other wire formats,
so its contract is published (schemas/asyncapi.json) from the same Struct the
worker encodes with.
"""

from __future__ import annotations

import datetime as dt

import msgspec

__all__ = ["BreachState", "VmSnapshot"]


class BreachState(msgspec.Struct, frozen=True):
    """One open breach of a VM, as persisted: rule, subject (a mount or ''), start, alert."""

    rule: str
    subject: str
    since: dt.datetime
    alert_id: str | None = None


class VmSnapshot(msgspec.Struct, frozen=True, omit_defaults=True):
    """What one VM's state topic record holds."""

    agent: str | None = None
    power: str | None = None
    breaches: tuple[BreachState, ...] = ()
    newest: dt.datetime | None = None  # newest sample the alerts saw: older replays ignored
