"""Metric history for ``GET /api/vms/{id}/metrics``: which table, which step, which SQL.

The range decides the resolution, so a year-long chart does not pull a year of
raw samples: up to 6 hours from raw ``system_metrics``, up to 14 days from the
1-minute rollup ``system_metrics_1m``, beyond that from ``system_metrics_1h``.
A ``step`` coarser than the table's resolution re-buckets with
``toStartOfInterval``. The planning and the SQL are pure; :func:`fetch_history`
runs them through an injected async query function (the store's ``query``).

The rollup tables are built by the worker (issue 5) as AggregatingMergeTree
with ``-State`` columns. Where a rollup table does not exist yet, or its
columns are not the ones read here, the history is computed from the raw table
with ``GROUP BY toStartOfInterval`` instead: the same figures, slower. That
fallback is deliberate and logged, so the endpoint works on every store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.params import HISTORY_STEP, MAX_TIME_LENGTH, ParamError

__all__ = [
    "MAX_POINTS",
    "HistoryError",
    "HistoryPlan",
    "fetch_history",
    "history_parameters",
    "parse_time",
    "plan_history",
]

log = logging.getLogger(__name__)

Query = Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]]]
"""``query(sql, parameters)``: the store binds ``{name:Type}`` parameters (clickhouse-connect)."""

RAW_TABLE = "system_metrics"
ROLLUPS = (("system_metrics_1m", 60), ("system_metrics_1h", 3600))
RAW_MAX_RANGE_S = 6 * 3600
MINUTE_MAX_RANGE_S = 14 * 86400
MAX_RANGE_S = 2 * 366 * 86400
MAX_POINTS = 10_000
_ISO_Z = re.compile(r"Z$")
_EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
_EPOCH = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


class HistoryError(ParamError):
    """The request's times or step are not usable; the message says why."""


def parse_time(value: str | None, default: dt.datetime) -> dt.datetime:
    """ISO 8601 (``Z`` or an offset; naive means UTC) or epoch seconds, as aware UTC.

    None (not given) is ``default``; anything else must be a time, also the
    empty string. Epoch seconds are ASCII digits (``\\d`` would let unicode
    digits through), at most 12 of them, with an optional fraction.
    """
    if value is None:
        return default
    text = value.strip()
    try:
        if len(text) > MAX_TIME_LENGTH or not text.isascii():
            raise ValueError(text)
        if _EPOCH.fullmatch(text):
            return dt.datetime.fromtimestamp(float(text), dt.UTC)
        parsed = dt.datetime.fromisoformat(_ISO_Z.sub("+00:00", text))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        # An offset can carry year 1 or 9999 out of range (OverflowError).
        parsed = parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise HistoryError(f"not a time (ISO 8601 or epoch seconds): {value[:40]!r}") from None
    if not _EARLIEST <= parsed <= _LATEST:
        # Keeps "one hour before" and epoch-millisecond arithmetic in range.
        raise HistoryError(f"time out of range (1970 to 9000): {value[:40]!r}")
    return parsed


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryPlan:
    start: dt.datetime
    end: dt.datetime
    table: str
    step_s: int | None  # None: raw samples, not bucketed

    @property
    def resolution(self) -> str:
        return {RAW_TABLE: "raw", "system_metrics_1m": "1m", "system_metrics_1h": "1h"}[self.table]


