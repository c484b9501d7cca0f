"""A leader change while the worker's Faust consumer resets a partition's position (issue 14).

The crash it reproduces: in a broker failover a fetch of control.events is
answered OFFSET_OUT_OF_RANGE (by a replica that is still catching up: Kafka 4
lets a follower serve a consumer whose metadata is stale), aiokafka unsets the
partition's position and asks the partition's leader for the reset offset;
that leader is the broker that just died, so the ListOffsets fails until the
client's metadata names the new leader, seconds later. Faust's livelock
detector ticks in that window, reads the unset position, aiokafka asserts,
and the Faust app crashed (the `vmpulse worker` exited). streams/faust_internals.py
has the cause and the guard.

Real here: a 3-broker KRaft cluster, the vmpulse worker's Faust app
(``create_app``, in this process: the test reaches its consumer) and its
consumer thread, the broker's OFFSET_OUT_OF_RANGE, aiokafka's reset, the
kill -9 of the partition's leader, the failed ListOffsets against it, the
metadata refresh, Faust's detector on its own timer. Made to happen on cue,
and said so: the out-of-range fetch comes from a seek of the aiokafka
consumer past the end (a replica lagging behind a stale client cannot be
arranged on demand), and the leader is killed from inside aiokafka's
``await_reset`` of that partition, so that its ListOffsets always meets the
dead leader (in the wild that timing is luck, which is why the crash was
rare).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer.subscription_state import TopicPartitionState
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError

from infra.cluster import LocalCluster
from infra.config import Settings
from infra.kafka_io import durability, ensure_settings_topics
from store.clickhouse import ClickHouseStore
from streams.app import create_app
from streams.faust_internals import GuardedConsumer
from tests.support.faust_consumer import (
    aiokafka_consumer,
    fetched,
    partition_state,
    routed,
    seek_past_the_end,
    send_control_event,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

PARTITIONS = 6
DEADLINE_S = 60.0


async def _until(what: str, check: Callable[[], bool], within_s: float = DEADLINE_S) -> float:
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < within_s, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def _leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> leader node; a client may first ask a broker that is down."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            [described] = await admin.describe_topics([topic])
            return {int(p["partition"]): int(p["leader"]) for p in described["partitions"]}
        except (NodeNotReadyError, KafkaConnectionError):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


async def test_a_position_reset_meeting_a_dead_leader_does_not_crash_the_worker(
    cluster: LocalCluster,
    chdb_store: ClickHouseStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    began = time.monotonic()
    prefix = f"ff{uuid.uuid4().hex[:6]}."
    s = Settings(data_dir=tmp_path).replace(
        kafka={
            "bootstrap": cluster.bootstrap,
            "topic_prefix": prefix,
            "partitions": PARTITIONS,
            "session_timeout_s": 6.0,
        },
    )
    topics = await ensure_settings_topics(s)
    caplog.set_level(logging.WARNING)
    app = create_app(s, chdb_store, batch_within_s=0.05, plan=durability(3))
    assert type(app.consumer) is GuardedConsumer
    control = [TopicPartition(topics.control_events, p) for p in range(PARTITIONS)]
    await app.start()
    try:
        await _until("the Faust consumer to fetch every control.events partition",
                     lambda: fetched(app, control))  # fmt: skip
        await routed(s, topics, await send_control_event(s, topics, 0))

        # the partition: one whose leader is not the Faust group's coordinator, so that the
        # kill does not also make the group rebalance (the detector pauses in a rebalance)
        coordinator = aiokafka_consumer(app)._coordinator.coordinator_id
        leaders = await _leaders(cluster.bootstrap, topics.control_events)
        partition = next((p for p, n in sorted(leaders.items()) if n != coordinator), 0)
        tp, victim = control[partition], leaders[partition]
        target = partition_state(app, tp)
        assert target is not None
        pid = cluster.brokers[victim].pid
        assert pid is not None
        killed: list[float] = []
        reset = TopicPartitionState.await_reset

        def await_reset(state: TopicPartitionState, strategy: int) -> None:
            # aiokafka's fetcher on OFFSET_OUT_OF_RANGE, in the consumer's thread: the
            # leader dies now, before the reset's ListOffsets reaches it
            if state is target and not killed:
                os.killpg(pid, signal.SIGKILL)
                killed.append(time.monotonic())
            reset(state, strategy)

        monkeypatch.setattr(TopicPartitionState, "await_reset", await_reset)
        # the next fetch of the partition is answered OFFSET_OUT_OF_RANGE
        await seek_past_the_end(app, tp)

        def skipped() -> bool:
            return any(
                "livelock check of" in r.getMessage() and f"partition={partition}" in r.getMessage()
                for r in caplog.records
            )

        await _until(f"node {victim}, leader of {tp}, killed at the reset", lambda: bool(killed))
        # Faust's detector met the unset position (before the guard: AssertionError, crash)
        await _until("Faust's livelock detector to meet the unset position", skipped)
        without = await _until("the reset to complete on the new leader",
                               lambda: target.has_valid_position)  # fmt: skip
        print(f"position of {tp} unset for {time.monotonic() - killed[0]:.1f} s after the kill "
              f"of node {victim} ({without:.1f} s after the detector met it)")  # fmt: skip
        assert not app.crashed, f"the Faust app crashed: {app.crash_reason!r}"

        # the worker goes on, on the partition that was reset and on another one
        for p in (partition, (partition + 1) % PARTITIONS):
            await routed(s, topics, await send_control_event(s, topics, p))
        assert not app.crashed, f"the Faust app crashed: {app.crash_reason!r}"
    finally:
        await app.stop()
    print(f"leader change during a position reset, survived, in {time.monotonic() - began:.1f} s")
