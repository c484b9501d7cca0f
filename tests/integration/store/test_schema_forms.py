"""The store's cluster form, rendered from the migrations and checked by ClickHouse's parser.

No ClickHouse server cluster (nor Keeper) can run here, so the cluster DDL is
not executed: every statement is parsed by the engine itself (chDB's
``formatQuery``, the session store) and the parsed, normalized text is checked
for its shape. The single-node form is the one every other store test runs.
"""

from __future__ import annotations

import re

import pytest

from store.clickhouse import ClickHouseStore
from store.exceptions import StoreError
from store.schema_forms import LOCAL_SUFFIX, cluster_form, cluster_statements
from store.schema_forms import migration_statements as single_node
from streams.retention import retention_statements

CLUSTER = "vmpulse_cluster"


async def _parsed(store: ClickHouseStore, statement: str) -> str:
    """The statement as ClickHouse's parser reads it back, on one line (StoreError if it cannot)."""
    literal = statement.replace("\\", "\\\\").replace("'", "\\'")
    result = await store.query(f"SELECT formatQuery('{literal}')")
    return " ".join(str(result["rows"][0][0]).split())


def _tables(statements: list[str]) -> set[str]:
    return {
        m.group(1)
        for s in statements
        if (m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", s)) is not None
    }


async def test_every_cluster_statement_parses_and_has_the_cluster_shape(
    chdb_store: ClickHouseStore,
) -> None:
    statements = cluster_statements(CLUSTER) + [
        form for s in retention_statements(7, 90) for form in cluster_form(s, CLUSTER)
    ]
    parsed = [await _parsed(chdb_store, s) for s in statements]
    print(f"{len(parsed)} cluster statements parsed by chDB")
    assert all(f" ON CLUSTER {CLUSTER}" in p for p in parsed)

    local: dict[str, str] = {}
    distributed: dict[str, str] = {}
    for p in parsed:
        m = re.match(r"CREATE TABLE IF NOT EXISTS (\w+) ON CLUSTER \w+ (.*)", p, re.S)
        if m is None:
            continue
        name, body = m.groups()
        if name.endswith(LOCAL_SUFFIX):
            engine = re.search(
                r"ENGINE = (\w+)\('/clickhouse/tables/\{shard\}/\{database\}/(\w+)'", body
            )
            assert engine is not None, body
            assert engine.group(1).startswith("Replicated"), (name, engine.group(1))
            assert engine.group(2) == name, "each local table its own replica path"
            assert "non_replicated_deduplication_window" not in body
            local[name] = engine.group(1)
        else:
            target = re.search(
                rf"AS (\w+) ENGINE = Distributed\({CLUSTER}, currentDatabase\(\), (\w+), (.+)\)$",
                body,
            )
            assert target is not None, body
            assert target.group(1) == target.group(2) == name + LOCAL_SUFFIX
            distributed[name] = target.group(3)

    tables = _tables(single_node())
    assert set(distributed) == tables, "every table is reached through a Distributed table"
    assert set(local) == {t + LOCAL_SUFFIX for t in tables}, "and stored in a replicated one"
    assert local["system_metrics_1m_local"] == "ReplicatedAggregatingMergeTree"
    assert distributed["system_metrics"] == "cityHash64(vm_id)"  # a VM's rollups on one shard

    views = [p for p in parsed if p.startswith("CREATE MATERIALIZED VIEW")]
    assert len(views) == 2
    for view in views:
        assert re.search(rf" TO \w+{LOCAL_SUFFIX} AS", view), view
        assert re.search(rf"FROM \w+{LOCAL_SUFFIX}\b", view), view
    alters = [p for p in parsed if p.startswith("ALTER TABLE")]
    for alter in alters:
        if "SETTING" in alter or "TTL" in alter:  # the storage's business: local tables
            assert re.match(rf"ALTER TABLE \w+{LOCAL_SUFFIX} ", alter), alter


async def test_the_parser_refuses_what_is_broken(chdb_store: ClickHouseStore) -> None:
    """The check can fail: a statement ClickHouse cannot parse is reported as such."""
    [good, _] = cluster_form(
        "CREATE TABLE IF NOT EXISTS t (vm_id String) ENGINE = MergeTree ORDER BY vm_id", CLUSTER
    )
    await _parsed(chdb_store, good)
    with pytest.raises(StoreError, match="Syntax error"):
        await _parsed(chdb_store, good.replace("ENGINE = ", "ENGINE = = "))


def test_the_single_node_form_is_the_files_as_written() -> None:
    statements = single_node()
    assert not any("ON CLUSTER" in s or "Replicated" in s or "Distributed" in s for s in statements)
    assert _tables(statements) >= {"system_metrics", "system_metrics_1m", "ingest_blocks"}


def test_an_unknown_statement_or_cluster_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no cluster form"):
        cluster_form("DROP TABLE system_metrics", CLUSTER)
    with pytest.raises(ValueError, match="identifier"):
        cluster_form("ALTER TABLE t MODIFY TTL ts", "c; DROP TABLE x")
