"""The librdkafka partition reader (infra/partition_reader.py) against the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from infra.config import Settings
from infra.partition_reader import PartitionReader, ReaderError, Record
from schemas.topics import Topics
from tests.support.kafka import produce, wait_until


async def _read_until(
    reader: PartitionReader, done: dict[int, int], within_s: float = 15.0
) -> list[Record]:
    """Batches until every partition p reached offset done[p] (by a record or its end)."""
    got: list[Record] = []
    deadline = time.monotonic() + within_s
    while True:
        nxt = {p: max((r.offset + 1 for r in got if r.partition == p), default=-1) for p in done}
        reached = reader.reached_end()
        if all(nxt[p] >= end or reached.get(p, -1) >= end for p, end in done.items()):
            return got
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"not read within {within_s} s: {nxt} of {done}"
        got.extend(await asyncio.wait_for(reader.getmany(), remaining))


async def test_reads_every_partition_from_chosen_offsets_in_order(
    settings: Settings, topics_ready: Topics
) -> None:
    topic = topics_ready.events_outbound
    await produce(settings, topic, [(f"vm-{i % 7}".encode(), b"%d" % i) for i in range(300)])
    reader = PartitionReader(
        settings.kafka.bootstrap or "", topic, client_id="t-reader", fetch_wait_ms=10
    )
    try:
        assert await reader.start() == [0, 1, 2]
        ends = await reader.end_offsets()
        assert sum(ends.values()) == 300
        starts = {p: end // 2 for p, end in ends.items()}  # the second half of each partition
        reader.begin(starts)
        got = await _read_until(reader, ends)
        for p, end in ends.items():
            offsets = [r.offset for r in got if r.partition == p]
            assert offsets == list(range(starts[p], end)), p
        assert all(r.topic == topic and r.value is not None for r in got)
        assert all(abs(r.timestamp / 1000 - time.time()) < 60 for r in got)
        await wait_until(
            "the partitions' ends noted", lambda: {p: reader.highwater(p) for p in ends} == ends
        )

        # live: what is produced now arrives, in each VM's order
        reader.stop_end_reports()
        await produce(settings, topic, [(b"vm-live", b"live-%d" % i) for i in range(50)])
        live: list[Record] = []
        deadline = time.monotonic() + 15
        while len(live) < 50:
            live.extend(await asyncio.wait_for(reader.getmany(), deadline - time.monotonic()))
        assert [r.value for r in live] == [b"live-%d" % i for i in range(50)]
    finally:
        await reader.stop()


async def test_offsets_for_times_finds_the_window_start(
    settings: Settings, topics_ready: Topics
) -> None:
    topic = topics_ready.events_outbound
    await produce(settings, topic, [(b"vm-a", b"old")])
    cut = int(time.time() * 1000) + 1
    await asyncio.sleep((cut + 2) / 1000 - time.time())  # the next record is stamped after it
    await produce(settings, topic, [(b"vm-a", b"new")])
    reader = PartitionReader(
        settings.kafka.bootstrap or "", topic, client_id="t-reader", fetch_wait_ms=10
    )
    try:
        await reader.start()
        ends = await reader.end_offsets()
        found = await reader.offsets_for_times(cut)
        hits = {p: o for p, o in found.items() if o is not None}
        assert len(hits) == 1  # one VM, one partition, one record after the cut
        ((p, offset),) = hits.items()
        assert offset == ends[p] - 1
        reader.begin({q: (hits.get(q, ends[q])) for q in ends})
        got = await _read_until(reader, ends)
        assert [r.value for r in got] == [b"new"]
    finally:
        await reader.stop()


async def test_a_missing_topic_is_a_clear_error(settings: Settings) -> None:
    reader = PartitionReader(
        settings.kafka.bootstrap or "",
        f"{settings.kafka.topic_prefix}no-such-topic",
        client_id="t-reader",
        fetch_wait_ms=10,
        timeout_s=5.0,
    )
    with pytest.raises(ReaderError, match="no partitions"):
        await reader.start()


async def test_a_topic_just_created_is_read_once_its_leaders_are_there(settings: Settings) -> None:
    """Asked at once after creation, librdkafka answers "not leader" for a while; the reader
    waits for the leaders (the gateway failed to start of it in the test suite)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    names = [f"{settings.kafka.topic_prefix}fresh-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap or "")
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=6, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()
    for name in names:
        reader = PartitionReader(
            settings.kafka.bootstrap or "", name, client_id="t-reader", fetch_wait_ms=10
        )
        try:
            assert await reader.start() == list(range(6))
            assert await reader.end_offsets() == dict.fromkeys(range(6), 0)
            assert await reader.offsets_for_times(0) == dict.fromkeys(range(6), None)
        finally:
            await reader.stop()


def test_transient_errors_are_asked_again_and_others_raised_at_once() -> None:
    """The broker states behind these errors (a leader being elected or moving) cannot be
    produced on demand, so the client's own exception is raised here by a stand-in call."""
    from confluent_kafka import KafkaError, KafkaException

    reader = PartitionReader("127.0.0.1:1", "t", client_id="t", fetch_wait_ms=10, timeout_s=5)
    answers: list[Exception | str] = [
        KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)),
        KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE)),
        "ends",
    ]

    def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert reader._retrying(call) == "ends" and not answers

    def denied() -> str:
        raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))

    started = time.monotonic()
    with pytest.raises(KafkaException):
        reader._retrying(denied)
    assert time.monotonic() - started < 1.0
