"""The worker's batched sends, through its own Faust app's producer, on the real broker.

``TopicSender.send_many`` reaches into Faust for the app's aiokafka producer
(``Producer._ensure_producer``, a pinned seam): if a Faust upgrade moves it, this
test fails here rather than the live path in production.
"""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer

from agents.vm_partition import vm_partition
from infra.config import Settings
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore
from streams.app import create_app
from streams.outbox import TopicSender

pytestmark = pytest.mark.integration


async def test_send_many_puts_each_key_on_its_partition_in_order(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> None:
    app = create_app(settings, chdb_store)
    await app.producer.start()
    try:
        sender = TopicSender(app, topics_ready.events_outbound)
        vms = [f"vm-{i}" for i in range(40)]
        sent = [(vm.encode(), f"{vm}/{n}".encode()) for n in range(3) for vm in vms]
        await sender.send_many(sent[:60])
        await sender.send_many(sent[60:])
        await sender.flush()
    finally:
        await app.producer.stop()
    consumer = AIOKafkaConsumer(
        topics_ready.events_outbound,
        bootstrap_servers=settings.kafka.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got: list[tuple[int, bytes, bytes]] = []
        while len(got) < len(sent):
            batches = await consumer.getmany(timeout_ms=5000)
            assert batches, f"only {len(got)} of {len(sent)} records arrived"
            for records in batches.values():
                got += [(r.partition, r.key, r.value) for r in records]
    finally:
        await consumer.stop()
    assert len(got) == len(sent)
    # the Java client's partition for every key, as every other producer of the topic
    assert all(p == vm_partition(k.decode(), settings.kafka.partitions) for p, k, _ in got)
    for vm in vms:
        assert [v for _, k, v in got if k == vm.encode()] == [
            f"{vm}/{n}".encode() for n in range(3)
        ]
