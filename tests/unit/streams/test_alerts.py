"""Alert rules clocked by sample timestamps: one alert per breach, resolved when it ends."""

from __future__ import annotations

import datetime as dt

import pytest

from streams.alerts import AlertEngine, AlertSample, Rule

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def cpu(vm: str, seconds: float, value: float) -> AlertSample:
    return AlertSample(vm_id=vm, ts=T0 + dt.timedelta(seconds=seconds), cpu_percent=value)


def test_cpu_held_above_raises_one_alert_and_resolves_when_it_falls() -> None:
    engine = AlertEngine()
    events = []
    for i in range(0, 600, 30):  # 10 minutes at 95 %
        events += engine.observe(cpu("vm", i, 95.0))
    assert [e.action for e in events] == ["create"]
    create = events[0]
    assert create.resource == "alerts"
    assert create.data["vmId"] == "vm" and create.data["rule"] == "cpu_high"
    assert create.data["at"] == "2026-11-25T12:05:00.000Z"  # after exactly 5 minutes
    resolve = engine.observe(cpu("vm", 630, 20.0))
    assert [e.action for e in resolve] == ["resolve"]
    assert resolve[0].data["id"] == create.data["id"]
    assert engine.open_alerts() == []


def test_short_spike_raises_nothing() -> None:
    engine = AlertEngine()
    samples = [cpu("vm", 0, 99), cpu("vm", 200, 99), cpu("vm", 250, 10), cpu("vm", 400, 99)]
    assert [e for s in samples for e in engine.observe(s)] == []


def test_memory_and_disk_rules() -> None:
    engine = AlertEngine()
    high_mem = AlertSample(vm_id="vm", ts=T0, memory_percent=97.0, disks={"/": 91.0, "/d": 10.0})
    events = engine.observe(high_mem)
    assert [(e.action, e.data["rule"], e.data.get("mount")) for e in events] == [
        ("create", "disk_full", "/")
    ]
    later = AlertSample(
        vm_id="vm", ts=T0 + dt.timedelta(minutes=5), memory_percent=97.0, disks={"/": 50.0}
    )
    assert [(e.action, e.data["rule"]) for e in engine.observe(later)] == [
        ("create", "memory_high"),
        ("resolve", "disk_full"),
    ]


def test_out_of_order_samples_are_ignored() -> None:
    engine = AlertEngine([Rule("c", "cpu", 50.0, 0.0)])
    assert [e.action for e in engine.observe(cpu("vm", 10, 90))] == ["create"]
    assert engine.observe(cpu("vm", 5, 10)) == []
    assert len(engine.open_alerts()) == 1


def test_rules_are_configurable_and_validated() -> None:
    engine = AlertEngine([Rule("c", "cpu", 50.0, 60.0)])
    assert engine.observe(cpu("vm", 0, 60)) == []
    assert [e.action for e in engine.observe(cpu("vm", 60, 60))] == ["create"]
    with pytest.raises(ValueError):
        Rule("x", "gpu", 1.0)
