"""The latest records of ``agent.dlq``, read straight from the broker.

No consumer group, nothing committed: looking never disturbs anything. The
gateway's admin overview and ``vmpulse dlq`` both read it this way;
:class:`Tally` is the pure part.

Memory is bounded whatever the DLQ holds: a dead letter carries its line, up
to 4 MiB and more (a guest may send such lines on purpose), and the overview
scans 10,000 records a partition. So records are counted as they come (only
their reason is decoded), only the ``latest`` newest are kept, and those with
their line cut to :data:`RAW_SHOWN` characters (the whole record stays in Kafka).
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra.config import KafkaAuth
from infra.kafka_auth import PLAINTEXT, aiokafka_auth
from schemas.topics import Topics

__all__ = ["RAW_SHOWN", "DlqEntry", "Summary", "Tally", "read_dlq"]

RAW_SHOWN: Final = 2000
"""Characters of a dead letter's line kept for display; ``raw_length`` says how many it had."""


@dataclass(frozen=True, slots=True)
class DlqEntry:
    partition: int
    offset: int
    timestamp_ms: int
    key: str
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Summary:
    scanned: int
    counts: dict[str, int]
    latest: list[DlqEntry]


async def read_dlq(
    bootstrap: str,
    prefix: str,
    *,
    max_per_partition: int,
    latest: int,
    auth: KafkaAuth = PLAINTEXT,
) -> Summary:
    """The last ``max_per_partition`` records of every partition of agent.dlq, counted
    by reason, with the ``latest`` newest of them.

    Nothing when there is no agent.dlq yet (no stage has created the topics of
    this prefix): a consumer subscribed to a missing topic would wait for it,
    logging an error ten times a second, then fail.
    """
    topic = Topics(prefix).agent_dlq
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **aiokafka_auth(auth))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tally = Tally(latest)
    if described["error_code"] != 0 or not described["partitions"]:
        return tally.summary()
    tps = sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])
    # assigned, not subscribed: no group, every partition
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **aiokafka_auth(auth)
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(begin[tp], end[tp] - max_per_partition))
        pending = {tp for tp in tps if end[tp] > begin[tp]}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                for rec in records:
                    if rec.offset < end[tp]:
                        tally.add(rec)
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        return tally.summary()
    finally:
        await consumer.stop()


class _Reason(msgspec.Struct):
    reason: str = "?"


_reason_of = msgspec.json.Decoder(_Reason).decode

_UNREADABLE = "unreadable_dlq_record"


class Tally:
    """Counts records by reason and keeps the ``latest`` newest (by timestamp, then
    partition and offset), each with its line cut for display."""

    def __init__(self, latest: int) -> None:
        self._latest = latest
        self._counts: Counter[str] = Counter()
        self._scanned = 0
        self._newest: list[tuple[tuple[int, int, int], DlqEntry]] = []  # a min-heap

    def add(self, rec: Any) -> None:
        """One consumed record (``value``, ``key``, ``partition``, ``offset``, ``timestamp``)."""
        self._scanned += 1
        try:
            reason = _reason_of(rec.value)
            self._counts[reason.reason] += 1
        except (msgspec.DecodeError, TypeError):
            self._counts[_UNREADABLE] += 1
        if self._latest <= 0:
            return
        order = (int(rec.timestamp or 0), rec.partition, rec.offset)
        if len(self._newest) < self._latest:
            heapq.heappush(self._newest, (order, _entry(rec)))
        elif order > self._newest[0][0]:
            heapq.heapreplace(self._newest, (order, _entry(rec)))

    def summary(self) -> Summary:
        return Summary(
            scanned=self._scanned,
            counts=dict(self._counts.most_common()),
            latest=[entry for _, entry in sorted(self._newest, key=lambda x: x[0])],
        )


def _entry(rec: Any) -> DlqEntry:
    try:
        record = json.loads(rec.value)
        if not isinstance(record, dict):
            raise ValueError("not an object")
    except (ValueError, TypeError):
        record = {"reason": _UNREADABLE, "detail": "", "raw": ""}
    raw = record.get("raw")
    if isinstance(raw, str) and len(raw) > RAW_SHOWN:
        record["raw"], record["raw_length"] = raw[:RAW_SHOWN], len(raw)
    return DlqEntry(
        partition=rec.partition,
        offset=rec.offset,
        timestamp_ms=int(rec.timestamp or 0),
        key=rec.key.decode("utf-8", "replace") if rec.key else "",
        record=record,
    )
