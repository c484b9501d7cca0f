"""The store against chDB through clickhouse-connect: migrations, inserts, read-only queries."""

from __future__ import annotations

import datetime as dt
import uuid

from store.clickhouse import ClickHouseStore, redact_url
from streams.pipeline import SYSTEM_METRICS_COLUMNS


def _rows(vm: str, n: int, first_offset: int = 0) -> list[tuple[object, ...]]:
    t0 = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)
    base = dict.fromkeys(SYSTEM_METRICS_COLUMNS)
    base.update(vm_id=vm, received_at=t0, ts_source="agent", dialect=1, cpu_cores_usage=[])
    rows = []
    for i in range(n):
        row = dict(base, ts=t0 + dt.timedelta(seconds=i), cpu_usage_percent=float(i))
        row.update(memory_used_kb=100 + i, memory_total_kb=1000, kafka_partition=0)
        row["kafka_offset"] = first_offset + i
        rows.append(tuple(row[c] for c in SYSTEM_METRICS_COLUMNS))
    return rows


async def test_insert_then_query_returns_the_values(chdb_store: ClickHouseStore) -> None:
    vm = uuid.uuid4().hex
    await chdb_store.insert("system_metrics", _rows(vm, 5), SYSTEM_METRICS_COLUMNS, token=None)
    result = await chdb_store.query(
        "SELECT count(), sum(memory_used_kb), max(cpu_usage_percent) "
        f"FROM system_metrics WHERE vm_id = '{vm}'"
    )
    assert result["rows"] == [[5, 510, 4.0]]
    assert result["columns"][0] == "count()"


async def test_retried_insert_with_the_same_token_is_stored_once(
    chdb_store: ClickHouseStore,
) -> None:
    vm = uuid.uuid4().hex
    for _ in range(3):
        await chdb_store.insert(
            "system_metrics", _rows(vm, 4), SYSTEM_METRICS_COLUMNS, token=f"tok-{vm}"
        )
    result = await chdb_store.query(f"SELECT count() FROM system_metrics WHERE vm_id = '{vm}'")
    assert result["rows"] == [[4]]


async def test_migrations_are_idempotent(chdb_store: ClickHouseStore) -> None:
    await chdb_store.start()  # applies every migration again on the same store
    result = await chdb_store.query(
        "SELECT count() FROM system.tables WHERE name = 'system_metrics'"
    )
    assert result["rows"] == [[1]]


async def test_query_rows_are_capped(chdb_store: ClickHouseStore) -> None:
    result = await chdb_store.query("SELECT number FROM system.numbers LIMIT 100", max_rows=10)
    assert len(result["rows"]) <= 10


def test_password_is_redacted() -> None:
    assert redact_url("https://u:s3cret@h:8443/db") == "https://u:***@h:8443/db"


async def test_every_table_has_the_columns_the_pipeline_fills(
    chdb_store: ClickHouseStore,
) -> None:
    from streams.pipeline import TABLE_COLUMNS

    for table, columns in TABLE_COLUMNS.items():
        result = await chdb_store.query(
            "SELECT name FROM system.columns "
            f"WHERE database = currentDatabase() AND table = '{table}'"
        )
        assert {row[0] for row in result["rows"]} == set(columns), table
        assert columns[:2] == ("vm_id", "ts") and columns[-2:] == (
            "kafka_partition",
            "kafka_offset",
        )
