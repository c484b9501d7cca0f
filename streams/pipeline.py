"""The pure part of the worker: raw agent records in, rows, rejects and live updates out.

The Faust agent only moves bytes between Kafka, this module and the store;
everything that decides something lives here and is tested with plain lists.
Each record of ``agent.raw`` ends up as exactly one of:

- a connection event (a bridge control record: empty value, header
  ``control`` = ``connected`` | ``disconnected``), for presence; never stored;
- facts, turned into rows of the raw tables (:mod:`streams.rows`), plus one
  :class:`~schemas.facts.Activity` for presence;
- one DLQ record with its reason (:mod:`schemas.dlq`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from schemas.dlq import DlqOrigin, Reason, Rejection, encode_dlq_record, make_dlq_record
from schemas.events import OutboundEvent, utc_now_iso, vm_room
from schemas.facts import Activity, AgentEvent, ConnectionEvent, SystemSample
from schemas.limits import TS_TOLERANCE
from schemas.live import live_data
from schemas.normalize import normalize_line
from streams.rows import TABLE_COLUMNS, Row, rows_for

__all__ = [
    "SYSTEM_METRICS_COLUMNS",
    "TABLE_COLUMNS",
    "BatchResult",
    "RawRecord",
    "dlq_record",
    "live_event",
    "merge_results",
    "process_batch",
]

SYSTEM_METRICS_COLUMNS = TABLE_COLUMNS["system_metrics"]


class RawRecord(msgspec.Struct, frozen=True, gc=False):
    """One record of ``agent.raw`` as the worker sees it (bytes and a dict of bytes:
    never part of a cycle, so the collector need not walk the batches it holds)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int | None = None
    """The record's Kafka timestamp: the receive time of a record without the bridge's
    ``received_at`` header, because it is the same on every replay of the record."""


class BatchResult(msgspec.Struct):
    """What one batch of records turned into.

    ``rows``: table -> rows (every table of TABLE_COLUMNS is present);
    ``rejects``: (VM id, DLQ record JSON); ``samples``: system samples for
    live updates; ``connections``: bridge control records, in order;
    ``activity``: one entry per accepted message (presence sees handshakes,
    keep-alives and metrics); ``reject_reasons``: rejects counted by reason;
    ``unrecognized``: the stored events of messages of a type this version does
    not know (counted and logged by the worker, never rejected).
    """

    rows: dict[str, list[Row]]
    rejects: list[tuple[str, bytes]]
    samples: list[SystemSample]
    connections: list[ConnectionEvent] = []
    activity: list[Activity] = []
    reject_reasons: dict[str, int] = {}
    unrecognized: list[AgentEvent] = []


def _received_at(record: RawRecord) -> dt.datetime:
    """The bridge's ``received_at`` header, else the record's Kafka timestamp.

    Never the worker's clock while a record holds a time: a row's ``ts`` may be its
    receive time, and a replay must rebuild the very rows a crash cut off (their
    insert tokens and rollup buckets depend on it). ``now`` only for a record with
    neither, which no Kafka producer writes.
    """
    for raw in (record.headers.get("received_at"), record.timestamp_ms):
        if raw is None or raw == b"":
            continue
        try:
            return dt.datetime.fromtimestamp(int(raw) / 1000, dt.UTC)
        except (ValueError, OverflowError, OSError):
            continue
    return dt.datetime.now(dt.UTC)


def _header_text(record: RawRecord, name: str) -> str | None:
    value = record.headers.get(name)
    return value.decode("utf-8", errors="replace") if value is not None else None


def _line_no(record: RawRecord) -> int | None:
    value = record.headers.get("line_no")
    return int(value) if value is not None and value.isdigit() else None


def dlq_record(
    record: RawRecord, vm_id: str, rejection: Rejection, received_at: dt.datetime
) -> bytes:
    """The DLQ JSON for a rejected line: reason, detail, the raw line and where it came from."""
    origin = DlqOrigin(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        vm_id=vm_id,
        transport=_header_text(record, "transport") or "",
        received_at=received_at.isoformat(),
        conn_id=_header_text(record, "conn_id"),
        line_no=_line_no(record),
    )
    return encode_dlq_record(make_dlq_record(record.value, rejection, origin))


