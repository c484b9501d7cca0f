"""Rate limiting, VM state tracking and history planning: pure logic with plain values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pytest

from gateway.history import HistoryError, history_parameters, parse_time, plan_history, raw_sql
from gateway.limits import RateLimiter
from gateway.vmstate import VmStates
from schemas.events import OutboundEvent

UTC = dt.UTC


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_is_per_user_and_event_and_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)
    assert all(limiter.allow("alice", "subscribe") for _ in range(60))
    assert not limiter.allow("alice", "subscribe")
    assert limiter.allow("alice", "unsubscribe")
    assert limiter.allow("bob", "subscribe")
    clock.now = 1.0  # one second refills one event at 60 a minute
    assert limiter.allow("alice", "subscribe")
    assert not limiter.allow("alice", "subscribe")
    limiter.forget("alice")
    assert limiter.allow("alice", "subscribe")


def test_vm_states_keep_the_latest_known_values() -> None:
    states = VmStates()
    known = {"vm-1": object()}

    def vms(**data: object) -> OutboundEvent:
        return OutboundEvent(resource="vms", action="update", data=data, timestamp="t")

    states.observe(vms(vmId="vm-1", powerState="running"), known)
    states.observe(vms(id="vm-1", agentState="online"), known)
    states.observe(vms(vmId="vm-1", powerState=7), known)  # junk ignored
    states.observe(vms(vmId="vm-2", powerState="running"), known)  # unknown VM ignored
    states.observe(OutboundEvent(resource="alerts", action="create", data={"vmId": "vm-1"}), known)
    got = states.get("vm-1")
    assert (got.power_state, got.agent_state, got.updated_at) == ("running", "online", "t")
    assert states.get("vm-2").power_state is None
    states.forget("vm-1")
    assert states.get("vm-1").power_state is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1767225600", dt.datetime(2026, 1, 1, tzinfo=UTC)),
        ("1767225600.5", dt.datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
        ("2026-01-01T00:00:00Z", dt.datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T02:00:00+02:00", dt.datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T00:00:00", dt.datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_times_are_iso_or_epoch_seconds(text: str, expected: dt.datetime) -> None:
    assert parse_time(text, dt.datetime.now(UTC)) == expected


@pytest.mark.parametrize(
    "text",
    [
        *("yesterday", "1e400", "2026-13-01", "--", "", " ", "nan", "NaN", "inf", "-1"),
        *("²", "١٧٦٧٢٢٥٦٠٠", "1" * 5000, "9" * 13, "1767225600." + "5" * 20),
        *("0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "1969-12-31T23:00:00Z"),
    ],
)
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(HistoryError):
        parse_time(text, dt.datetime.now(UTC))


def test_resolution_follows_the_range() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
    hours = dt.timedelta(hours=1)
    assert plan_history(t0, t0 + hours).resolution == "raw"
    assert plan_history(t0, t0 + hours).step_s is None
    assert plan_history(t0, t0 + hours, 10).step_s == 10
    assert plan_history(t0, t0 + hours, 300).resolution == "1m"
    one_day = plan_history(t0, t0 + 24 * hours)
    assert (one_day.resolution, one_day.step_s) == ("1m", 60)
    month = plan_history(t0, t0 + 30 * 24 * hours)
    assert (month.resolution, month.step_s) == ("1h", 3600)
    # Never more than 10,000 points: the step grows instead.
    long_range = plan_history(t0, t0 + 700 * 24 * hours)
    assert long_range.step_s is not None and 700 * 24 * 3600 / long_range.step_s <= 10_000
    for start, end, step in ((t0, t0, None), (t0, t0 + hours, 0), (t0, t0 + hours, 10**9)):
        with pytest.raises(HistoryError):
            plan_history(start, end, step)


def test_vm_id_and_times_are_bound_never_spliced_into_sql() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
    plan = plan_history(t0, t0 + dt.timedelta(hours=1))
    hostile = "a'b\\c') OR 1=1 --"
    sql = raw_sql(plan)
    assert "vm_id = {vm:String}" in sql and "a'b" not in sql
    assert history_parameters(hostile, plan) == {
        "vm": hostile,
        "start_ms": int(t0.timestamp() * 1000),
        "end_ms": int(t0.timestamp() * 1000) + 3_600_000,
        "step_s": plan.step_s or 0,
    }


class FakeStore:
    """Answers like the store's ``query``: EXISTS from a table list, rollup SQL may fail."""

    def __init__(self, tables: set[str], rollup_works: bool) -> None:
        self.tables = tables
        self.rollup_works = rollup_works
        self.seen: list[str] = []

    async def query(self, sql: str, parameters: Mapping[str, object]) -> dict[str, object]:
        self.seen.append(sql)
        assert parameters == {} or parameters["vm"] == "vm-1"
        if sql.startswith("EXISTS TABLE "):
            return {"columns": ["result"], "rows": [[int(sql.split()[-1] in self.tables)]]}
        if "Merge(" in sql and not self.rollup_works:
            raise RuntimeError("Unknown identifier cpu_avg")
        return {"columns": ["t"], "rows": [[1]]}


@pytest.mark.parametrize(
    ("tables", "rollup_works", "source"),
    [
        (set(), False, "system_metrics"),  # rollup not created yet: aggregate raw
        ({"system_metrics_1m"}, True, "system_metrics_1m"),
    ],
)
async def test_history_falls_back_to_raw_aggregation(
    tables: set[str], rollup_works: bool, source: str
) -> None:
    from gateway.history import fetch_history

    store = FakeStore(tables, rollup_works)
    t0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
    plan = plan_history(t0, t0 + dt.timedelta(days=1))
    body = await fetch_history(store.query, "vm-1", plan)
    assert body["source"] == source and body["resolution"] == "1m"
    if source == "system_metrics":
        assert "GROUP BY t" in store.seen[-1] and "FROM system_metrics " in store.seen[-1]


def test_prune_drops_only_refilled_buckets() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)  # one token a second
    assert limiter.allow("alice", "resume")
    for _ in range(60):
        limiter.allow("bob", "resume")
    assert len(limiter) == 2
    clock.now = 1.0  # alice's bucket is full again, bob's is not
    assert limiter.prune() == 1
    assert len(limiter) == 1
    # Bob kept his state: one token refilled in that second, not a fresh 60.
    assert limiter.allow("bob", "resume") and not limiter.allow("bob", "resume")
    clock.now = 120.0
    assert limiter.prune() == 1 and len(limiter) == 0
