"""Live alerts: per-VM threshold rules held for a duration, as ``alerts`` resource events.

Pure and clocked by the samples themselves (their ``ts``), never by wall time:
a replay or a test produces the same alerts as the live stream did.

A rule breaches while a figure is above its threshold. Once it has breached
continuously for ``for_s`` (measured between sample timestamps), ONE ``alerts``
``create`` event goes out; the first sample at or below the threshold after
that sends the matching ``resolve``. A breach that ends before ``for_s`` never
raises anything. Samples older than the newest seen for a VM are ignored, so
out-of-order delivery cannot resolve or re-raise an alert.

Defaults: CPU above 90 % for 5 min, memory above 95 % for 5 min, any disk
above 90 % used (at once).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping

import msgspec

from schemas.events import ResourceEvent
from schemas.worker_state import BreachState  # the persisted form (worker.state)

__all__ = ["DEFAULT_RULES", "AlertEngine", "AlertSample", "BreachState", "Rule"]


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """``metric`` (cpu, memory or disk) above ``threshold`` percent for ``for_s`` seconds."""

    name: str
    metric: str
    threshold: float
    for_s: float = 0.0

    def __post_init__(self) -> None:
        if self.metric not in ("cpu", "memory", "disk"):
            raise ValueError(f"unknown alert metric {self.metric!r}")
        if self.for_s < 0:
            raise ValueError("for_s must be >= 0")


DEFAULT_RULES = (
    Rule("cpu_high", "cpu", 90.0, 300.0),
    Rule("memory_high", "memory", 95.0, 300.0),
    Rule("disk_full", "disk", 90.0, 0.0),
)


class AlertSample(msgspec.Struct, frozen=True, gc=False):
    """The figures alerts look at, in percent; ``disks`` maps mount point to percent used.

    A Struct, not a frozen dataclass: one is built per sample, and a frozen
    dataclass's ``__init__`` cost three times as much.
    """

    vm_id: str
    ts: dt.datetime
    cpu_percent: float | None = None
    memory_percent: float | None = None
    disks: Mapping[str, float] = {}


@dataclasses.dataclass(slots=True)
class _Breach:
    since: dt.datetime
    alert_id: str | None = None  # set once raised


def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AlertEngine:
    """Open breaches and raised alerts per (VM, rule, subject)."""

    def __init__(self, rules: Iterable[Rule] = DEFAULT_RULES) -> None:
        self.rules = tuple(rules)
        self._breaches: dict[tuple[str, str, str], _Breach] = {}
        self._newest: dict[str, dt.datetime] = {}
        self.changed: set[str] = set()
        """VMs whose breaches changed since the caller last cleared this (to persist them)."""

    def export(self, vm_id: str) -> tuple[list[BreachState], dt.datetime | None]:
        """A VM's open breaches and newest sample time, to persist."""
        breaches = [
            BreachState(rule, subject, b.since, b.alert_id)
            for (vm, rule, subject), b in self._breaches.items()
            if vm == vm_id
        ]
        return breaches, self._newest.get(vm_id)

    def restore(
        self, vm_id: str, breaches: Iterable[BreachState], newest: dt.datetime | None
    ) -> None:
        """A VM's breaches as a previous owner left them: alerts resolve, not re-raise."""
        for b in breaches:
            self._breaches[(vm_id, b.rule, b.subject)] = _Breach(b.since, b.alert_id)
        if newest is not None:
            self._newest[vm_id] = newest

    def drop(self, vm_ids: Iterable[str]) -> None:
        """Forget VMs (their partitions went to another worker, which restores them)."""
        gone = set(vm_ids)
        for key in [k for k in self._breaches if k[0] in gone]:
            del self._breaches[key]
        for vm_id in gone:
            self._newest.pop(vm_id, None)
            self.changed.discard(vm_id)

    def open_alerts(self) -> list[str]:
        """Ids of alerts raised and not yet resolved."""
        return [b.alert_id for b in self._breaches.values() if b.alert_id]

    def _figures(self, rule: Rule, sample: AlertSample) -> list[tuple[str, float]]:
        if rule.metric == "cpu":
            return [("", sample.cpu_percent)] if sample.cpu_percent is not None else []
        if rule.metric == "memory":
            return [("", sample.memory_percent)] if sample.memory_percent is not None else []
        return list(sample.disks.items())

    def observe(self, sample: AlertSample) -> list[ResourceEvent]:
        """Feed one sample; returns the create / resolve events it causes."""
        newest = self._newest.get(sample.vm_id)
        if newest is not None and sample.ts < newest:
            return []
        self._newest[sample.vm_id] = sample.ts
        events: list[ResourceEvent] = []
        for rule in self.rules:
            for subject, value in self._figures(rule, sample):
                key = (sample.vm_id, rule.name, subject)
                breach = self._breaches.get(key)
                if value > rule.threshold:
                    if breach is None:
                        breach = self._breaches[key] = _Breach(since=sample.ts)
                        self.changed.add(sample.vm_id)
                    held = (sample.ts - breach.since).total_seconds()
                    if breach.alert_id is None and held >= rule.for_s:
                        breach.alert_id = (
                            f"{sample.vm_id}:{rule.name}:{subject}:{int(breach.since.timestamp())}"
                        )
                        events.append(self._event("create", rule, subject, value, sample, breach))
                        self.changed.add(sample.vm_id)
                elif breach is not None:
                    del self._breaches[key]
                    self.changed.add(sample.vm_id)
                    if breach.alert_id is not None:
                        events.append(self._event("resolve", rule, subject, value, sample, breach))
        return events

    def _event(
        self,
        action: str,
        rule: Rule,
        subject: str,
        value: float,
        sample: AlertSample,
        breach: _Breach,
    ) -> ResourceEvent:
        data: dict[str, object] = {
            "id": breach.alert_id,
            "vmId": sample.vm_id,
            "rule": rule.name,
            "metric": rule.metric,
            "threshold": rule.threshold,
            "forSeconds": rule.for_s,
            "value": round(value, 2),
            "since": _iso(breach.since),
            "at": _iso(sample.ts),
        }
        if subject:
            data["mount"] = subject
        return ResourceEvent(resource="alerts", action=action, data=data, time=_iso(sample.ts))
