"""`vmpulse dlq`: the latest rejected agent lines and how many were refused for each reason.

Reads ``agent.dlq`` straight from the broker (no consumer group, nothing
committed), so looking never disturbs anything. The broker and topic prefix
come from the settings, or from the ``up.json`` a running ``vmpulse up``
wrote. :func:`summarize` is the pure part.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from schemas.topics import Topics

__all__ = ["DlqEntry", "Summary", "locate_broker", "read_dlq", "render", "summarize"]


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


def locate_broker(bootstrap: str | None, prefix: str, data_dir: Path) -> tuple[str | None, str]:
    """Bootstrap servers and topic prefix: the settings first, else the running `vmpulse up`."""
    if bootstrap:
        return bootstrap, prefix
    try:
        info = json.loads((data_dir / "up.json").read_text())
    except (OSError, ValueError):
        return None, prefix
    return info.get("kafka_bootstrap"), prefix or info.get("topic_prefix", "")


async def read_dlq(bootstrap: str, prefix: str, *, max_per_partition: int) -> list[DlqEntry]:
    """The last ``max_per_partition`` records of every partition of agent.dlq."""
    topic = Topics(prefix).agent_dlq
    # Subscribed without a group, a consumer is assigned every partition.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = sorted(consumer.assignment())
        if not tps:
            return []
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


def render(summary: Summary) -> str:
    import datetime as dt

    lines = []
    for e in summary.latest:
        when = dt.datetime.fromtimestamp(e.timestamp_ms / 1000, dt.UTC).strftime("%H:%M:%S.%f")
        detail = str(e.record.get("detail", "")).replace("\n", " ")[:80]
        raw = str(e.record.get("raw", ""))[:40]
        lines.append(f"{when[:-3]}  {e.key:<36}  {e.record.get('reason', '?'):<18}  {detail}")
        lines.append(f"{'':14}raw ({e.record.get('raw_encoding', '?')}): {raw!r}")
    lines.append(f"counts by reason ({summary.scanned} records scanned):")
    width = max((len(r) for r in summary.counts), default=0)
    lines += [f"  {reason:<{width}}  {count}" for reason, count in summary.counts.items()]
    return "\n".join(lines)
