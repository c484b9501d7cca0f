"""Reading a recorded block of agent.raw back from Kafka by offset, to repair it.

A block spans the partitions of one worker's batch (streams/blocks.py); after a
crash or a rebalance the worker that must repair it may own only some of them,
so its group consumer cannot deliver the whole block. A consumer outside any
group, assigned to exactly the block's partitions and seeked to each span's
first offset, can. Only happens after a crash or a failed insert: one short-lived
consumer per repair.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.config import KafkaAuth
from infra.kafka_auth import PLAINTEXT, aiokafka_auth
from streams.blocks import Span, block_id
from streams.pipeline import RawRecord

__all__ = ["ReadBackError", "from_rdkafka", "read_back", "read_until", "to_raw_record"]

log = logging.getLogger(__name__)


class ReadBackError(RuntimeError):
    """The records asked for could not all be read within the deadline."""


def to_raw_record(rec: Any) -> RawRecord:
    """An aiokafka ConsumerRecord as the pipeline sees it."""
    return RawRecord(
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        key=rec.key,
        value=rec.value if rec.value is not None else b"",
        # aiokafka hands header values over as bytes already: dict() copies them in C
        headers=dict(rec.headers or ()),
        timestamp_ms=rec.timestamp if rec.timestamp is not None and rec.timestamp >= 0 else None,
    )


def from_rdkafka(message: Any) -> RawRecord:
    """A librdkafka (confluent-kafka) message as the pipeline sees it."""
    value = message.value()
    headers = message.headers()
    kind, timestamp = message.timestamp()
    return RawRecord(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        value=value if value is not None else b"",
        headers=dict(headers) if headers else {},
        timestamp_ms=timestamp if kind and timestamp >= 0 else None,
    )


async def read_until(
    consumer: AIOKafkaConsumer, stops: dict[TopicPartition, int], timeout_s: float, what: str
) -> list[Any]:
    """Records of an assigned consumer from its positions up to ``stops[tp]`` included.

    Done with a partition once its position passed its stop, so a stop on an
    offset without a record (a compacted or emptied log) ends too.
    ReadBackError if that takes longer than ``timeout_s``.
    """
    todo = dict(stops)
    out: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        for tp in list(todo):
            if await consumer.position(tp) > todo[tp]:
                del todo[tp]
        if not todo:
            return out
        remaining_ms = int((deadline - loop.time()) * 1000)
        if remaining_ms <= 0:
            raise ReadBackError(f"reading back {what} timed out")
        got = await consumer.getmany(*todo, timeout_ms=min(remaining_ms, 1000))
        for tp, records in got.items():
            stop = todo.get(tp, -1)
            out.extend(r for r in records if r.offset <= stop)


async def read_back(
    bootstrap: str,
    topic: str,
    spans: Sequence[Span],
    *,
    timeout_s: float = 30.0,
    auth: KafkaAuth = PLAINTEXT,
) -> list[RawRecord]:
    """The records of ``spans`` of ``topic``, in fetch order.

    Offsets the log no longer holds (retention deleted them, or they were never
    written) are logged and left out: such a block is long stored, or it can
    never be rebuilt by anyone.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
        **aiokafka_auth(auth),
    )
    await consumer.start()
    try:
        wanted = {TopicPartition(topic, s.partition): s for s in spans}
        consumer.assign(list(wanted))
        begins = await consumer.beginning_offsets(list(wanted))
        ends = await consumer.end_offsets(list(wanted))
        todo: dict[TopicPartition, int] = {}
        for tp, span in wanted.items():
            first, last = max(span.first, begins[tp]), min(span.last, ends[tp] - 1)
            if (first, last) != (span.first, span.last):
                log.warning(
                    "%s[%d]: offsets %d-%d of a recorded block are not in the log (it holds "
                    "%d-%d); repairing with what is left",
                    topic, tp.partition, span.first, span.last, begins[tp], ends[tp] - 1,
                )  # fmt: skip
            if first <= last:
                consumer.seek(tp, first)
                todo[tp] = last
        records = await read_until(consumer, todo, timeout_s, f"{topic} {block_id(spans)}")
        return [to_raw_record(r) for r in records]
    finally:
        await consumer.stop()
