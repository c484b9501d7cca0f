"""History from the real rollups in chDB: the 1-minute rollup answers a day's range with
the same sample count and figures as the raw rows it was fed."""

from __future__ import annotations

import datetime as dt
import uuid

from gateway.history import fetch_history, plan_history
from store.clickhouse import ClickHouseStore
from streams.pipeline import SYSTEM_METRICS_COLUMNS


async def test_day_range_is_answered_from_the_minute_rollup(chdb_store: ClickHouseStore) -> None:
    vm = uuid.uuid4().hex
    t0 = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(hours=2)
    cpus = [10.0, 20.0, 30.0, 50.0]  # two samples in each of two minutes
    rows = []
    for i, cpu in enumerate(cpus):
        given = {
            "vm_id": vm,
            "ts": t0 + dt.timedelta(seconds=30 * i),
            "received_at": t0,
            "agent_ts": t0,
            "ts_source": "agent",
            "dialect": 1,
            "cpu_usage_percent": cpu,
            "cpu_cores_usage": [],
            "memory_used_kb": 1000 * (i + 1),
            "memory_total_kb": 8000,
            "kafka_partition": 0,
            "kafka_offset": i,
        }
        rows.append(tuple(given.get(c) for c in SYSTEM_METRICS_COLUMNS))
    await chdb_store.insert("system_metrics", rows, SYSTEM_METRICS_COLUMNS, token=None)

    plan = plan_history(t0 - dt.timedelta(hours=12), t0 + dt.timedelta(hours=12))
    body = await fetch_history(chdb_store.query, vm, plan)
    assert body["source"] == "system_metrics_1m"
    cols = body["columns"]
    got = [dict(zip(cols, row, strict=True)) for row in body["rows"]]
    assert sum(r["samples"] for r in got) == 4
    assert [round(r["cpu_avg"], 3) for r in got] == [15.0, 40.0]
    assert [r["cpu_max"] for r in got] == [20.0, 50.0]
    assert [r["memory_used_kb_max"] for r in got] == [2000, 4000]


async def test_a_vm_id_with_quotes_and_backslashes_reads_its_own_rows_only(
    chdb_store: ClickHouseStore,
) -> None:
    # The id is bound by the engine (gateway/history.py), never spliced into the SQL:
    # each id reads exactly its rows, from the raw table and from the rollup.
    t0 = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(hours=1)
    tag = uuid.uuid4().hex[:8]
    hostile = f"{tag}'b\\c') OR 1=1 --"
    neighbour = f"{tag}'b"
    for n, vm in ((3, hostile), (5, neighbour)):
        rows = [
            tuple(
                {
                    "vm_id": vm,
                    "ts": t0 + dt.timedelta(seconds=i),
                    "received_at": t0,
                    "ts_source": "agent",
                    "dialect": 1,
                    "cpu_usage_percent": 1.0,
                    "cpu_cores_usage": [],
                    "kafka_partition": 0,
                    "kafka_offset": i,
                }.get(c)
                for c in SYSTEM_METRICS_COLUMNS
            )
            for i in range(n)
        ]
        await chdb_store.insert("system_metrics", rows, SYSTEM_METRICS_COLUMNS, token=None)
    for span in (dt.timedelta(minutes=30), dt.timedelta(hours=12)):  # raw, then the 1m rollup
        for n, vm in ((3, hostile), (5, neighbour)):
            body = await fetch_history(chdb_store.query, vm, plan_history(t0, t0 + span))
            samples = body["columns"].index("samples")
            assert sum(row[samples] for row in body["rows"]) == n, (span, vm)