def _connection(record: RawRecord, vm_id: str, received_at: dt.datetime) -> ConnectionEvent | None:
    state = record.headers.get("control")
    if state not in (b"connected", b"disconnected"):
        return None
    return ConnectionEvent(
        vm_id=vm_id,
        state="connected" if state == b"connected" else "disconnected",
        received_at=received_at,
        conn_id=_header_text(record, "conn_id"),
        transport=_header_text(record, "transport"),
        partition=record.partition,
        offset=record.offset,
    )


def process_batch(
    records: Iterable[RawRecord], *, tolerance: dt.timedelta = TS_TOLERANCE
) -> BatchResult:
    """Validate and normalize a batch; every record ends up as rows, a connection event or one
    reject, and a bad record never affects the one next to it."""
    rows: dict[str, list[Row]] = {table: [] for table in TABLE_COLUMNS}
    rejects: list[tuple[str, bytes]] = []
    samples: list[SystemSample] = []
    connections: list[ConnectionEvent] = []
    activity: list[Activity] = []
    unrecognized: list[AgentEvent] = []
    reasons: Counter[str] = Counter()
    for record in records:
        received_at = _received_at(record)
        vm_id = record.key.decode("utf-8", errors="replace") if record.key else ""
        if "control" in record.headers:
            event = _connection(record, vm_id, received_at)
            if event is not None and vm_id:
                connections.append(event)
            continue
        if not vm_id:
            result: Any = Rejection(Reason.NO_VM, "record has no VM key")
        else:
            result = normalize_line(record.value, vm_id, received_at, tolerance=tolerance)
        if isinstance(result, Rejection):
            reasons[result.reason] += 1
            rejects.append((vm_id, dlq_record(record, vm_id, result, received_at)))
            continue
        for fact in result:
            rows_for(fact, record.partition, record.offset, rows)
            if isinstance(fact, SystemSample):
                samples.append(fact)
            elif isinstance(fact, AgentEvent) and fact.event_type == "unrecognized":
                unrecognized.append(fact)
        first = result[0]
        activity.append(
            Activity(vm_id=vm_id, kind=first.message_type, ts=first.ts, received_at=received_at)
        )
    return BatchResult(
        rows=rows,
        rejects=rejects,
        samples=samples,
        connections=connections,
        activity=activity,
        reject_reasons=dict(reasons),
        unrecognized=unrecognized,
    )


def merge_results(parts: Sequence[BatchResult]) -> BatchResult:
    """One result for several batches, in the order given (rows table by table)."""
    if len(parts) == 1:
        return parts[0]
    rows: dict[str, list[Row]] = {table: [] for table in TABLE_COLUMNS}
    merged = BatchResult(
        rows=rows, rejects=[], samples=[], connections=[], activity=[], unrecognized=[]
    )
    reasons: Counter[str] = Counter()
    for part in parts:
        for table, table_rows in part.rows.items():
            if table_rows:
                rows[table].extend(table_rows)
        merged.rejects.extend(part.rejects)
        merged.samples.extend(part.samples)
        merged.connections.extend(part.connections)
        merged.activity.extend(part.activity)
        merged.unrecognized.extend(part.unrecognized)
        reasons.update(part.reject_reasons)
    merged.reject_reasons = dict(reasons)
    return merged


def live_event(sample: SystemSample, now: str | None = None) -> OutboundEvent:
    """The ``metricsUpdate`` event for a VM's watchers (room ``vm:<id>``).

    ``now``: the event time, shared by the updates of one batch (formatting the
    clock per event cost as much as the rest of the envelope).
    """
    return OutboundEvent(
        resource="metrics",
        action="update",
        data=live_data(sample),
        rooms=[vm_room(sample.vm_id)],
        timestamp=now or utc_now_iso(),
    )
