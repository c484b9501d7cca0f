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

from schemas.events import ResourceEvent

__all__ = ["DEFAULT_RULES", "AlertEngine", "AlertSample", "Rule"]


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


@dataclasses.dataclass(frozen=True, slots=True)
class AlertSample:
    """The figures alerts look at, in percent; ``disks`` maps mount point to percent used."""

    vm_id: str
    ts: dt.datetime
    cpu_percent: float | None = None
    memory_percent: float | None = None
    disks: Mapping[str, float] = dataclasses.field(default_factory=dict)


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
                    held = (sample.ts - breach.since).total_seconds()
                    if breach.alert_id is None and held >= rule.for_s:
                        breach.alert_id = (
                            f"{sample.vm_id}:{rule.name}:{subject}:{int(breach.since.timestamp())}"
                        )
                        events.append(self._event("create", rule, subject, value, sample, breach))
                elif breach is not None:
                    del self._breaches[key]
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
