"""Retention: the TTLs of raw and rollup tables, set from settings at worker start.

The migrations create the tables with the default TTLs (raw 30 days, rollups
1 year); this module changes them to the configured ones. ``MODIFY TTL``
only changes metadata here (``materialize_ttl_after_modify = 0``): old parts
expire as merges touch them, instead of a rewrite of every part at start.
"""

from __future__ import annotations

from typing import Any

from infra.config import Settings
from store.clickhouse import ClickHouseStore

__all__ = [
    "RAW_TABLES",
    "ROLLUP_TABLES",
    "apply_retention",
    "register_retention",
    "retention_statements",
]

RAW_TABLES = {"system_metrics": "toDateTime(ts)"}
ROLLUP_TABLES = {"system_metrics_1m": "bucket", "system_metrics_1h": "bucket"}


def retention_statements(raw_days: int, rollup_days: int) -> list[str]:
    """The ALTER statements for the given retention, in days (each >= 1)."""
    if raw_days < 1 or rollup_days < 1:
        raise ValueError("retention must be at least one day")
    statements = []
    for tables, days in ((RAW_TABLES, raw_days), (ROLLUP_TABLES, rollup_days)):
        for table, column in tables.items():
            statements.append(
                f"ALTER TABLE {table} MODIFY TTL {column} + INTERVAL {int(days)} DAY "
                "SETTINGS materialize_ttl_after_modify = 0"
            )
    return statements


async def apply_retention(store: ClickHouseStore, raw_days: int, rollup_days: int) -> None:
    for statement in retention_statements(raw_days, rollup_days):
        for form in store.schema_change(statement):
            await store.command(form)


def register_retention(app: Any, settings: Settings, store: object) -> None:
    """Apply the configured retention once when the app starts (stores that take DDL only)."""
    if not isinstance(store, ClickHouseStore):
        return

    @app.task  # type: ignore[untyped-decorator]
    async def set_retention() -> None:
        await apply_retention(store, settings.store.raw_ttl_days, settings.store.rollup_ttl_days)
