"""The local broker and topic creation work against the real Kafka process."""

from __future__ import annotations

import logging

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from infra.config import Settings
from infra.kafka_io import wait_for_leaders
from schemas.topics import Topics
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
