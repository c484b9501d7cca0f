"""The worker's Faust consumer survives its livelock check while a position is being reset.

The state that crashed a worker in a broker failover (streams/faust_internals.py):
a control.events partition fetched from, then answered OFFSET_OUT_OF_RANGE, so
aiokafka unsets its position until a ListOffsets answers. Here on the session
broker, with the worker app as ``create_app`` builds it: the out-of-range
answer is the broker's own (the aiokafka consumer is moved past the end, as a
lagging replica's answer would find it), and the detector's check of that
partition runs inside that window, from aiokafka's ``await_reset``, because on
one live broker the window lasts a round trip (on a cluster, with the leader
dead, it lasts seconds: tests/integration/infra/test_faust_failover.py, `make
cluster`). Faust's own check is run there too, to show the state is the one
that crashes it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.subscription_state import TopicPartitionState
from faust.transport.drivers import aiokafka as faust_aiokafka

from infra.config import Settings
from schemas.topics import Topics
from streams.faust_internals import GuardedConsumer
from tests.support.faust_consumer import (
    fetched,
    partition_state,
    routed,
    seek_past_the_end,
    send_control_event,
)
from tests.support.kafka import wait_until

pytestmark = pytest.mark.integration


async def test_a_position_reset_under_the_livelock_check_neither_crashes_nor_stalls_the_worker(
    settings: Settings,
    topics_ready: Topics,
    worker: faust.App,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert type(worker.consumer) is GuardedConsumer, "create_app guards the detector"
    control = [
        TopicPartition(topics_ready.control_events, p) for p in range(settings.kafka.partitions)
    ]
    await wait_until("every control.events partition fetched", lambda: fetched(worker, control),
                     within_s=30)  # fmt: skip
    tp = control[1]
    target = partition_state(worker, tp)
    assert target is not None
    checks: dict[str, Any] = {}
    reset = TopicPartitionState.await_reset

    def await_reset(state: TopicPartitionState, strategy: int) -> None:
        reset(state, strategy)  # aiokafka's fetcher on OFFSET_OUT_OF_RANGE
        if state is not target or checks:
            return
        now = time.monotonic()  # the detector's clock
        try:
            faust_aiokafka.Consumer.verify_event_path(worker.consumer, now, tp)
            checks["faust"] = None
        except AssertionError as exc:
            checks["faust"] = exc
        checks["guarded"] = worker.consumer.verify_event_path(now, tp)  # raises: test fails

    monkeypatch.setattr(TopicPartitionState, "await_reset", await_reset)
    caplog.set_level(logging.WARNING)
    await seek_past_the_end(worker, tp)
    await wait_until("the broker's out-of-range answer and aiokafka's reset",
                     lambda: bool(checks), within_s=30)  # fmt: skip
    await wait_until("the reset to complete", lambda: target.has_valid_position, within_s=30)

    assert isinstance(checks["faust"], AssertionError), "Faust's own check crashes here"
    skipped = [r.getMessage() for r in caplog.records if "livelock check of" in r.getMessage()]
    assert skipped and f"partition={tp.partition}" in skipped[0], "the guard skipped it"
    assert not worker.crashed, f"the worker crashed: {worker.crash_reason!r}"
    # it goes on consuming the partition that was reset
    await routed(settings, topics_ready, await send_control_event(settings, topics_ready, 1))
    assert not worker.crashed, f"the worker crashed: {worker.crash_reason!r}"
