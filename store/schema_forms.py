"""The store's schema in its two forms, rendered from the same migration files (sql/*.sql).

Single node (chDB, or one ClickHouse server): the files as written.

Cluster (``VMPULSE_CLICKHOUSE_CLUSTER=<name>``, a ClickHouse server cluster
with Keeper): each table becomes a local table ``<name>_local`` on every node,
``Replicated*MergeTree`` (its replicas kept by Keeper under
``/clickhouse/tables/{shard}/{database}/<table>_local``), and a ``Distributed``
table under the original name that spreads inserts over the shards by VM (all
of a VM's rows, and so its rollups, on one shard) and reads from all of them.
The stages keep using the original names. Materialized views run per shard,
from the local raw table into the local rollup table. Every statement runs
``ON CLUSTER``; a column change is made to the local and the distributed table;
settings and TTLs belong to the local tables, the deduplication window becomes
the replicated one. Retention statements (streams/retention.py) go through
:func:`cluster_form` too.

Pure text work on our own statements, whose shapes are few and known; the
tests parse every rendered statement with ClickHouse's own parser (chDB) and
check the shape (tests/unit/streams/test_schema_forms.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

__all__ = [
    "LOCAL_SUFFIX",
    "SQL_DIR",
    "cluster_form",
    "cluster_statements",
    "migration_statements",
    "split_statements",
]

SQL_DIR: Final = Path(__file__).resolve().parent / "sql"
LOCAL_SUFFIX: Final = "_local"
_CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (\w+)\s*\((.*)\)\s*ENGINE = (\w+)(.*)$", re.S
)
_CREATE_VIEW = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS(.*\bFROM )(\w+)(.*)$", re.S
)
_ALTER = re.compile(r"^ALTER TABLE (\w+)\s+(.*)$", re.S)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def split_statements(sql: str) -> list[str]:
    """Split a migration file on ';' at line ends; comments are dropped."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    parts = (s.strip().rstrip(";").strip() for s in "\n".join(lines).split(";\n"))
    return [p for p in parts if p]


def migration_statements(sql_dir: Path = SQL_DIR) -> list[str]:
    """Every statement of the migrations, in order: the single-node form."""
    return [s for f in sorted(sql_dir.glob("*.sql")) for s in split_statements(f.read_text())]


def cluster_statements(cluster: str, sql_dir: Path = SQL_DIR) -> list[str]:
    """The migrations in the cluster form (see the module docstring)."""
    tables: dict[str, str] = {}
    out: list[str] = []
    for statement in migration_statements(sql_dir):
        out += cluster_form(statement, cluster, tables)
    return out


def cluster_form(statement: str, cluster: str, tables: dict[str, str] | None = None) -> list[str]:
    """One single-node statement as the statements of the cluster form.

    ``tables`` collects the sharding key of each table created so far (a
    column change needs to know the table is distributed); without it every
    ALTER is taken to concern a distributed table.
    """
    if not _NAME.match(cluster):
        raise ValueError(f"cluster name must be an identifier, got {cluster!r}")
    if (m := _CREATE_TABLE.match(statement)) is not None:
        name, columns, engine, rest = m.groups()
        key = "cityHash64(vm_id)" if re.search(r"^\s*vm_id\s", columns, re.M) else "rand()"
        if name == "ingest_blocks":
            key = "cityHash64(topic, partition)"  # one partition's intents on one shard
        if tables is not None:
            tables[name] = key
        local = name + LOCAL_SUFFIX
        path = f"'/clickhouse/tables/{{shard}}/{{database}}/{local}', '{{replica}}'"
        return [
            f"CREATE TABLE IF NOT EXISTS {local} ON CLUSTER {cluster}\n({columns})\n"
            f"ENGINE = Replicated{engine}({path}){_replicated_settings(rest)}",
            f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} AS {local}\n"
            f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, {key})",
        ]
    if (m := _CREATE_VIEW.match(statement)) is not None:
        view, target, select, source, rest = m.groups()
        return [
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} ON CLUSTER {cluster} "
            f"TO {target}{LOCAL_SUFFIX} AS{select}{source}{LOCAL_SUFFIX}{rest}"
        ]
    if (m := _ALTER.match(statement)) is not None:
        table, change = m.groups()
        local = f"ALTER TABLE {table}{LOCAL_SUFFIX} ON CLUSTER {cluster} "
        if re.match(r"(ADD|MODIFY|DROP|RENAME) COLUMN\b", change):
            return [local + change, f"ALTER TABLE {table} ON CLUSTER {cluster} {change}"]
        return [local + _replicated_settings(change)]
    raise ValueError(f"no cluster form for statement: {statement[:120]!r}")


def _replicated_settings(text: str) -> str:
    """A replicated table's dedup window is ``replicated_deduplication_window``."""
    return text.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