def plan_history(start: dt.datetime, end: dt.datetime, step_s: int | None = None) -> HistoryPlan:
    """Pick the table and step for a range; raises HistoryError for a bad request.

    ``step_s`` comes parsed (gateway.params.HISTORY_STEP) and is checked
    against the same bounds here for callers that did not parse it.
    """
    if end <= start:
        raise HistoryError("'to' must be after 'from'")
    span = (end - start).total_seconds()
    if span > MAX_RANGE_S:
        raise HistoryError("range longer than two years")
    if step_s is not None and not HISTORY_STEP.minimum <= step_s <= HISTORY_STEP.maximum:
        raise HistoryError(
            f"'step' must be whole seconds between {HISTORY_STEP.minimum} "
            f"and {HISTORY_STEP.maximum}"
        )
    if span <= RAW_MAX_RANGE_S and (step_s is None or step_s < 60):
        table = RAW_TABLE
    elif span <= MINUTE_MAX_RANGE_S and (step_s is None or step_s < 3600):
        table = ROLLUPS[0][0]
        step_s = max(step_s or 60, 60)
    else:
        table = ROLLUPS[1][0]
        step_s = max(step_s or 3600, 3600)
    if step_s is not None and span / step_s > MAX_POINTS:
        step_s = int(span // MAX_POINTS) + 1
    return HistoryPlan(start, end, table, step_s)


def history_parameters(vm_id: str, plan: HistoryPlan) -> dict[str, Any]:
    """The values of a history query, bound by the engine, never spliced into its text."""
    return {
        "vm": vm_id,
        "start_ms": int(plan.start.timestamp() * 1000),
        "end_ms": int(plan.end.timestamp() * 1000),
        "step_s": plan.step_s or 0,
    }


_START = "fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')"
_END = "fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')"
_BUCKET = "INTERVAL {step_s:UInt32} SECOND"


def raw_sql(plan: HistoryPlan) -> str:
    """The raw table's points; the values are parameters (:func:`history_parameters`)."""
    where = f"vm_id = {{vm:String}} AND ts >= {_START} AND ts < {_END}"
    if plan.step_s is None:
        return (
            "SELECT toUnixTimestamp64Milli(ts) AS t, cpu_usage_percent AS cpu_avg, "
            "cpu_usage_percent AS cpu_max, memory_used_kb AS memory_used_kb_avg, "
            "memory_used_kb AS memory_used_kb_max, memory_total_kb, 1 AS samples "
            f"FROM {RAW_TABLE} WHERE {where} ORDER BY ts LIMIT {MAX_POINTS}"
        )
    # Fallback and fine steps: aggregate raw rows per bucket.
    return (
        f"SELECT toUnixTimestamp64Milli(toDateTime64(toStartOfInterval(ts, {_BUCKET}), "
        "3, 'UTC')) AS t, "
        "avg(cpu_usage_percent) AS cpu_avg, max(cpu_usage_percent) AS cpu_max, "
        "avg(memory_used_kb) AS memory_used_kb_avg, max(memory_used_kb) AS memory_used_kb_max, "
        "max(memory_total_kb) AS memory_total_kb, count() AS samples "
        f"FROM {RAW_TABLE} WHERE {where} GROUP BY t ORDER BY t LIMIT {MAX_POINTS}"
    )


def rollup_sql(plan: HistoryPlan) -> str:
    """Merge the rollup's aggregate states per requested bucket (store/sql/010_rollups.sql).

    The rollups keep avg and p95 as -State columns and max / sample counts as
    SimpleAggregateFunction columns; they hold no memory total, so that column
    is NULL here (the raw answer has it).
    """
    where = f"vm_id = {{vm:String}} AND bucket >= {_START} AND bucket < {_END}"
    return (
        f"SELECT toUnixTimestamp64Milli(toDateTime64(toStartOfInterval(bucket, {_BUCKET}), "
        "3, 'UTC')) AS t, "
        "avgMerge(cpu_avg) AS cpu_avg, max(cpu_max) AS cpu_max, "
        "avgMerge(memory_avg) AS memory_used_kb_avg, "
        "max(memory_max) AS memory_used_kb_max, "
        "CAST(NULL AS Nullable(UInt64)) AS memory_total_kb, sum(samples) AS samples "
        f"FROM {plan.table} WHERE {where} GROUP BY t ORDER BY t LIMIT {MAX_POINTS}"
    )


async def _table_exists(query: Query, table: str) -> bool:
    result = await query(f"EXISTS TABLE {table}", {})
    rows = result.get("rows") or []
    return bool(rows and rows[0] and rows[0][0])


async def fetch_history(query: Query, vm_id: str, plan: HistoryPlan) -> dict[str, Any]:
    """Run the plan; ``source`` says which table actually answered."""
    source = plan.table
    parameters = history_parameters(vm_id, plan)
    if plan.table != RAW_TABLE:
        if await _table_exists(query, plan.table):
            result = await query(rollup_sql(plan), parameters)
            return _shape(vm_id, plan, plan.table, result)
        # a store without the rollups (a worker that has not migrated it yet)
        log.warning("no rollup table %s: aggregating raw data", plan.table)
        source = RAW_TABLE
    result = await query(raw_sql(plan), parameters)
    return _shape(vm_id, plan, source, result)


def _shape(vm_id: str, plan: HistoryPlan, source: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "vmId": vm_id,
        "from": plan.start.isoformat().replace("+00:00", "Z"),
        "to": plan.end.isoformat().replace("+00:00", "Z"),
        "resolution": plan.resolution,
        "step": plan.step_s,
        "source": source,
        "columns": result.get("columns", []),
        "rows": result.get("rows", []),
    }
