"""The librdkafka group member (infra/group_reader.py) against the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import confluent_kafka
import pytest

from infra.config import Settings
from infra.group_reader import GroupReader, ReaderError, TopicPartition
from infra.kafka_io import wait_for_leaders
from schemas.topics import Topics
from tests.support.kafka import produce

pytestmark = pytest.mark.integration


class Member:
    """A group member that keeps what it read, by partition, and commits on request."""

    def __init__(self, settings: Settings, topics: list[str], group: str, **reader: Any) -> None:
        self.got: dict[TopicPartition, list[int]] = {}
        self.revocations = 0
        self.commit_on_revoke: dict[TopicPartition, int] = {}
        self.reader: GroupReader[tuple[str, int, int]] = GroupReader(
            bootstrap=settings.kafka.bootstrap or "",
            topics=topics,
            group_id=group,
            convert=self._convert,
            partition_of=lambda r: TopicPartition(r[0], r[1]),
            on_revoke=self._revoke,
            on_assign=self._assign,
            fetch_wait_ms=10,
            session_timeout_s=6.0,
            **reader,
        )
        self.assigned: set[TopicPartition] | None = None

    @staticmethod
    def _convert(m: Any) -> tuple[str, int, int]:
        return (m.topic(), m.partition(), m.offset())

    async def _revoke(self) -> None:
        self.revocations += 1
        if self.commit_on_revoke:  # the worker's case: the batch being stored commits first
            await self.reader.commit(self.commit_on_revoke)

    async def _assign(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned

    async def start(self) -> None:
        await self.reader.start()

    async def read(self, within_s: float = 0.2) -> int:
        got = await self.reader.getmany(within_s, 10_000)
        for tp, records in got.items():
            self.got.setdefault(tp, []).extend(r[2] for r in records)
        return sum(len(r) for r in got.values())

    async def read_until(self, what: str, cond: Any, within_s: float = 20.0) -> None:
        deadline = time.monotonic() + within_s
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.got}"
            await self.read()


async def test_reads_both_topics_commits_and_seeks_back(
    settings: Settings, topics_ready: Topics
) -> None:
    topics = [topics_ready.agent_raw, topics_ready.hypervisor_events]
    for topic in topics:
        await produce(settings, topic, [(f"vm-{i % 5}".encode(), b"%d" % i) for i in range(60)])
    group = f"t-group-{uuid.uuid4().hex[:6]}"
    member = Member(settings, topics, group)
    await member.start()
    try:
        await member.read_until(
            "all 120 records", lambda: sum(map(len, member.got.values())) == 120
        )
        assert member.assigned is not None and len(member.assigned) == 6  # 3 partitions each
        for offsets in member.got.values():  # each partition in offset order, from 0
            assert offsets == list(range(len(offsets)))
        raw = max(  # the partition of agent.raw with the most records (12 per key)
            (tp for tp in member.got if tp.topic == topics_ready.agent_raw),
            key=lambda tp: len(member.got[tp]),
        )
        await member.reader.commit({raw: 2})

        # a failed batch is read again: nothing fetched before the seek comes after it
        await produce(settings, topics_ready.agent_raw, [(b"vm-0", b"more")] * 20)
        member.reader.seek({raw: 2})
        member.got.clear()
        await member.read_until("the partition again", lambda: len(member.got.get(raw, [])) > 0)
        await member.read_until(
            "the partition to its end", lambda: member.got[raw][-1] >= member.got[raw][0] + 5
        )
        assert member.got[raw][0] == 2
        assert member.got[raw] == list(range(2, 2 + len(member.got[raw])))
    finally:
        await member.reader.stop()

    # a new member starts at the committed offsets (that partition of agent.raw: 2)
    again = Member(settings, [topics_ready.agent_raw], group)
    await again.start()
    try:
        await again.read_until("the partition", lambda: raw in again.got)
        assert again.got[raw][0] == 2
    finally:
        await again.reader.stop()


async def test_the_lag_is_what_is_past_the_committed_offsets(
    settings: Settings, topics_ready: Topics
) -> None:
    """What `vmpulse_worker_consumer_lag` shows: records read but not committed count as
    lag (the worker commits once they are stored); once committed, none."""
    topic = topics_ready.agent_raw
    await produce(settings, topic, [(f"vm-{i % 7}".encode(), b"%d" % i) for i in range(70)])
    member = Member(settings, [topic], f"t-group-{uuid.uuid4().hex[:6]}", stats_interval_ms=100)
    await member.start()
    try:
        await member.read_until("all 70", lambda: sum(map(len, member.got.values())) == 70)
        # a partition with nothing committed yet has no lag librdkafka knows: commit one
        # record of each, and 70 minus those are left
        await member.reader.commit({tp: 1 for tp in member.got})
        left = 70 - len(member.got)
        await member.read_until("the lag after one each", lambda: member.reader.lag(topic) == left)
        await member.reader.commit({tp: offsets[-1] + 1 for tp, offsets in member.got.items()})
        await member.read_until("no lag", lambda: member.reader.lag(topic) == 0)
    finally:
        await member.reader.stop()


async def test_a_revocation_commits_before_the_partitions_move(
    settings: Settings, topics_ready: Topics
) -> None:
    topic = topics_ready.agent_raw
    await produce(settings, topic, [(f"vm-{i % 9}".encode(), b"%d" % i) for i in range(90)])
    group = f"t-group-{uuid.uuid4().hex[:6]}"
    first = Member(settings, [topic], group)
    await first.start()
    second = Member(settings, [topic], group)
    try:
        await first.read_until("all 90", lambda: sum(map(len, first.got.values())) == 90)
        # what the first member "stored": everything; it commits when its partitions go
        first.commit_on_revoke = {tp: offsets[-1] + 1 for tp, offsets in first.got.items()}
        await second.start()
        await asyncio.gather(
            first.read_until("the first revoked", lambda: first.revocations >= 1),
            second.read_until("the second assigned", lambda: bool(second.assigned)),
        )
        assert first.assigned is not None and second.assigned is not None
        assert first.assigned.isdisjoint(second.assigned)
        # the second member starts where the first committed: it reads nothing old
        await produce(settings, topic, [(f"vm-{i % 9}".encode(), b"new") for i in range(30)])
        before = {tp: len(offsets) for tp, offsets in first.got.items()}

        def new_read() -> int:
            kept = sum(len(o) - before.get(tp, 0) for tp, o in first.got.items())
            return kept + sum(len(o) for o in second.got.values())

        deadline = time.monotonic() + 20
        while new_read() < 30:
            assert time.monotonic() < deadline, f"{new_read()} of the 30 new records read"
            await asyncio.gather(first.read(0.1), second.read(0.1))
        assert second.got, "the second member read nothing"
        for tp, offsets in second.got.items():
            assert offsets[0] == first.commit_on_revoke[tp], tp
    finally:
        await asyncio.gather(first.reader.stop(), second.reader.stop())


async def test_a_reading_thread_that_fails_is_an_error_not_silence(
    settings: Settings, topics_ready: Topics
) -> None:
    """A bug in the thread (here: the conversion) must not leave a worker that looks alive
    and reads nothing: ``getmany`` raises."""
    topic = topics_ready.agent_raw
    await produce(settings, topic, [(b"vm-1", b"fine"), (b"vm-1", b"boom")])

    def convert(m: Any) -> bytes:
        if m.value() == b"boom":
            raise ValueError("a conversion bug (test)")
        return bytes(m.value())

    async def nothing(*args: Any) -> None:
        return None

    reader: GroupReader[bytes] = GroupReader(
        bootstrap=settings.kafka.bootstrap or "",
        topics=[topic],
        group_id=f"t-group-{uuid.uuid4().hex[:6]}",
        convert=convert,
        partition_of=lambda r: TopicPartition(topic, 0),
        on_revoke=nothing,
        on_assign=nothing,
        fetch_wait_ms=10,
        session_timeout_s=6.0,
    )
    await reader.start()
    try:
        deadline = time.monotonic() + 20
        with pytest.raises(ReaderError, match="stopped") as raised:
            while True:
                assert time.monotonic() < deadline, "the failure was never reported"
                await reader.getmany(0.2, 100)
        assert isinstance(raised.value.__cause__, ValueError)
    finally:
        await reader.stop()


async def test_a_full_fetch_from_many_partitions_is_received(settings: Settings) -> None:
    """A worker catching up on a backlog gets fetches filled to ``fetch.max.bytes``, and
    the response carries a header per partition on top. With librdkafka's documented
    least receive size (``fetch.max.bytes + 512``) such a fetch of 12 partitions was
    refused on receipt, asked again and refused again: the worker read nothing more.
    Here the same at a smaller scale: 1 MiB fetches (librdkafka's least) from 64 partitions."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"{settings.kafka.topic_prefix}wide-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap or "")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=64, replication_factor=1)])
    finally:
        await admin.close()
    assert await wait_for_leaders(settings.kafka.bootstrap or "", [topic], 64)
    # a record a batch, as a bridge at a few lines a second writes them: the broker fills a
    # fetch batch by batch, so with small batches it fills it to within a few hundred bytes
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": settings.kafka.bootstrap, "linger.ms": 0, "batch.num.messages": 1}
    )
    for i in range(1600):
        producer.produce(topic, b"x" * 1000, b"vm-%d" % (i % 200))
        producer.poll(0)
    assert producer.flush(30) == 0
    group = f"t-group-{uuid.uuid4().hex[:6]}"
    member = Member(settings, [topic], group, fetch_max_bytes=1024 * 1024)
    await member.start()
    try:
        await member.read_until(
            "all 1,600 records", lambda: sum(map(len, member.got.values())) == 1600, 30.0
        )
    finally:
        await member.reader.stop()
