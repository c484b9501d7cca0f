"""The Faust app: thin agents that move records between Kafka, the pipeline and the store.

Built by :func:`create_app` from settings (no module-level app singleton), so
tests and ``vmpulse up`` can build their own. The storage agent reads
``agent.raw`` in batches; a batch's offsets are acknowledged only after the
store acknowledged its rows (``take_events`` acks when the loop body returns),
so Faust commits nothing that is not stored. Rows carry their Kafka position;
after a crash, records at or below the stored high-water mark of their
partition and table are dropped (:class:`Watermarks`), so a replay stores
nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import faust

from schemas.events import encode_outbound
from schemas.topics import Topics
from streams.live import LiveThrottle
from streams.pipeline import TABLE_COLUMNS, RawRecord, live_event, process_batch
from streams.rows import Row
from streams.store import Store
from vmpulse.config import Settings

__all__ = ["Watermarks", "create_app"]

log = logging.getLogger(__name__)


class Watermarks:
    """Highest Kafka offset already stored, per table and per partition of agent.raw.

    Why per table: one agent.raw record can become rows in several tables (a
    dialect 2 ``metrics`` line fills system_metrics, disk_usage,
    network_interfaces, process_snapshots and port_usage), and ClickHouse has
    no transaction across tables. A batch is written as one insert per table,
    each atomic, in offset order; so for every (table, partition) the stored
    rows are exactly the rows of the records up to that table's high-water
    mark. A crash between two tables' inserts leaves the tables at different
    marks; on replay each table drops only the rows at or below its own mark,
    and every row is stored exactly once. (One mark for all tables would either
    skip the rows of the table that missed the insert or store the others twice.)
    DLQ records, live updates and presence signals of a replayed record are
    sent again: at least once, with the origin offset that identifies them.
    """

    def __init__(self, store: Store, tables: Iterable[str] = TABLE_COLUMNS) -> None:
        self._store = store
        self._tables = tuple(tables)
        self._marks: dict[str, dict[int, int]] = {}

    def forget(self) -> None:
        """After a rebalance another worker may have stored more: reload lazily."""
        self._marks.clear()

    async def _load(self, table: str) -> dict[int, int]:
        marks = self._marks.get(table)
        if marks is None:
            result = await self._store.query(
                f"SELECT kafka_partition, max(kafka_offset) FROM {table} GROUP BY kafka_partition"
            )
            marks = {int(p): int(top) for p, top in result["rows"]}
            self._marks[table] = marks
        return marks

    async def get(self, table: str, partition: int) -> int:
        return (await self._load(table)).get(partition, -1)

    async def fresh(self, table: str, rows: Sequence[Row]) -> list[Row]:
        """The rows not stored yet (rows end with kafka_partition, kafka_offset)."""
        if not rows:
            return []
        marks = await self._load(table)
        return [row for row in rows if row[-1] > marks.get(row[-2], -1)]

    def advance(self, table: str, rows: Sequence[Row]) -> None:
        marks = self._marks.setdefault(table, {})
        for row in rows:
            if row[-1] > marks.get(row[-2], -1):
                marks[row[-2]] = row[-1]


def create_app(
    settings: Settings, store: Store, *, batch_max: int = 2000, batch_within_s: float = 0.25
) -> faust.App:
    """A Faust app on the configured broker, with the storage and live agents."""
    assert settings.kafka_bootstrap is not None, "resolve the broker before creating the app"
    topics = Topics(settings.topic_prefix)
    app = faust.App(
        f"{settings.topic_prefix}vmpulse-worker",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=0.5,
        stream_wait_empty=False,
        table_cleanup_interval=60.0,
    )
    raw_topic = app.topic(topics.agent_raw, key_serializer="raw", value_serializer="raw")
    dlq_topic = app.topic(topics.agent_dlq, key_serializer="raw", value_serializer="raw")
    outbound = app.topic(topics.events_outbound, key_serializer="raw", value_serializer="raw")
    watermarks = Watermarks(store)
    throttle: LiveThrottle[bytes] = LiveThrottle(settings.live_interval_s)
    app.vmpulse_stats = {  # type: ignore[attr-defined]
        "stored": 0,
        "rejected": 0,
        "skipped_replay": 0,
        "connection_events": 0,
    }
    stats: dict[str, int] = app.vmpulse_stats  # type: ignore[attr-defined]

    @app.on_partitions_revoked.connect  # type: ignore[untyped-decorator]
    async def _revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        watermarks.forget()

    @app.agent(raw_topic)  # type: ignore[untyped-decorator]
    async def store_agent(stream: Any) -> None:
        async for events in stream.take_events(batch_max, within=batch_within_s):
            records = [
                RawRecord(
                    topic=event.message.topic,
                    partition=event.message.partition,
                    offset=event.message.offset,
                    key=event.message.key,
                    value=event.message.value if event.message.value is not None else b"",
                    headers={k: bytes(v) for k, v in (event.message.headers or ())},
                )
                for event in events
            ]
            if not records:
                continue
            result = process_batch(records)
            # one insert per table and batch, each atomic; see Watermarks
            for table, columns in TABLE_COLUMNS.items():
                rows = await watermarks.fresh(table, result.rows[table])
                skipped = len(result.rows[table]) - len(rows)
                if skipped:
                    stats["skipped_replay"] += skipped
                await store.insert(table, rows, columns, token=None)
                watermarks.advance(table, rows)
                stats[f"rows.{table}"] = stats.get(f"rows.{table}", 0) + len(rows)
            stats["stored"] += len(result.activity)
            stats["rejected"] += len(result.rejects)
            for reason, count in result.reject_reasons.items():
                stats[f"rejected.{reason}"] = stats.get(f"rejected.{reason}", 0) + count
            stats["connection_events"] += len(result.connections)
            for vm_id, payload in result.rejects:
                await dlq_topic.send(key=vm_id.encode(), value=payload)
            now = time.monotonic()
            for sample in result.samples:
                encoded = encode_outbound(live_event(sample))
                if throttle.offer(sample.vm_id, encoded, now) is not None:
                    await outbound.send(key=sample.vm_id.encode(), value=encoded)

    @app.timer(interval=max(settings.live_interval_s / 2, 0.05))  # type: ignore[untyped-decorator]
    async def flush_live() -> None:
        for vm_id, encoded in throttle.due(time.monotonic()):
            await outbound.send(key=vm_id.encode(), value=encoded)

    app.vmpulse_agents = (store_agent, flush_live)  # type: ignore[attr-defined]
    return app
