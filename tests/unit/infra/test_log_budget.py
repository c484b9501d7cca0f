"""The per-VM warning budget: a guest that writes garbage as fast as it can gets a few log
lines, the others keep theirs; the clock is passed in (no sleep)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.log_budget import WarningBudget, suppressed_note


def test_a_burst_then_one_per_interval_and_the_count_of_what_was_held_back() -> None:
    budget = WarningBudget(burst=3, per_s=0.5)
    assert [budget.take("vm-a", 0.0) for _ in range(5)] == [0, 0, 0, None, None]
    assert budget.take("vm-a", 1.0) is None  # half a token
    assert budget.take("vm-a", 2.0) == 3  # one token: the three held back are reported
    assert budget.take("vm-a", 2.0) is None
    assert budget.suppressed_total == 4


def test_one_flooding_vm_does_not_silence_another() -> None:
    budget = WarningBudget(burst=2, per_s=0.1)
    for i in range(100_000):
        budget.take("hostile", i * 1e-5)  # 100,000 lines in one second
    assert budget.take("quiet", 1.0) == 0
    assert budget.suppressed_total == 100_000 - 2 - 0  # two passed, in the burst


def test_a_flood_of_a_million_lines_writes_a_handful() -> None:
    budget = WarningBudget()  # the defaults the bridge and the worker use
    written = sum(budget.take("vm", i / 10_000) is not None for i in range(1_000_000))  # 100 s
    # the burst, then one every 10 s (the tenth refill lands at 100 s, just after the flood)
    assert written == WarningBudget.DEFAULT_BURST + 9
    assert budget.suppressed_total == 1_000_000 - written


def test_memory_is_bounded_by_forgetting_the_least_recent_key() -> None:
    budget = WarningBudget(burst=1, per_s=0.001, max_keys=3)
    for key in ("a", "b", "c"):
        budget.take(key, 0.0)
    budget.take("a", 0.0)  # "a" is recent again; "b" is the oldest now
    budget.take("d", 0.0)
    assert len(budget) == 3
    assert budget.take("a", 0.0) is None  # still known, still out of tokens
    assert budget.take("b", 0.0) == 0  # forgotten, so a fresh bucket


def test_a_clock_that_goes_back_refills_nothing() -> None:
    budget = WarningBudget(burst=1, per_s=1.0)
    assert budget.take("vm", 100.0) == 0
    assert budget.take("vm", 50.0) is None
    assert budget.take("vm", 100.5) is None
    assert budget.take("vm", 101.0) == 2


def test_bad_parameters_are_refused() -> None:
    for kwargs in ({"burst": 0}, {"per_s": 0.0}, {"max_keys": 0}):
        with pytest.raises(ValueError):
            WarningBudget(**kwargs)


def test_the_note_says_how_many_were_suppressed() -> None:
    assert suppressed_note(0) == ""
    assert suppressed_note(7) == " (7 similar warnings suppressed before this one)"


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 10),
    st.floats(0.01, 10.0),
    st.lists(st.tuples(st.sampled_from("abc"), st.floats(0.0, 100.0)), max_size=300),
)
def test_never_more_than_the_burst_plus_the_refill_and_every_line_accounted(
    burst: int, per_s: float, events: list[tuple[str, float]]
) -> None:
    budget = WarningBudget(burst=burst, per_s=per_s)
    events = sorted(events, key=lambda e: e[1])
    written: dict[str, int] = {}
    reported: dict[str, int] = {}
    for key, now in events:
        held = budget.take(key, now)
        if held is not None:
            written[key] = written.get(key, 0) + 1
            reported[key] = reported.get(key, 0) + held
    span = events[-1][1] - events[0][1] if events else 0.0
    for n in written.values():
        assert n <= burst + span * per_s + 1e-9
    # written + reported as suppressed + still pending = every take
    pending = budget.suppressed_total - sum(reported.values())
    assert sum(written.values()) + sum(reported.values()) + pending == len(events)
    assert pending >= 0


def test_seeded_random_traffic_keeps_quiet_vms_audible() -> None:
    seed = 20251125
    print(f"seed={seed}")
    rnd = random.Random(seed)
    budget = WarningBudget(burst=5, per_s=0.1)
    now = 0.0
    quiet_written = 0
    for _ in range(50_000):
        now += rnd.random() * 1e-3
        budget.take(f"hostile-{rnd.randrange(3)}", now)
        if rnd.random() < 0.0005:  # a quiet VM's rare bad line
            quiet_written += budget.take(f"quiet-{rnd.randrange(1000)}", now) is not None
    assert quiet_written > 0 and budget.suppressed_total > 49_000 - quiet_written
