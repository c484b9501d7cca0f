"""The latest records of ``agent.dlq``, read straight from the broker.

No consumer group, nothing committed: looking never disturbs anything. The
gateway's admin overview and ``vmpulse dlq`` both read it this way;
:func:`summarize` is the pure part.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.topics import Topics

__all__ = ["DlqEntry", "Summary", "read_dlq", "summarize"]


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


async def read_dlq(bootstrap: str, prefix: str, *, max_per_partition: int) -> list[DlqEntry]:
    """The last ``max_per_partition`` records of every partition of agent.dlq.

    Nothing when there is no agent.dlq yet (no stage has created the topics of
    this prefix): a consumer subscribed to a missing topic would wait for it,
    logging an error ten times a second, then fail.
    """
    topic = Topics(prefix).agent_dlq
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        return []
    tps = sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])
    # assigned, not subscribed: no group, every partition
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(begin[tp], end[tp] - max_per_partition))
        pending = {tp for tp in tps if end[tp] > begin[tp]}
        out: list[DlqEntry] = []
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                for rec in records:
                    if rec.offset >= end[tp]:
                        continue
                    out.append(_entry(rec))
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        return out
    finally:
        await consumer.stop()


def _entry(rec: Any) -> DlqEntry:
    try:
        record = json.loads(rec.value)
        if not isinstance(record, dict):
            raise ValueError("not an object")
    except (ValueError, TypeError):
        record = {"reason": "unreadable_dlq_record", "detail": "", "raw": ""}
    return DlqEntry(
        partition=rec.partition,
        offset=rec.offset,
        timestamp_ms=int(rec.timestamp or 0),
        key=rec.key.decode("utf-8", "replace") if rec.key else "",
        record=record,
    )


def summarize(entries: Iterable[DlqEntry], latest: int) -> Summary:
    ordered = sorted(entries, key=lambda e: (e.timestamp_ms, e.partition, e.offset))
    counts = Counter(str(e.record.get("reason", "?")) for e in ordered)
    return Summary(
        scanned=len(ordered),
        counts=dict(counts.most_common()),
        latest=ordered[-latest:] if latest > 0 else [],
    )
