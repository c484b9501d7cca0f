"""Rollups in chDB: the 1-minute and 1-hour views count every raw row once, also after a replay."""

from __future__ import annotations

import datetime as dt
import random
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore
from streams.app import create_app, ingest_group_id
from streams.pipeline import SYSTEM_METRICS_COLUMNS
from streams.retention import apply_retention

from .browsers import metrics_line, running_worker, until

T0 = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)


async def counts(store: ClickHouseStore, vms: list[str]) -> tuple[dict[str, int], ...]:
    where = "vm_id IN (" + ", ".join(f"'{v}'" for v in vms) + ")"
    raw = await store.query(
        f"SELECT toString(toStartOfMinute(ts)), count() FROM system_metrics WHERE {where} "
        "GROUP BY 1"
    )
    one_min = await store.query(
        f"SELECT toString(bucket), sum(samples) FROM system_metrics_1m WHERE {where} GROUP BY 1"
    )
    one_hour = await store.query(
        f"SELECT toString(bucket), sum(samples) FROM system_metrics_1h WHERE {where} GROUP BY 1"
    )
    return tuple({k: int(v) for k, v in r["rows"]} for r in (raw, one_min, one_hour))


async def test_rollups_count_each_raw_row_once(chdb_store: ClickHouseStore) -> None:
    rng = random.Random(5)
    vms = [uuid.uuid4().hex for _ in range(3)]

    def row(i: int) -> tuple[object, ...]:
        given = {
            "vm_id": rng.choice(vms),
            "ts": T0 + dt.timedelta(seconds=rng.randrange(3 * 3600)),
            "received_at": T0,
            "agent_ts": T0,
            "ts_source": "agent",
            "dialect": 1,
            "cpu_usage_percent": rng.uniform(0, 100),
            "cpu_cores_usage": [],
            "memory_used_kb": rng.randrange(10**6),
            "memory_total_kb": 10**6,
            "kafka_partition": 0,
            "kafka_offset": i,
        }
        return tuple(given.get(column) for column in SYSTEM_METRICS_COLUMNS)

    rows = [row(i) for i in range(3000)]
    for start in range(0, len(rows), 700):  # several inserts, several parts
        await chdb_store.insert(
            "system_metrics", rows[start : start + 700], SYSTEM_METRICS_COLUMNS, token=None
        )
    raw, one_min, one_hour = await counts(chdb_store, vms)
    assert sum(raw.values()) == 3000
    assert one_min == raw
    by_hour: dict[str, int] = {}
    for minute, n in raw.items():
        hour = minute[:13] + ":00:00"
        by_hour[hour] = by_hour.get(hour, 0) + n
    assert one_hour == by_hour

    vm = vms[0]
    figures = await chdb_store.query(
        "SELECT round(avgMerge(cpu_avg), 3), max(cpu_max), max(memory_max) "
        f"FROM system_metrics_1h WHERE vm_id = '{vm}'"
    )
    direct = await chdb_store.query(
        "SELECT round(avg(cpu_usage_percent), 3), max(cpu_usage_percent), max(memory_used_kb) "
        f"FROM system_metrics WHERE vm_id = '{vm}'"
    )
    assert figures["rows"] == direct["rows"]


async def test_retention_is_configurable(chdb_store: ClickHouseStore) -> None:
    await apply_retention(chdb_store, 7, 90)
    try:
        result = await chdb_store.query(
            "SELECT name, engine_full FROM system.tables "
            "WHERE name IN ('system_metrics', 'system_metrics_1m', 'system_metrics_1h')"
        )
        ttl = {name: full.split(" TTL ")[1].split(" SETTINGS")[0] for name, full in result["rows"]}
        assert ttl == {
            "system_metrics": "toDateTime(ts) + toIntervalDay(7)",
            "system_metrics_1m": "bucket + toIntervalDay(90)",
            "system_metrics_1h": "bucket + toIntervalDay(90)",
        }
    finally:
        await apply_retention(chdb_store, 30, 365)


async def _produce(settings: Settings, topics: Topics, lines: list[tuple[int, str, int]]) -> None:
    """(partition, vm, second) lines, each to the partition it names."""
    producer = make_producer(settings.kafka.bootstrap or "")
    await producer.start()
    try:
        for partition, vm, second in lines:
            ts = T0 + dt.timedelta(seconds=second)
            await producer.send(
                topics.agent_raw, metrics_line(vm, 10.0, ts), key=vm.encode(), partition=partition
            )
        await producer.flush()
    finally:
        await producer.stop()


async def _rewind(settings: Settings, topics: Topics) -> None:
    """Move the worker's committed offsets back to the start: everything comes again."""
    rewind = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=ingest_group_id(settings.kafka.topic_prefix),
        enable_auto_commit=False,
    )
    await rewind.start()
    try:
        tps = [TopicPartition(topics.agent_raw, p) for p in range(settings.kafka.partitions)]
        rewind.assign(tps)
        await rewind.commit({tp: OffsetAndMetadata(0, "") for tp in tps})
    finally:
        await rewind.stop()


async def _run_until(
    settings: Settings, store: ClickHouseStore, stat: str, value: int
) -> dict[str, int]:
    """The worker on the store as it is (running_worker would empty it), until a stat is reached.

    Returns the worker's stats once it stopped.
    """
    app = create_app(settings, store, batch_within_s=0.05)
    await app.start()
    stats: dict[str, int] = app.vmpulse_stats
    try:
        await until(lambda: stats[stat] >= value, f"{stat} >= {value}")
        assert stats["stored"] == (value if stat == "stored" else 0)
    finally:
        await app.stop()
    assert stats[stat] == value, stats
    return stats


async def test_a_replay_adds_nothing_and_repairs_a_rollup_cut_off_by_a_crash(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> None:
    vms = [f"vm-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    await _produce(settings, topics_ready, [(i % 3, vms[i % 3], 7 * i) for i in range(300)])
    async with running_worker(settings, chdb_store) as app:
        await until(lambda: app.vmpulse_stats["stored"] == 300, "300 stored")
    stored = await counts(chdb_store, vms)
    assert sum(stored[0].values()) == 300 and stored[1] == stored[0]

    # A crash between the raw part and the rollup views: with the 1-minute view detached,
    # one more block per partition reaches the raw table only.
    await chdb_store.command("DETACH TABLE system_metrics_1m_mv")
    try:
        await _produce(settings, topics_ready, [(p, vms[p], 5000 + p) for p in range(3)])
        await _run_until(settings, chdb_store, "stored", 3)
    finally:
        await chdb_store.command("ATTACH TABLE system_metrics_1m_mv")
    raw, one_min, _ = await counts(chdb_store, vms)
    assert (sum(raw.values()), sum(one_min.values())) == (303, 300)

    # The replay skips every complete block and inserts each partition's last block again
    # with its token: the raw table drops it as a duplicate, the rollup gets what it missed.
    await _rewind(settings, topics_ready)
    replay = await _run_until(settings, chdb_store, "skipped_replay", 303)
    assert replay["repaired"] == 3  # the newest block, read back and inserted again
    raw, one_min, one_hour = await counts(chdb_store, vms)
    assert sum(raw.values()) == 303
    assert one_min == raw
    assert sum(one_hour.values()) == 303

    # and once more: a second replay changes nothing
    await _rewind(settings, topics_ready)
    await _run_until(settings, chdb_store, "skipped_replay", 303)
    assert await counts(chdb_store, vms) == (raw, one_min, one_hour)
