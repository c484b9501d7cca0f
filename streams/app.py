"""The Faust app: thin tasks that move records between Kafka, the pipeline and the store.

Built by :func:`create_app` from settings (no module-level app singleton), so
tests and ``vmpulse up`` can build their own. ``agent.raw`` is read in large
batches by :class:`streams.ingest.RawIngest` (straight librdkafka, its own
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
from collections.abc import Sequence
from typing import Any

import faust

from infra.backoff import Backoff
from infra.config import Settings
from infra.kafka_auth import faust_credentials
from infra.kafka_io import Durability, durability
from infra.partitioner import KeyPartitioner
from schemas.topics import MAX_BATCH_BYTES, Topics
from store.clickhouse import Store
from streams.blocks import Span
from streams.conductor import Conductor
from streams.event_agents import register_event_agents
from streams.faust_internals import guard_livelock_detector
from streams.ingest import RawIngest
from streams.metrics import worker_registry
from streams.outbox import TopicSender
from streams.pipeline import RawRecord
from streams.readback import read_back
from streams.retention import register_retention
from streams.storing import BlockPlanner

__all__ = ["create_app", "ingest_group_id"]

log = logging.getLogger(__name__)

LIVE_FLUSH_S = 0.05
"""How often merged live updates are looked at: a merged sample waits at most this long
after its VM may have an update again."""


def ingest_group_id(topic_prefix: str) -> str:
    """The consumer group that stores agent.raw (apart from the Faust app's own group)."""
    return f"{topic_prefix}vmpulse-worker.raw"


def create_app(
    settings: Settings,
    store: Store,
    *,
    batch_max: int = 20_000,
    batch_within_s: float | None = None,
    plan: Durability | None = None,
    store_retry: Backoff | None = None,
) -> faust.App:
    """A Faust app on the configured broker: storage, live updates, events (see module doc).

    ``store_retry``: the pauses before a failed batch is stored again (streams/ingest.py;
    tests shorten them).

    ``plan`` is what :func:`infra.kafka_io.ensure_topics` decided for the cluster
    (replicas, in-sync replicas); Faust's own topics get the same. Without it the
    broker is taken for a single one (tests on the session broker).
    """
    assert settings.kafka.bootstrap is not None, "resolve the broker before creating the app"
    if plan is None:
        plan = durability(1, settings.kafka.replication_factor)
    topics = Topics(settings.kafka.topic_prefix)
    app = faust.App(
        f"{settings.kafka.topic_prefix}vmpulse-worker",
        broker=f"kafka://{settings.kafka.bootstrap}",
        store="memory://",
        web_enabled=False,
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.kafka.partitions,
        # Faust's own topics (its leader assignor) as durable as vmpulse's: one rule,
        # kafka_io.durability, applied where the topics were created (issue 14)
        topic_replication_factor=plan.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # no linger: live updates leave at once. Sends still batch: aiokafka keeps one
        # request in flight per broker, and everything queued meanwhile goes in the next
        # one, so batches grow with the load (at 2,000 updates a second, one request
        # per round trip, not one per update)
        producer_linger=0.0,
        # Uncompressed: a live path's batches hold one to a few records, and for those
        # aiokafka's lz4 (level 9, LZ4 HC) cost 50-100 us a record here and zstd 25-45,
        # for a ratio under 2; the gateway paid again to decompress (11 us a record).
        # At 2,000 VMs lz4 was 14 % of `vmpulse up`'s event loop (issue 11, BENCHMARKS).
        producer_compression_type=None,
        # the hash of each key once, not per send (infra/partitioner.py)
        producer_partitioner=KeyPartitioner(),
        producer_max_batch_size=256 * 1024,
        # a dead-lettered line of up to 4 MiB (VMPULSE_AGENT_MAX_LINE) is one record; at
        # aiokafka's default (1 MB) its send failed and the worker retried its batch forever
        producer_max_request_size=MAX_BATCH_BYTES,
        broker_commit_interval=0.5,
        stream_wait_empty=False,
        table_cleanup_interval=60.0,
        broker_session_timeout=settings.kafka.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka.session_timeout_s / 3),
        consumer_group_instance_id=settings.kafka.worker_instance_id,
        # every client of the app (its producer, consumer and admin) as the process's own
        broker_credentials=faust_credentials(settings.kafka.auth),
    )
    # Faust's livelock detector must not crash the worker when a partition's position
    # is being reset in a broker failover (streams/faust_internals.py)
    guard_livelock_detector(app)
    bootstrap = settings.kafka.bootstrap

    async def read_raw(spans: Sequence[Span]) -> list[RawRecord]:
        return await read_back(bootstrap, topics.agent_raw, spans, auth=settings.kafka.auth)

    # routing, presence and alerts (issue 5); fed from the storage batches
    event_stages = register_event_agents(app, settings)
    app.vmpulse_event_stages = event_stages
    register_retention(app, settings, store)  # TTLs from settings (issue 5)
    # a recorded block may span partitions this worker does not own: repairs read it back
    planner = BlockPlanner(store, topics.agent_raw, read_raw)
    conductor = Conductor(
        store=store,
        raw_topic=topics.agent_raw,
        planner=planner,
        stages=event_stages,
        outbound=TopicSender(app, topics.events_outbound),
        dlq=TopicSender(app, topics.agent_dlq),
        live_interval_s=settings.worker.live_interval_s,
    )
    app.vmpulse_conductor = conductor
    app.vmpulse_stats = conductor.stats
    ingest = RawIngest(
        bootstrap=settings.kafka.bootstrap,
        raw_topic=topics.agent_raw,
        hypervisor_topic=topics.hypervisor_events,
        group_id=ingest_group_id(settings.kafka.topic_prefix),
        on_poll=conductor.poll,
        on_raw=conductor.store_batch,
        on_hypervisor=event_stages.hypervisor_event,
        on_revoked=planner.forget,
        on_released=event_stages.release,
        on_taken=event_stages.take,
        max_records=batch_max,
        within_s=settings.worker.store_batch_s if batch_within_s is None else batch_within_s,
        session_timeout_s=settings.kafka.session_timeout_s,
        group_instance_id=settings.kafka.worker_instance_id,
        auth=settings.kafka.auth,
        retry=store_retry,
    )
    app.vmpulse_ingest = ingest
    # the worker's series for its health port's /metrics (read when scraped)
    app.vmpulse_metrics = worker_registry(lambda: conductor.stats, ingest)

    @app.task  # type: ignore[untyped-decorator]
    async def store_task() -> None:
        # an app task starts once the app (and its producer) runs
        await ingest.run()

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def _stop_ingest(app: faust.App, **kwargs: Any) -> None:
        # before the producer stops: a batch in flight must not fail half-sent
        await ingest.stop()

    # merged live updates go out as soon as their VM may have one again
    @app.timer(interval=LIVE_FLUSH_S)  # type: ignore[untyped-decorator]
    async def flush_live() -> None:
        if not app.should_stop:
            await conductor.flush_live()

    app.vmpulse_agents = (store_task, flush_live)
    return app
