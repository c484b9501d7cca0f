"""The worker's reach into Faust still holds, and Faust still needs it (streams/faust_internals.py).

Fails, naming the seam, when an upgrade moves a method the guard relies on; and
pins the behaviour the guard exists for: Faust's own livelock check raises on
a partition whose position is being reset. When that test fails, Faust fixed
it and the guard can go.

No broker here: the partition states are aiokafka's real ``Assignment`` and
``TopicPartitionState`` objects, put in the state a failover leaves them in
(fetched from, then ``await_reset`` as aiokafka's fetcher does on
OFFSET_OUT_OF_RANGE); only the aiokafka consumer around them is a stand-in
(an unstarted consumer has no fetcher). The same state on a real cluster is
tests/integration/infra/test_faust_failover.py.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.subscription_state import Assignment
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams import faust_internals as internals

NOW = 10_000.0  # the detector's monotonic clock, where a test passes it; fixed
FETCHED_AT_MS = 1_796_000_000_000  # when a fetch answered: aiokafka stores epoch ms
STARTED = -1e6  # the consumer thread's monotonic start: long before any tick
TOPIC = "control.events"
EARLIEST = -2  # aiokafka's OffsetResetStrategy.EARLIEST


def _app(guarded: bool) -> faust.App:
    app = faust.App("faust-internals-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    if guarded:
        internals.guard_livelock_detector(app)
    return app


def _failover_state(app: faust.App) -> tuple[Any, Assignment]:
    """The app's consumer over two partitions: 0 fetched from and now being reset, 1 never
    fetched since a start long ago (which Faust's check reports)."""
    tps = [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
    assignment = Assignment(tps)
    state = assignment.state_value(tps[0])
    state.reset_to(5)  # the committed offset, as after an assignment
    state.highwater = 20
    # Faust compares this epoch time with its monotonic clock: any fetch reads as recent
    state.timestamp = FETCHED_AT_MS
    state.await_reset(EARLIEST)  # aiokafka's fetcher on OFFSET_OUT_OF_RANGE
    assert not state.has_valid_position
    consumer = app.consumer
    thread = consumer._thread
    thread._consumer = SimpleNamespace(
        _fetcher=SimpleNamespace(
            _subscriptions=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
        ),
        assignment=lambda: set(tps),
    )
    thread.time_started = STARTED  # past stream_processing_timeout (300 s) at any tick
    return consumer, assignment


def test_every_seam_holds_in_the_installed_libraries() -> None:
    problems = internals.check()
    assert not problems, (
        f"faust-streaming / aiokafka changed under the worker (installed "
        f"{internals.installed_versions()}, checked against {internals.CHECKED_AGAINST}):\n  "
        + "\n  ".join(problems)
    )


def test_a_moved_or_gone_seam_is_reported() -> None:
    moved = internals.Seam(faust_aiokafka.Consumer, "verify_event_path", "(self, tp)", "a test")
    gone = internals.Seam(faust_aiokafka.Consumer, "_no_such", "(self)", "a test")
    problems = internals.check([moved, gone])
    assert len(problems) == 2
    assert "verify_event_path" in problems[0] and "was (self, tp)" in problems[0]
    assert "_no_such is gone" in problems[1]


async def test_the_guard_makes_the_app_build_its_consumer_guarded() -> None:
    app = _app(guarded=True)
    assert type(app.consumer) is internals.GuardedConsumer
    with pytest.raises(AssertionError, match="already built"):
        internals.guard_livelock_detector(app)


async def test_fausts_own_check_still_raises_on_a_position_being_reset() -> None:
    # The pinned behaviour: if this stops raising, Faust (or aiokafka) fixed it.
    consumer, _ = _failover_state(_app(guarded=False))
    assert type(consumer) is faust_aiokafka.Consumer
    with pytest.raises(AssertionError):
        consumer.verify_event_path(NOW, TopicPartition(TOPIC, 0))


async def test_the_guarded_detector_skips_that_partition_and_still_reports_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer, assignment = _failover_state(_app(guarded=True))
    seen: list[Any] = []
    consumer.verify_event_path = _recording(consumer.verify_event_path, seen)
    caplog.set_level(logging.WARNING)

    await consumer.verify_all_partitions_active()  # the detector's tick, as Faust runs it

    assert sorted(tp.partition for tp in seen) == [0, 1], "every partition was looked at"
    skipped = [r for r in caplog.records if "livelock check of" in r.getMessage()]
    assert len(skipped) == 1 and "partition=0" in skipped[0].getMessage()
    reported = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("partition=1" in r.getMessage() for r in reported), (
        "Faust's own finding about the never-fetched partition is still logged"
    )
    # the reset completes (ListOffsets answered): the partition is judged again, quietly
    assignment.state_value(TopicPartition(TOPIC, 0)).reset_to(0)
    caplog.clear()
    consumer.verify_event_path(NOW, TopicPartition(TOPIC, 0))
    assert not [r for r in caplog.records if "livelock check of" in r.getMessage()]


def _recording(verify: Any, seen: list[Any]) -> Any:
    def record(now: float, tp: Any) -> None:
        seen.append(tp)
        verify(now, tp)

    return record
