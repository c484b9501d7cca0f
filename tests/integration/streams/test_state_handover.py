"""The handover of VM state between workers, through the real worker.state topic.

A worker that loses its partitions writes what changed and forgets its VMs; the
worker given a partition resumes exactly that partition's VMs and nothing more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import AIOKafkaProducer

from infra.config import Settings
from infra.kafka_io import DirectoryTail, make_producer
from schemas.topics import Topics
from streams.event_agents import EventStages
from streams.pipeline import RawRecord
from streams.presence import OFFLINE, ONLINE

pytestmark = pytest.mark.integration


class KafkaSender:
    """What the worker's TopicSender does, over a plain aiokafka producer."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    async def send(self, *, key: bytes, value: bytes, partition: int | None = None) -> None:
        await self.producer.send(self.topic, value, key=key, partition=partition)

    async def flush(self) -> None:
        await self.producer.flush()


MakeStages = Callable[[], Awaitable[EventStages]]


@pytest.fixture
async def make_stages(settings: Settings, topics_ready: Topics) -> AsyncIterator[MakeStages]:
    # records wait 2 s in the producer unless flushed: the handover must flush them
    producer = make_producer(settings.kafka.bootstrap or "", linger_ms=2000)
    await producer.start()
    tails: list[DirectoryTail] = []

    async def make() -> EventStages:
        tail = DirectoryTail(settings.kafka.bootstrap or "", topics_ready)
        await tail.start()
        tails.append(tail)
        return EventStages(
            settings,
            tail,
            KafkaSender(producer, topics_ready.events_outbound),
            KafkaSender(producer, topics_ready.worker_state),
        )

    yield make
    for tail in tails:
        await tail.stop()
    await producer.stop()


def line(vm: str, partition: int, offset: int) -> RawRecord:
    return RawRecord("agent.raw", partition, offset, vm.encode(), b'{"type":"x"}', {})


async def test_the_next_owner_resumes_its_partitions_vms_only(make_stages: MakeStages) -> None:
    first = await make_stages()
    await first.take({0, 1, 2})
    await first.observe_raw([line("vm-a", 0, 0), line("vm-b", 1, 0)])
    await first.hypervisor_event(
        b'{"vm_id":"vm-b","state":"paused","reason":"test","time":"2026-11-25T12:00:00Z"}', 1
    )
    await first.release()  # a rebalance: written and acknowledged, then forgotten
    assert first.presence.state("vm-a") == (None, None)
    assert first.presence.tick(now=1e12) == []  # nothing held: no false offline

    second = await make_stages()
    await second.take({1})
    assert second.presence.state("vm-b") == (ONLINE, "paused")
    assert second.presence.state("vm-a") == (None, None)  # partition 0 is someone else's
    assert second.stats["restored_vms"] == 1
    [offline] = second.presence.tick(now=1e12)
    assert offline.data == {"vmId": "vm-b", "agentState": OFFLINE, "powerState": "paused"}
