"""The local broker and topic creation work against the real Kafka process."""

from __future__ import annotations

import asyncio
import logging
import time

import confluent_kafka
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from infra.config import Settings
from infra.kafka_io import wait_for_leaders
from schemas.topics import MAX_BATCH_BYTES, Topics
from tests.support.kafka import produce, reading_from_start


async def test_topics_created_with_partitions_and_compaction(
    settings: Settings, topics_ready: Topics
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics_ready.all()))
        assert {t["topic"] for t in described} == set(topics_ready.all())
        assert all(len(t["partitions"]) == settings.kafka.partitions for t in described)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics_ready.directory)]
        )
        entries = {c[0]: c[1] for c in configs[0].resources[0][4]}
        assert entries["cleanup.policy"] == "compact"
    finally:
        await admin.close()


async def test_idempotent_producer_round_trip(settings: Settings, topics_ready: Topics) -> None:
    await produce(settings, topics_ready.agent_raw, [(b"vm-1", b"hello")])
    async with reading_from_start(settings, (topics_ready.agent_raw,)) as consumer:
        record = await consumer.getone()
        assert (record.key, record.value) == (b"vm-1", b"hello")


async def test_waiting_for_leaders_is_never_fatal(
    settings: Settings, topics_ready: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    """A partition whose leader does not answer in time costs a warning, not the stage."""
    bootstrap = settings.kafka.bootstrap or ""
    assert await wait_for_leaders(bootstrap, [topics_ready.directory], 3, timeout_s=10)
    # partition 3 of a 3-partition topic has no leader, ever (auto-creation is off)
    with caplog.at_level(logging.WARNING, logger="infra.kafka_io"):
        assert not await wait_for_leaders(bootstrap, [topics_ready.directory], 4, timeout_s=2)
    assert "no serving leader within 2 s" in caplog.text
    # None: the partitions the topics have, whatever a stage's VMPULSE_PARTITIONS says
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="infra.kafka_io"):
        assert await wait_for_leaders(bootstrap, [topics_ready.directory], None, timeout_s=2)
    assert "no serving leader" not in caplog.text


KAFKA_DEFAULT_MESSAGE_MAX_BYTES = "1048588"


def _produce_sizes(bootstrap: str, topics: list[str], size: int) -> dict[str, object]:
    """Send one ``size``-byte record to each topic (uncompressed); each one's error or None."""
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "message.max.bytes": MAX_BATCH_BYTES,
         "compression.type": "none"}
    )  # fmt: skip
    errors: dict[str, object] = {}
    for topic in topics:

        def delivered(error: object, _: object, topic: str = topic) -> None:
            errors[topic] = error

        producer.produce(topic, b"x" * size, b"vm-1", on_delivery=delivered)
    assert producer.flush(30) == 0
    return errors


async def test_the_topics_take_a_long_line_on_brokers_left_at_kafkas_default(
    settings: Settings, topics_ready: Topics
) -> None:
    """Kafka's default ``message.max.bytes`` (about 1 MiB) refuses a 3 MiB record, a line
    the bridge accepts (up to 4 MiB): every topic vmpulse creates carries its own limit.
    The session's brokers are set to that default for the test (dynamic config), then back."""
    bootstrap = settings.kafka.bootstrap or ""
    plain = f"{settings.kafka.topic_prefix}plain"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        brokers = [str(b["node_id"]) for b in (await admin.describe_cluster())["brokers"]]

        async def set_limit(value: str | None) -> None:
            # AlterConfigs replaces a broker's dynamic configs: none (the static file) after
            configs = {} if value is None else {"message.max.bytes": value}
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.BROKER, b, configs) for b in brokers]
            )

        async def plain_refuses(refused: bool) -> None:
            # a broker applies a dynamic config when it reads it from the metadata log,
            # a moment after the answer: wait until a plain topic shows it (or not)
            deadline = time.monotonic() + 20
            while True:
                errors = await asyncio.to_thread(_produce_sizes, bootstrap, [plain], size)
                if ("MSG_SIZE_TOO_LARGE" in str(errors[plain])) == refused:
                    return
                assert time.monotonic() < deadline, f"plain topic refused={not refused}"
                await asyncio.sleep(0.2)

        size = 3 * 1024 * 1024
        await admin.create_topics([NewTopic(plain, 1, 1)])
        await wait_for_leaders(bootstrap, [plain], 1)
        await set_limit(KAFKA_DEFAULT_MESSAGE_MAX_BYTES)
        try:
            await plain_refuses(True)  # the brokers are at the default now
            ours = [topics_ready.agent_raw, topics_ready.agent_dlq, topics_ready.events_outbound]
            errors = await asyncio.to_thread(_produce_sizes, bootstrap, ours, size)
            refused = {t: str(errors[t]) for t in ours if errors[t] is not None}
            assert refused == {}
        finally:
            await set_limit(None)
            await plain_refuses(False)  # back as they were before the next test runs
    finally:
        await admin.close()
