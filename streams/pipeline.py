"""The pure part of the worker: raw agent records in, rows, rejects and live updates out.

The Faust agent only moves bytes between Kafka, this module and the store;
everything that decides something lives here and is tested with plain lists.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from schemas.agent import Rejection, SystemSample, normalize_line
from schemas.events import OutboundEvent

__all__ = [
    "SYSTEM_METRICS_COLUMNS",
    "BatchResult",
    "RawRecord",
    "dlq_record",
    "live_event",
    "process_batch",
]

SYSTEM_METRICS_COLUMNS = (
    "vm_id",
    "ts",
    "received_at",
    "cpu_usage_percent",
    "memory_used_kb",
    "memory_total_kb",
    "kafka_partition",
    "kafka_offset",
)


class RawRecord(msgspec.Struct, frozen=True):
    """One record of ``agent.raw`` as the worker sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


class BatchResult(msgspec.Struct):
    rows: dict[str, list[tuple[Any, ...]]]
    rejects: list[tuple[str, bytes]]  # (vm id, DLQ record JSON)
    samples: list[SystemSample]


_encoder = msgspec.json.Encoder()


def _received_at(record: RawRecord) -> dt.datetime:
    raw = record.headers.get("received_at")
    try:
        return (
            dt.datetime.fromtimestamp(int(raw) / 1000, dt.UTC) if raw else dt.datetime.now(dt.UTC)
        )
    except (ValueError, OverflowError):
        return dt.datetime.now(dt.UTC)


def dlq_record(
    record: RawRecord, vm_id: str, rejection: Rejection, received_at: dt.datetime
) -> bytes:
    """The DLQ JSON for a rejected line: reason, detail, the raw line and where it came from."""
    try:
        raw: str = record.value.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        raw = base64.b64encode(record.value).decode("ascii")
        encoding = "base64"
    return _encoder.encode(
        {
            "reason": rejection.reason,
            "detail": rejection.detail,
            "raw": raw,
            "raw_encoding": encoding,
            "origin": {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "vm_id": vm_id,
                "transport": record.headers.get("transport", b"").decode(errors="replace"),
                "received_at": received_at.isoformat(),
            },
        }
    )


def process_batch(records: Iterable[RawRecord]) -> BatchResult:
    """Validate and normalize a batch; every record ends up as rows or as one reject."""
    rows: list[tuple[Any, ...]] = []
    rejects: list[tuple[str, bytes]] = []
    samples: list[SystemSample] = []
    for record in records:
        received_at = _received_at(record)
        vm_id = record.key.decode("utf-8", errors="replace") if record.key else ""
        if not vm_id:
            rejects.append(
                (
                    vm_id,
                    dlq_record(
                        record, vm_id, Rejection("no_vm", "record has no VM key"), received_at
                    ),
                )
            )
            continue
        result = normalize_line(record.value, vm_id, received_at)
        if isinstance(result, Rejection):
            rejects.append((vm_id, dlq_record(record, vm_id, result, received_at)))
            continue
        samples.append(result)
        rows.append(
            (
                result.vm_id,
                result.ts,
                result.received_at,
                result.cpu_usage_percent,
                result.memory_used_kb,
                result.memory_total_kb,
                record.partition,
                record.offset,
            )
        )
    return BatchResult(rows={"system_metrics": rows}, rejects=rejects, samples=samples)


def live_event(sample: SystemSample) -> OutboundEvent:
    """The ``metricsUpdate`` event for a VM's watchers (room ``vm:<id>``)."""
    ts = sample.ts.isoformat().replace("+00:00", "Z")
    return OutboundEvent(
        resource="metrics",
        action="update",
        data={
            "vmId": sample.vm_id,
            "metrics": {
                "cpu": {"usage_percent": sample.cpu_usage_percent},
                "memory": {"used_kb": sample.memory_used_kb, "total_kb": sample.memory_total_kb},
            },
            "timestamp": ts,
        },
        rooms=[f"vm:{sample.vm_id}"],
    )


def batch_token(topic: str, partition: int, offsets: Sequence[int], table: str) -> str:
    """A dedup token a replay of the same records reproduces."""
    return f"{table}:{topic}:{partition}:{min(offsets)}-{max(offsets)}:{len(offsets)}"
