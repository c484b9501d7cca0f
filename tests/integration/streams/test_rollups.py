"""Rollups in chDB: the 1-minute and 1-hour views count every raw row once, also after a replay."""

from __future__ import annotations

import datetime as dt
import random
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from schemas.topics import Topics
from streams.app import create_app, ingest_group_id
from streams.pipeline import SYSTEM_METRICS_COLUMNS
from streams.retention import apply_retention
from streams.store import ClickHouseStore
from vmpulse.config import Settings
from vmpulse.kafka_io import make_producer

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
    rows = [
        (
            rng.choice(vms),
            T0 + dt.timedelta(seconds=rng.randrange(3 * 3600)),
            T0,
            rng.uniform(0, 100),
            rng.randrange(10**6),
            10**6,
            0,
            i,
        )
        for i in range(3000)
    ]
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


async def test_a_replay_from_offset_zero_adds_nothing(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> None:
    vms = [f"vm-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    producer = make_producer(settings.kafka_bootstrap or "")
    await producer.start()
    try:
        for i in range(300):
            ts = T0 + dt.timedelta(seconds=7 * i)
            await producer.send(
                topics_ready.agent_raw, metrics_line(vms[i % 3], 10.0, ts), key=vms[i % 3].encode()
            )
        await producer.flush()
    finally:
        await producer.stop()

    async with running_worker(settings, chdb_store) as app:
        await until(lambda: app.vmpulse_stats["stored"] == 300, "300 stored")
        group = ingest_group_id(settings.topic_prefix)
    # rewind the worker's committed offsets to the beginning: everything is delivered again
    rewind = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await rewind.start()
    try:
        tps = [TopicPartition(topics_ready.agent_raw, p) for p in range(settings.partitions)]
        rewind.assign(tps)
        await rewind.commit({tp: OffsetAndMetadata(0, "") for tp in tps})
    finally:
        await rewind.stop()

    before = await counts(chdb_store, vms)
    # the same store, not emptied (running_worker would): the second run must skip it all
    app2 = create_app(settings, chdb_store, batch_within_s=0.05)
    await app2.start()
    try:
        await until(lambda: app2.vmpulse_stats["skipped_replay"] == 300, "the replay skipped")
        assert app2.vmpulse_stats["stored"] == 0
    finally:
        await app2.stop()
    raw, one_min, _ = await counts(chdb_store, vms)
    assert (raw, one_min) == before[:2]
    assert sum(raw.values()) == 300 and one_min == raw
