"""The metric store: ClickHouse through clickhouse-connect, embedded (chDB) or a server.

``chdb:///<dir>`` runs the ClickHouse engine in-process (one process owns a
directory); ``http(s)://user:password@host:8123/db`` talks to a server. The
same DDL (``sql/*.sql``, applied in order, idempotent) and SQL serve both.

clickhouse-connect is synchronous and chDB has no async client, so every call
runs on one dedicated thread: the event loop never blocks on the store, and
the embedded engine only ever sees one caller at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import clickhouse_connect
import msgspec

from streams.exceptions import QueryRejected, StoreError

__all__ = [
    "MAX_SQL_LENGTH",
    "ClickHouseStore",
    "QueryResult",
    "Store",
    "check_read_only",
    "redact_url",
]

log = logging.getLogger(__name__)

_SQL_DIR = Path(__file__).resolve().parent / "sql"
_row_encoder = msgspec.json.Encoder()

QueryResult = dict[str, Any]

MAX_SQL_LENGTH = 20_000
_READ_ONLY_VERBS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})
_LEADING_NOISE = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/|\()*", re.DOTALL)
_FORBIDDEN = re.compile(
    r"\bINTO\s+OUTFILE\b"
    r"|\b(?:file|url|s3|s3Cluster|gcs|azureBlobStorage|hdfs|remote|remoteSecure|cluster"
    r"|clusterAllReplicas|mysql|postgresql|mongodb|redis|sqlite|jdbc|odbc|executable"
    r"|input|iceberg|deltaLake|hudi|urlCluster|fileCluster)\s*\(",
    re.IGNORECASE,
)


class Store(Protocol):
    """What the stages need of a metric store."""

    async def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        *,
        token: str | None,
    ) -> None: ...

    async def query(self, sql: str, *, max_rows: int = 10_000) -> QueryResult: ...


def redact_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def check_read_only(sql: str) -> str:
    """Return ``sql`` without a trailing ``;`` if it is one read-only statement.

    The one set of rules for every entry point (``vmpulse query``, the
    gateway's ``POST /api/query``, :meth:`ClickHouseStore.query`).
    Deliberately conservative: any ``;`` inside the text (even in a string
    literal) is refused rather than parsed, because a wrong guess here runs a
    write; table functions that reach outside the store (files, URLs, other
    servers, processes) and ``INTO OUTFILE`` are refused because ClickHouse's
    ``readonly`` setting does not stop all of them. The store also executes
    with ``readonly=2``: this is the first line, not the only one.
    """
    text = sql.strip()
    if not text:
        raise QueryRejected("empty query")
    if len(text) > MAX_SQL_LENGTH:
        raise QueryRejected(f"query longer than {MAX_SQL_LENGTH} characters")
    if text.endswith(";"):
        text = text[:-1].rstrip()
    if ";" in text:
        raise QueryRejected("only a single statement is allowed")
    body = _LEADING_NOISE.sub("", text, count=1)
    verb = re.match(r"[A-Za-z]+", body)
    if verb is None or verb.group(0).upper() not in _READ_ONLY_VERBS:
        raise QueryRejected(
            "only SELECT, WITH, SHOW, DESCRIBE, EXISTS and EXPLAIN statements are allowed"
        )
    if _FORBIDDEN.search(text):
        raise QueryRejected("table functions and INTO OUTFILE are not allowed")
    return text


class ClickHouseStore:
    """A Store on clickhouse-connect, with migrations applied at open."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="clickhouse")
        self._client: Any = None

    def open(self) -> None:
        """Connect and apply migrations (blocking; call before the loop starts or via start())."""
        self._client = self._pool.submit(self._connect).result()
        self._pool.submit(self._migrate).result()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._client = await loop.run_in_executor(self._pool, self._connect)
        await loop.run_in_executor(self._pool, self._migrate)

    def _connect(self) -> Any:
        try:
            return clickhouse_connect.get_client(dsn=self.url)
        except Exception as exc:
            raise StoreError(f"cannot open store {redact_url(self.url)}: {exc}") from exc

    def _migrate(self) -> None:
        files = sorted(_SQL_DIR.glob("*.sql"))
        for file in files:
            for statement in _statements(file.read_text()):
                self._client.command(statement)
            log.debug("applied %s", file.name)

    async def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        *,
        token: str | None,
    ) -> None:
        """Insert synchronously (async_insert=0); ``token`` makes a retried insert a no-op.

        Rows travel as JSONCompactEachRow encoded by msgspec and parsed by the
        engine, not through clickhouse-connect's per-value Python conversion:
        that conversion cost about 26 us per system_metrics row, three times the
        JSON path (docs/BENCHMARKS.md, worker section).
        """
        if not rows:
            return
        settings: dict[str, Any] = {
            "async_insert": 0,
            "date_time_input_format": "best_effort",  # RFC 3339 with its offset
        }
        if token is not None:
            settings["insert_deduplication_token"] = token
            # a retried block still reaches the views that missed it, and only those
            settings["deduplicate_blocks_in_dependent_materialized_views"] = 1
        loop = asyncio.get_running_loop()

        def run() -> None:
            body = b"\n".join(map(_row_encoder.encode, rows))
            self._client.raw_insert(
                table, list(columns), body, settings=settings, fmt="JSONCompactEachRow"
            )

        try:
            await loop.run_in_executor(self._pool, run)
        except Exception as exc:
            raise StoreError(f"insert into {table} failed: {exc}") from exc

    async def command(self, sql: str) -> None:
        """Run one statement that changes things (DDL such as retention); never user input."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._client.command, sql)
        except Exception as exc:
            raise StoreError(str(exc).strip().splitlines()[0][:500]) from exc

    async def query(self, sql: str, *, max_rows: int = 10_000) -> QueryResult:
        """Run one read-only statement with row and time limits; return columns and rows."""
        text = check_read_only(sql)
        settings = {
            "readonly": 2,
            "max_result_rows": max_rows,
            "result_overflow_mode": "break",
            "max_execution_time": 30,
        }
        loop = asyncio.get_running_loop()

        def run() -> QueryResult:
            result = self._client.query(text, settings=settings)
            rows = [[_jsonable(v) for v in row] for row in result.result_rows[:max_rows]]
            return {"columns": list(result.column_names), "rows": rows}

        try:
            return await loop.run_in_executor(self._pool, run)
        except QueryRejected:
            raise
        except Exception as exc:
            raise StoreError(str(exc).strip().splitlines()[0][:500]) from exc

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                self._pool.submit(client.close).result(timeout=10)
            except Exception:
                log.debug("store close failed", exc_info=True)
        self._pool.shutdown(wait=True)


def _statements(sql: str) -> list[str]:
    """Split a migration file on ';' at line ends; comments are dropped."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    parts = (s.strip().rstrip(";").strip() for s in "\n".join(lines).split(";\n"))
    return [p for p in parts if p]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
