"""The Faust app: thin tasks that move records between Kafka, the pipeline and the store.

Built by :func:`create_app` from settings (no module-level app singleton), so
tests and ``vmpulse up`` can build their own. ``agent.raw`` is read in large
batches by :class:`streams.ingest.RawIngest` (straight aiokafka, its own
consumer group: Faust's per-record machinery cost ten times the work itself);
a batch's offsets are committed only after the store acknowledged its rows.
Each batch is written as one block recorded before its rows; after a crash
the newest recorded block of each partition is read back from Kafka and
inserted again with the same dedup tokens, and everything before it is
skipped (streams/storing.py), so no table and no rollup counts anything twice. The
Faust app hosts the rest: control events, timers, and the producer for
outbound events and the DLQ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import faust

from schemas.events import encode_outbound, utc_now_iso
from schemas.facts import SystemSample
from schemas.topics import Topics
from streams.blocks import Block, Span
from streams.event_agents import register_event_agents
from streams.ingest import RawIngest
from streams.line_warnings import LineWarnings
from streams.live import LiveThrottle
from streams.outbox import TopicSender
from streams.pipeline import RawRecord, live_event, process_batch
from streams.readback import read_back
from streams.retention import register_retention
from streams.store import Store
from streams.storing import BlockPlanner, write_block
from vmpulse.config import Settings

__all__ = ["create_app", "ingest_group_id"]

log = logging.getLogger(__name__)


def ingest_group_id(topic_prefix: str) -> str:
    """The consumer group that stores agent.raw (apart from the Faust app's own group)."""
    return f"{topic_prefix}vmpulse-worker.raw"


def create_app(
    settings: Settings,
    store: Store,
    *,
    batch_max: int = 20_000,
    batch_within_s: float | None = None,
) -> faust.App:
    """A Faust app on the configured broker: storage, live updates, events (see module doc)."""
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
        # batch outbound sends (live updates, events): one request per message costs
        # more CPU than everything else the worker does per message
        producer_linger=0.01,
        producer_compression_type="lz4",
        producer_max_batch_size=256 * 1024,
        broker_commit_interval=0.5,
        stream_wait_empty=False,
        table_cleanup_interval=60.0,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 3),
        consumer_group_instance_id=settings.worker_instance_id,
    )
    dlq_topic = TopicSender(app, topics.agent_dlq)
    outbound = TopicSender(app, topics.events_outbound)
    bootstrap = settings.kafka_bootstrap

    async def read_raw(spans: Sequence[Span]) -> list[RawRecord]:
        return await read_back(bootstrap, topics.agent_raw, spans)

    # a recorded block may span partitions this worker does not own: repairs read it back
    planner = BlockPlanner(store, topics.agent_raw, read_raw)
    # samples, not encoded events: only the few that go out are encoded
    throttle: LiveThrottle[SystemSample] = LiveThrottle(settings.live_interval_s)
    # skipped_replay: records of a batch that were stored before (a replay); repaired:
    # records of recorded blocks inserted again, whose duplicates the store dropped
    app.vmpulse_stats = {"stored": 0, "rejected": 0, "skipped_replay": 0, "repaired": 0}
    stats: dict[str, int] = app.vmpulse_stats
    stats["unrecognized"] = 0  # messages of unknown types, stored as agent events (issue 10)
    line_warnings = LineWarnings(log)  # refused / unrecognized lines, a few per VM (issue 10)
    # routing, presence and alerts (issue 5); fed from the storage batches below
    event_stages = register_event_agents(app, settings)
    app.vmpulse_event_stages = event_stages
    register_retention(app, settings, store)  # TTLs from settings (issue 5)

    async def send_live(sample: SystemSample, now: str) -> None:
        encoded = encode_outbound(live_event(sample, now))
        await outbound.send(key=sample.vm_id.encode(), value=encoded)

    async def store_batch(batch: list[RawRecord]) -> None:
        """Store one batch of agent.raw; the ingest commits its offsets when this returns.

        The whole batch is one block, one insert per table: inserts have a fixed
        cost, so a block per partition would cost a worker half its throughput.
        Blocks recorded before whose records come again are repaired first.
        """
        blocks, skipped = await planner.plan(batch)
        for block in blocks:
            await store_block(block)
            planner.stored(block)
        stats["skipped_replay"] += skipped  # once their repairs are done too
        await event_stages.persist()

    async def store_block(block: Block) -> None:
        records = block.records
        if not block.repair:
            # a repair may hold other workers' partitions, and its presence and alert
            # changes are in the state they resumed from (streams/state_log.py)
            await event_stages.observe_raw(records)
        # connection records (header "control") become result.connections, never rows
        result = process_batch(records)
        # live first: a chart should not wait for the batch to be stored
        now, now_iso = time.monotonic(), utc_now_iso()
        for sample in result.samples:
            if throttle.offer(sample.vm_id, sample, now) is not None:
                await send_live(sample, now_iso)
        # recorded first (unless a repair), then one insert per table with a token a replay
        # reproduces (streams/storing.py): every row and rollup counts once
        written = await write_block(store, topics.agent_raw, block, result.rows)
        if block.repair:
            stats["repaired"] += len(records)
        else:
            stats["stored"] += len(result.activity)
            stats["rows"] = stats.get("rows", 0) + written
            stats["unrecognized"] += len(result.unrecognized)
            line_warnings.report(result, now)
            await event_stages.observe_samples(result.samples)
        stats["rejected"] += len(result.rejects)
        for vm_id, payload in result.rejects:
            await dlq_topic.send(key=vm_id.encode(), value=payload)

    ingest = RawIngest(
        bootstrap=settings.kafka_bootstrap,
        raw_topic=topics.agent_raw,
        hypervisor_topic=topics.hypervisor_events,
        group_id=ingest_group_id(settings.topic_prefix),
        on_raw=store_batch,
        on_hypervisor=event_stages.hypervisor_event,
        on_revoked=planner.forget,
        on_released=event_stages.release,
        on_taken=event_stages.take,
        max_records=batch_max,
        within_s=settings.store_batch_s if batch_within_s is None else batch_within_s,
        session_timeout_s=settings.kafka_session_timeout_s,
        group_instance_id=settings.worker_instance_id,
    )
    app.vmpulse_ingest = ingest

    @app.task  # type: ignore[untyped-decorator]
    async def store_task() -> None:
        # an app task starts once the app (and its producer) runs
        await ingest.run()

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def _stop_ingest(app: faust.App, **kwargs: Any) -> None:
        # before the producer stops: a batch in flight must not fail half-sent
        await ingest.stop()

    @app.timer(interval=max(settings.live_interval_s / 2, 0.05))  # type: ignore[untyped-decorator]
    async def flush_live() -> None:
        if app.should_stop:
            return
        now_iso = utc_now_iso()
        for _, sample in throttle.due(time.monotonic()):
            await send_live(sample, now_iso)

    app.vmpulse_agents = (store_task, flush_live)
    return app
