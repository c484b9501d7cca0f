"""Kafka helpers shared by the integration tests: read a test's topics, produce, wait.

Everything here talks to the session's real broker (``kafka_bootstrap`` in
tests/conftest.py); nothing mocks Kafka. Waits have deadlines, never bare sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.topics import Topics

__all__ = [
    "Collector",
    "agent_collector",
    "collect",
    "header",
    "produce",
    "reading_from_start",
    "wait_group_stable",
    "wait_until",
]


@contextlib.asynccontextmanager
async def reading_from_start(
    settings: Settings, topics: Sequence[str]
) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer without a group, assigned every partition of ``topics``, at the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p) for topic in topics for p in range(settings.kafka.partitions)
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        yield consumer
    finally:
        await consumer.stop()


class Collector:
    """Reads the test's agent.raw and agent.dlq from the beginning; waits with deadlines.

    ``raw`` holds agent.raw lines, ``control`` the bridge's presence records
    (header ``control``), ``dlq`` the agent.dlq records, each in arrival order.
    """

    def __init__(self, consumer: AIOKafkaConsumer, topics: Topics) -> None:
        self.consumer = consumer
        self.topics = topics
        self.raw: list[Any] = []
        self.control: list[Any] = []
        self.dlq: list[Any] = []

    async def wait_for(self, what: str, cond: Callable[[], bool], within_s: float = 5.0) -> None:
        deadline = time.monotonic() + within_s
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}: {len(self.raw)} raw, {len(self.dlq)} dlq"
                )
            await self._poll(timeout_ms=100)

    async def drain(self, quiet_s: float = 1.0) -> None:
        """Read until ``quiet_s`` seconds in a row bring nothing new."""
        while await self._poll(timeout_ms=int(quiet_s * 1000)):
            pass

    async def _poll(self, timeout_ms: int) -> bool:
        """One poll, its records sorted into ``raw``, ``control`` and ``dlq``; False if none."""
        batches = await self.consumer.getmany(timeout_ms=timeout_ms)
        for tp, records in batches.items():
            for r in records:
                if tp.topic != self.topics.agent_raw:
                    self.dlq.append(r)
                elif any(k == "control" for k, _ in r.headers):
                    self.control.append(r)
                else:
                    self.raw.append(r)
        return bool(batches)

    def for_vm(self, vm: str) -> list[Any]:
        return [r for r in self.raw if r.key == vm.encode()]


@contextlib.asynccontextmanager
async def agent_collector(settings: Settings, topics: Topics) -> AsyncIterator[Collector]:
    """A :class:`Collector` over this test's agent.raw and agent.dlq."""
    async with reading_from_start(settings, (topics.agent_raw, topics.agent_dlq)) as consumer:
        yield Collector(consumer, topics)


async def collect(
    consumer: AIOKafkaConsumer,
    count: int,
    within_s: float,
    keep: Callable[[Any], bool] = lambda record: True,
) -> list[Any]:
    """Poll until ``count`` records that ``keep`` accepts have come, or ``within_s`` passed.

    Returns the kept records in arrival order, whole polls at a time (so possibly
    more than ``count``); it never raises on the deadline: the caller asserts on them.
    """
    found: list[Any] = []
    deadline = time.monotonic() + within_s
    while len(found) < count and time.monotonic() < deadline:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            found += [r for r in records if keep(r)]
    return found


async def wait_until(what: str, cond: Callable[[], bool], within_s: float = 5.0) -> float:
    """Poll a local condition; return how long it took."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > within_s:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def header(record: Any, name: str) -> bytes:
    """The one value of header ``name`` of a consumed record."""
    values = [v for k, v in record.headers if k == name]
    assert len(values) == 1, (name, record.headers)
    return bytes(values[0])


async def produce(
    settings: Settings, topic: str, records: Iterable[tuple[bytes, bytes | None]]
) -> None:
    """Produce ``(key, value)`` records (``None``: a tombstone) and wait for every ack.

    One idempotent producer: records with the same key stay in this order.
    """
    producer = make_producer(settings.kafka.bootstrap or "", linger_ms=0)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def wait_group_stable(
    bootstrap: str, group: str, within_s: float, *, members: int | None = None
) -> float:
    """Wait until consumer group ``group`` is Stable with ``members`` members (any, if None).

    Stable means the rebalance is over and every member has its partitions: a
    benchmark of steady state, or of a join or leave, starts only then. The
    group's coordinator may not answer yet on a fresh broker (it creates its
    offsets topic on the first ask), or while it moves in a failover: asked
    again until the deadline. Returns how long it took.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        start = time.monotonic()
        while True:
            with contextlib.suppress(KafkaError):
                for response in await admin.describe_consumer_groups([group]):
                    for described in response.groups:
                        state, found = described[2], len(described[5])
                        if state == "Stable" and found and members in (None, found):
                            return time.monotonic() - start
            if time.monotonic() - start > within_s:
                wanted = "members" if members is None else f"{members} members"
                raise AssertionError(f"consumer group {group} not Stable with {wanted} "
                                     f"within {within_s} s")  # fmt: skip
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
