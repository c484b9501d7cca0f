"""The metric store: ClickHouse through clickhouse-connect, embedded (chDB) or a server.

``chdb:///<dir>`` runs the ClickHouse engine in-process (one process owns a
directory); ``http(s)://user:password@host:8123/db`` talks to a server. The
same DDL (``sql/*.sql``, applied in order, idempotent) and SQL serve both.

clickhouse-connect is synchronous and chDB has no async client, so every call
runs on one dedicated thread: the event loop never blocks on the store. That
thread is the writer's: reads for users (history, admin SQL) go through
:class:`store.reader.Reader`, with connections, limits and cancellation of
their own, and :meth:`ClickHouseStore.query` is for the pipeline's own SQL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import clickhouse_connect
import msgspec

from store.exceptions import StoreError
from store.owner import OwnerLock, chdb_directory
from store.reader import jsonable
from store.schema_forms import cluster_form, cluster_statements, migration_statements

__all__ = ["ClickHouseStore", "QueryResult", "Store", "redact_url"]

log = logging.getLogger(__name__)

_ENCODE_SLICE: Final = 1000
"""Rows encoded between two chances for the loop's thread to take the GIL (~1 ms of work)."""

_row_encoder = msgspec.json.Encoder()

QueryResult = dict[str, Any]


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

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, max_rows: int = 10_000
    ) -> QueryResult: ...


def redact_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


class ClickHouseStore:
    """A Store on clickhouse-connect, with migrations applied at open."""

    def __init__(self, url: str, *, cluster: str | None = None, owner: str | None = None) -> None:
        """``cluster``: a ClickHouse server cluster's name; the schema then takes its
        replicated and distributed form, ``ON CLUSTER`` (store/schema_forms.py).
        ``owner``: how this process is named to others while it has a chDB directory
        open (store/owner.py; default: its command line)."""
        self.url = url
        self.cluster = cluster
        self._owner = owner
        self._lock: OwnerLock | None = None
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
        directory = chdb_directory(self.url)
        if directory is not None and self._lock is None:
            # StoreOwned names the process that has it open, where chDB would name nobody
            self._lock = OwnerLock.take(directory, self._owner)
        try:
            return clickhouse_connect.get_client(dsn=self.url)
        except Exception as exc:
            self._release()
            raise StoreError(f"cannot open store {redact_url(self.url)}: {exc}") from exc

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _migrate(self) -> None:
        if self.cluster is not None:
            statements = cluster_statements(self.cluster)
        else:
            statements = migration_statements()
        for statement in statements:
            self._client.command(statement)
        log.debug("applied %d migration statements", len(statements))

    def schema_change(self, statement: str) -> list[str]:
        """A single-node DDL statement (retention) as this store's schema form needs it."""
        if self.cluster is None:
            return [statement]
        return cluster_form(statement, self.cluster)

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
            # In slices: one join over a whole block's rows holds the GIL without a break
            # (15-17 ms for 20,000 rows), and the worker's live path waits on its loop;
            # between slices the loop's thread gets it back within the switch interval.
            body = b"\n".join(
                [
                    b"\n".join(map(_row_encoder.encode, rows[i : i + _ENCODE_SLICE]))
                    for i in range(0, len(rows), _ENCODE_SLICE)
                ]
            )
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

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, max_rows: int = 10_000
    ) -> QueryResult:
        """Run the pipeline's own read (never user SQL) with row and time limits.

        Values go in ``parameters`` and are named in the SQL as ``{name:Type}``:
        clickhouse-connect sends them apart from the text and the engine binds
        them, so no caller builds a literal by hand.

        It runs on the writer's thread, between inserts: keep it small (the
        watermarks read one row per partition). ``readonly=2`` still stops a
        write slipping in; user SQL goes through :class:`store.reader.Reader`.
        """
        settings = {
            "readonly": 2,
            "max_result_rows": max_rows,
            "result_overflow_mode": "break",
            "max_execution_time": 30,
        }
        loop = asyncio.get_running_loop()

        def run() -> QueryResult:
            result = self._client.query(sql, parameters=parameters or None, settings=settings)
            rows = [jsonable(row) for row in result.result_rows[:max_rows]]
            return {"columns": list(result.column_names), "rows": rows}

        try:
            return await loop.run_in_executor(self._pool, run)
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
        self._release()
