"""A local KRaft cluster of 3 brokers: topics replicated 3 ways, 2 in sync, and a crash survived.

Real Apache Kafka processes from the same jars as the session broker
(infra/cluster.py); the test starts its own cluster, and kills one broker with
SIGKILL as a crash would. The session's single broker is not used here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError

from infra.cluster import LocalCluster
from infra.kafka_io import Durability, ensure_topics, make_producer
from schemas.topics import Topics

pytestmark = pytest.mark.cluster  # about 45 s here, 30 of them starting 3 JVMs on 2 cores

PARTITIONS = 3
DEADLINE_S = 30.0


async def _partitions(admin: AIOKafkaAdminClient, topic: str) -> list[dict[str, Any]]:
    """The topic's partitions; the admin client may first ask the broker that was killed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while True:
        try:
            [described] = await admin.describe_topics([topic])
            return sorted(described["partitions"], key=lambda p: int(p["partition"]))
        except (NodeNotReadyError, KafkaConnectionError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_topics_get_three_replicas_two_in_sync_and_acked_writes_survive_a_kill(
    cluster: LocalCluster,
) -> None:
    began = time.monotonic()
    topics = Topics("c.")
    plan = await ensure_topics(cluster.bootstrap, topics, partitions=PARTITIONS)
    assert plan == Durability(replication_factor=3, min_insync_replicas=2)

    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        for name in topics.all():
            for p in await _partitions(admin, name):
                assert sorted(p["replicas"]) == [1, 2, 3], (name, p)
                assert sorted(p["isr"]) == [1, 2, 3], (name, p)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics.all()]
        )
        for response in configs:
            for _, _, _, name, entries in response.resources:
                found = {e[0]: e[1] for e in entries}
                assert found["min.insync.replicas"] == "2", name
                compact = "compact" if name in topics.compacted() else "delete"
                assert found["cleanup.policy"] == compact, name

        # acks=all writes to one partition; then its leader dies mid-stream
        topic, key = topics.agent_raw, b"vm-7"
        producer = make_producer(cluster.bootstrap, linger_ms=0)
        await producer.start()
        try:
            sent = [f"line {i}".encode() for i in range(400)]
            first = await producer.send_and_wait(topic, sent[0], key=key)
            leader = int((await _partitions(admin, topic))[first.partition]["leader"])
            for value in sent[1:200]:
                await producer.send_and_wait(topic, value, key=key)
            killed_at = time.monotonic()
            cluster.kill(leader)
            for value in sent[200:]:
                await asyncio.wait_for(producer.send_and_wait(topic, value, key=key), DEADLINE_S)
            print(f"200 acked writes after killing broker {leader} took "
                  f"{time.monotonic() - killed_at:.2f} s")  # fmt: skip
        finally:
            await producer.stop()

        async def isr_shrunk() -> bool:
            p = (await _partitions(admin, topic))[first.partition]
            return leader not in p["isr"] and int(p["leader"]) != leader

        await _until(f"broker {leader} out of the ISR", isr_shrunk)
        [left] = [p for p in await _partitions(admin, topic) if p["partition"] == first.partition]
        assert len(left["isr"]) == 2
    finally:
        await admin.close()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=cluster.bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, first.partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        while len(got) < len(sent) and loop.time() < deadline:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                got.extend(r.value for r in records if r.key == key)
    finally:
        await consumer.stop()
    assert got == sent, "every acknowledged write, once each, in order"
    print(f"topics, checks and failover in {time.monotonic() - began:.1f} s")
