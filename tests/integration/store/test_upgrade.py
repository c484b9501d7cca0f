"""The store's schema moves forward only, and an older release still runs on a newer store.

docs/DEPLOYMENT.md, "Upgrade and rollback": the migrations (store/sql/*.sql) run at
every worker start. A store made by an older release's migrations keeps its rows through
the upgrade; the older release's statements, run again by its worker after a rollback,
change nothing the newer ones made, and its inserts (which name the older columns) still
work. On chDB, in a database of its own beside the session's store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import clickhouse_connect
import pytest

from store.clickhouse import ClickHouseStore
from store.schema_forms import SQL_DIR, migration_statements, split_statements

FILES = sorted(SQL_DIR.glob("*.sql"))


def _columns(client: Any, table: str) -> dict[str, str]:
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
        "AND table = {t:String}",
        parameters={"t": table},
    ).result_rows
    return dict(rows)


def _count(client: Any, table: str, vm: str) -> int:
    rows = client.query(
        f"SELECT count() FROM {table} WHERE vm_id = {{vm:String}}", parameters={"vm": vm}
    ).result_rows
    return int(rows[0][0])


# an older worker names the columns it knows; newer ones take their defaults
INSERTS = {
    "agent_events": "INSERT INTO agent_events (vm_id, ts, kind, message, kafka_partition, "
    "kafka_offset) VALUES ('{vm}', now64(3), 'agent_event', 'hello', 0, {offset})",
    "system_metrics": "INSERT INTO system_metrics (vm_id, ts, kafka_partition, kafka_offset) "
    "VALUES ('{vm}', now64(3), 0, {offset})",
}


def _insert_as_old_release(client: Any, tables: Iterable[str], vm: str, offset: int) -> None:
    for table in tables:
        client.command(INSERTS[table].format(vm=vm, offset=offset))


@pytest.mark.parametrize("released", [len(FILES) - 1, 1], ids=["previous", "first"])
async def test_an_older_store_upgrades_and_the_older_release_still_runs_on_it(
    chdb_store: ClickHouseStore, released: int
) -> None:
    assert len(FILES) >= 2
    older = [s for f in FILES[:released] for s in split_statements(f.read_text())]
    newer = migration_statements()
    database = f"vmpulse_upgrade_{uuid.uuid4().hex[:8]}"
    await chdb_store.command(f"CREATE DATABASE {database}")
    client = clickhouse_connect.get_client(dsn=chdb_store.url, database=database)
    try:
        for statement in older:  # the store as the older release left it
            client.command(statement)
        tables = {t: c for t in INSERTS if (c := _columns(client, t))}
        assert "system_metrics" in tables
        _insert_as_old_release(client, tables, "vm-old", 1)

        for statement in newer:  # the upgrade: the newer worker starts
            client.command(statement)
        upgraded = {t: _columns(client, t) for t in tables}
        for table, columns in tables.items():
            assert set(columns) <= set(upgraded[table]), f"{table} lost a column"
            assert _count(client, table, "vm-old") == 1, f"{table} lost its rows"

        for statement in older:  # the rollback: the older worker starts again
            client.command(statement)
        assert {t: _columns(client, t) for t in tables} == upgraded
        _insert_as_old_release(client, tables, "vm-old", 2)
        for table in tables:
            assert _count(client, table, "vm-old") == 2
        if "state" in set(upgraded.get("agent_events", {})) - set(tables.get("agent_events", {})):
            rows = client.query(
                "SELECT DISTINCT state FROM agent_events WHERE vm_id = 'vm-old'"
            ).result_rows
            assert rows == [(None,)]  # a column the older release did not know: NULL
    finally:
        client.close()
        await chdb_store.command(f"DROP DATABASE IF EXISTS {database}")
