"""The Faust app: thin agents that move records between Kafka, the pipeline and the store.

Built by :func:`create_app` from settings (no module-level app singleton), so
tests and ``vmpulse up`` can build their own. The storage agent reads
``agent.raw`` in batches; a batch's offsets are acknowledged only after the
store acknowledged its rows (``take_events`` acks when the loop body returns),
so Faust commits nothing that is not stored. Rows carry their Kafka position;
after a crash, records at or below the stored high-water mark of their
partition are skipped, so a replay stores nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import faust

from schemas.events import encode_outbound
from schemas.topics import Topics
from streams.event_agents import register_event_agents
from streams.live import LiveThrottle
from streams.pipeline import SYSTEM_METRICS_COLUMNS, RawRecord, live_event, process_batch
from streams.retention import register_retention
from streams.store import Store
from vmpulse.config import Settings

__all__ = ["Watermarks", "create_app"]

log = logging.getLogger(__name__)


class Watermarks:
    """Highest Kafka offset already stored, per partition of agent.raw."""

    def __init__(self, store: Store, table: str = "system_metrics") -> None:
        self._store = store
        self._table = table
        self._marks: dict[int, int] = {}

    def forget(self) -> None:
        """After a rebalance another worker may have stored more: reload lazily."""
        self._marks.clear()

    async def get(self, partition: int) -> int:
        if partition not in self._marks:
            result = await self._store.query(
                f"SELECT max(kafka_offset), count() FROM {self._table} "
                f"WHERE kafka_partition = {int(partition)}"
            )
            top, count = result["rows"][0]
            self._marks[partition] = int(top) if count else -1
        return self._marks[partition]

    def advance(self, partition: int, offset: int) -> None:
        self._marks[partition] = max(self._marks.get(partition, -1), offset)


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
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 3),
        consumer_group_instance_id=settings.worker_instance_id,
    )
    raw_topic = app.topic(topics.agent_raw, key_serializer="raw", value_serializer="raw")
    dlq_topic = app.topic(topics.agent_dlq, key_serializer="raw", value_serializer="raw")
    outbound = app.topic(topics.events_outbound, key_serializer="raw", value_serializer="raw")
    watermarks = Watermarks(store)
    throttle: LiveThrottle[bytes] = LiveThrottle(settings.live_interval_s)
    app.vmpulse_stats = {"stored": 0, "rejected": 0, "skipped_replay": 0}  # type: ignore[attr-defined]
    stats: dict[str, int] = app.vmpulse_stats  # type: ignore[attr-defined]
    # routing, presence and alerts (issue 5); fed from the storage agent below
    event_stages = register_event_agents(app, settings)
    app.vmpulse_event_stages = event_stages  # type: ignore[attr-defined]
    register_retention(app, settings, store)  # TTLs from settings (issue 5)

    @app.on_partitions_revoked.connect  # type: ignore[untyped-decorator]
    async def _revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        watermarks.forget()

    @app.agent(raw_topic)  # type: ignore[untyped-decorator]
    async def store_agent(stream: Any) -> None:
        async for events in stream.take_events(batch_max, within=batch_within_s):
            records = []
            for event in events:
                msg = event.message
                if msg.offset <= await watermarks.get(msg.partition):
                    stats["skipped_replay"] += 1
                    continue
                records.append(
                    RawRecord(
                        topic=msg.topic,
                        partition=msg.partition,
                        offset=msg.offset,
                        key=msg.key,
                        value=msg.value if msg.value is not None else b"",
                        headers={k: bytes(v) for k, v in (msg.headers or ())},
                    )
                )
            if not records:
                continue
            await event_stages.observe_raw([(r.key, r.value, r.headers) for r in records])
            result = process_batch(records)
            # one insert per table and batch: the insert is atomic, so the
            # stored high-water mark is exact even when we crash in between
            await store.insert(
                "system_metrics", result.rows["system_metrics"], SYSTEM_METRICS_COLUMNS, token=None
            )
            by_partition: dict[int, int] = defaultdict(lambda: -1)
            for rec in records:
                by_partition[rec.partition] = max(by_partition[rec.partition], rec.offset)
            for partition, top in by_partition.items():
                watermarks.advance(partition, top)
            await event_stages.observe_samples(result.samples)
            stats["stored"] += len(result.rows["system_metrics"])
            stats["rejected"] += len(result.rejects)
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
