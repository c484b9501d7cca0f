"""Presence and alert state survives a change of owner through its snapshots."""

from __future__ import annotations

import datetime as dt

from streams.alerts import AlertEngine, AlertSample
from streams.presence import OFFLINE, ONLINE, Presence
from streams.state_log import decode_snapshot, restore_all, snapshot

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def cpu(vm: str, seconds: float, value: float) -> AlertSample:
    return AlertSample(vm_id=vm, ts=T0 + dt.timedelta(seconds=seconds), cpu_percent=value)


def handover(presence: Presence, alerts: AlertEngine, now: float) -> tuple[Presence, AlertEngine]:
    """The VMs that changed, written by one worker and read back by a fresh one."""
    records = [(vm, snapshot(presence, alerts, vm)) for vm in presence.changed | alerts.changed]
    fresh_presence, fresh_alerts = Presence(30.0), AlertEngine()
    restore_all(fresh_presence, fresh_alerts, records, now)
    return fresh_presence, fresh_alerts


def test_an_open_alert_is_resolved_by_the_next_owner_not_raised_again() -> None:
    presence, alerts = Presence(30.0), AlertEngine()
    for i in range(0, 330, 30):
        alerts.observe(cpu("vm", i, 97.0))
    [alert_id] = alerts.open_alerts()
    _, alerts = handover(presence, alerts, now=1000.0)
    assert alerts.observe(cpu("vm", 360, 98.0)) == []  # still breaching: no second create
    [resolve] = alerts.observe(cpu("vm", 390, 10.0))
    assert resolve.action == "resolve" and resolve.data["id"] == alert_id


def test_a_breach_keeps_its_start_across_owners() -> None:
    presence, alerts = Presence(30.0), AlertEngine()
    alerts.observe(cpu("vm", 0, 97.0))
    alerts.observe(cpu("vm", 200, 97.0))
    _, alerts = handover(presence, alerts, now=1000.0)
    [create] = alerts.observe(cpu("vm", 300, 97.0))  # 5 minutes after the first sample
    assert create.action == "create"


def test_samples_older_than_the_snapshot_are_ignored_on_replay() -> None:
    presence, alerts = Presence(30.0), AlertEngine()
    for i in range(0, 330, 30):
        alerts.observe(cpu("vm", i, 97.0))
    _, alerts = handover(presence, alerts, now=1000.0)
    # a replayed sample from before the breach must not resolve the alert
    assert alerts.observe(cpu("vm", -30, 10.0)) == []
    assert len(alerts.open_alerts()) == 1


def test_an_online_agent_goes_offline_if_silent_after_the_handover() -> None:
    presence, alerts = Presence(30.0), AlertEngine()
    presence.activity("vm", now=100.0)
    presence.power("vm", "paused")
    presence, _ = handover(presence, alerts, now=500.0)
    assert presence.state("vm") == (ONLINE, "paused")
    assert presence.tick(now=500.0 + 89) == []  # 3 intervals counted from the handover
    [offline] = presence.tick(now=500.0 + 91)
    assert offline.data == {"vmId": "vm", "agentState": OFFLINE, "powerState": "paused"}
    [resume] = presence.power("vm", "running")
    assert resume.action == "resume"


def test_only_changes_mark_a_vm_for_writing() -> None:
    presence, alerts = Presence(30.0), AlertEngine()
    presence.activity("a", now=1.0)
    alerts.observe(cpu("b", 0, 10.0))  # no breach: nothing to keep
    assert presence.changed == {"a"} and alerts.changed == set()
    presence.changed.clear()
    presence.activity("a", now=2.0)
    assert presence.changed == set()


def test_a_dropped_vm_is_forgotten() -> None:
    presence, alerts = Presence(30.0), AlertEngine()
    presence.activity("vm", now=1.0)
    alerts.observe(cpu("vm", 0, 97.0))
    presence.drop(["vm"])
    alerts.drop(["vm"])
    assert presence.state("vm") == (None, None)
    assert alerts.export("vm") == ([], None)
    assert presence.changed == set() and alerts.changed == set()


def test_records_that_are_not_snapshots_are_skipped() -> None:
    presence, alerts = Presence(30.0), AlertEngine()
    good = snapshot(Presence(30.0), AlertEngine(), "x")
    assert decode_snapshot(good).agent is None
    assert restore_all(presence, alerts, [("bad", b"{"), ("x", good)], now=1.0) == ["x"]
