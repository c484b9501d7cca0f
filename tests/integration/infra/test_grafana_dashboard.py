"""The analysts' Grafana dashboard (infra/grafana/) against the real schema, on chDB.

Grafana and a ClickHouse server cannot run here (no registry to pull their images);
the dashboard's SQL is the part that can break with a schema change, and chDB is the same
engine with the same DDL (store/sql/). Each query runs with Grafana's macros expanded as
the ClickHouse plugin expands them, over rows stored through the rollup views.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from store.clickhouse import ClickHouseStore

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "infra/grafana/dashboards/vmpulse-fleet.json"
DATASOURCE = ROOT / "infra/grafana/provisioning/datasources/clickhouse.yaml"


def _expand(sql: str, vms: list[str]) -> str:
    """Grafana's macros as the ClickHouse plugin writes them, for the last day."""
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        r"\1 >= toDateTime(now() - INTERVAL 1 DAY) AND \1 <= toDateTime(now())",
        sql,
    )
    sql = sql.replace("${vm:singlequote}", ",".join(f"'{vm}'" for vm in vms))
    assert "$" not in sql, f"an unexpanded macro in {sql}"
    return sql


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["rawSql"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


async def test_every_panel_query_runs_on_the_schema_and_finds_the_rows(
    chdb_store: ClickHouseStore,
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    vms = [f"grafana-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    values = ", ".join(
        f"('{vm}', now64(3) - INTERVAL {minute} MINUTE, now64(3), {10 + minute}, "
        f"{1000 * (minute + 1)}, 8000000, 0, {i * 100 + minute})"
        for i, vm in enumerate(vms)
        for minute in range(5)
    )
    await chdb_store.command(
        "INSERT INTO system_metrics (vm_id, ts, received_at, cpu_usage_percent, "
        f"memory_used_kb, memory_total_kb, kafka_partition, kafka_offset) VALUES {values}"
    )
    await chdb_store.command(
        "INSERT INTO agent_events (vm_id, ts, received_at, ts_source, kind, message_type, "
        f"severity, message) VALUES ('{vms[0]}', now64(3) - INTERVAL 1 MINUTE, now64(3), "
        "'agent', 'event', "
        "'heartbeat', 'info', 'hello')"
    )
    queries = _queries(dashboard)
    assert len(queries) == 6
    for title, sql in queries:
        result = await chdb_store.query(_expand(sql, vms))
        assert result["rows"], f"{title}: no rows"
    variable = dashboard["templating"]["list"][0]
    found = {row[0] for row in (await chdb_store.query(variable["query"]))["rows"]}
    assert set(vms) <= found
    busiest = next(sql for title, sql in queries if title.startswith("Busiest"))
    rows = (await chdb_store.query(_expand(busiest, vms)))["rows"]
    assert {row[0] for row in rows} == set(vms)
    assert [row[5] for row in rows] == [5, 5]  # every sample counted once


def test_the_data_source_is_the_read_only_user_with_a_password_from_a_file() -> None:
    text = DATASOURCE.read_text()
    assert "username: vmpulse_reader" in text
    assert "password: $__file{/run/vmpulse-secrets/reader_password}" in text
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    assert uids == {"vmpulse-clickhouse"} and "uid: vmpulse-clickhouse" in text


@pytest.mark.parametrize("word", ["INSERT", "ALTER", "DROP", "CREATE", "SYSTEM"])
def test_no_panel_writes(word: str) -> None:
    for title, sql in _queries(json.loads(DASHBOARD.read_text())):
        assert word not in sql.upper().split(), title
