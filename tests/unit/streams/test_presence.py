"""Presence with plain observations and an injected clock."""

from __future__ import annotations

import pytest

from schemas.events import ResourceEvent
from streams.presence import Presence, power_action


def _changes(events: list[ResourceEvent]) -> list[tuple[str, object, object]]:
    return [(e.action, e.data["agentState"], e.data["powerState"]) for e in events]


def test_first_line_is_online_repeats_are_silent() -> None:
    p = Presence(interval_s=30)
    assert _changes(p.activity("vm", 0.0)) == [("update", "online", None)]
    assert p.activity("vm", 10.0) == []


def test_silent_agent_turns_offline_after_three_intervals_and_back_on_next_line() -> None:
    p = Presence(interval_s=30)
    p.activity("vm", 100.0)
    assert p.tick(100.0 + 90.0) == []  # exactly 3 intervals: not yet missed
    assert _changes(p.tick(100.0 + 90.5)) == [("update", "offline", None)]
    assert p.tick(500.0) == []  # reported once
    assert _changes(p.activity("vm", 501.0)) == [("update", "online", None)]


def test_closed_connection_is_offline_at_once() -> None:
    p = Presence(interval_s=30)
    p.activity("vm", 0.0)
    assert _changes(p.disconnected("vm", 1.0)) == [("update", "offline", None)]
    assert p.disconnected("vm", 2.0) == []


def test_power_changes_carry_both_states() -> None:
    p = Presence()
    p.activity("vm", 0.0)
    assert _changes(p.power("vm", "running")) == [("power_on", "online", "running")]
    assert p.power("vm", "running") == []
    assert _changes(p.power("vm", "paused")) == [("suspend", "online", "paused")]
    assert _changes(p.power("vm", "running")) == [("resume", "online", "running")]
    assert _changes(p.power("vm", "shutoff")) == [("power_off", "online", "shutoff")]
    assert p.state("vm") == ("online", "shutoff")
    assert p.power("vm", "shutoff") == []
    ev = p.power("vm", "running")[0]
    assert ev.resource == "vms" and ev.data["vmId"] == "vm"


@pytest.mark.parametrize(
    ("prev", "state", "action"),
    [
        (None, "running", "power_on"),
        ("crashed", "running", "power_on"),
        ("pmsuspended", "running", "resume"),
        ("running", "crashed", "power_off"),
        ("shutoff", "crashed", "update"),
        ("running", "blocked", "update"),
        ("paused", "paused", None),
    ],
)
def test_power_action(prev: str | None, state: str, action: str | None) -> None:
    assert power_action(prev, state) == action


def test_vms_are_independent() -> None:
    p = Presence(interval_s=1)
    p.activity("a", 0.0)
    p.activity("b", 2.5)
    assert [e.data["vmId"] for e in p.tick(3.5)] == ["a"]


def test_bad_interval_is_refused() -> None:
    with pytest.raises(ValueError):
        Presence(interval_s=0)
