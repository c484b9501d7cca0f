"""The read side of the metric store: its own connections, read-only, capped and cancellable.

Reads (the gateway's metric history and admin SQL, ``vmpulse query``) never
use the writer's connection or thread, so a long read cannot hold up an
insert. Each :class:`Reader` owns ``concurrency`` connections of its own, a
thread for each, and one control connection that only cancels:

- chDB (``chdb:///dir``): clickhouse-connect opens a separate chDB handle per
  client on the engine the process already runs (one engine per process,
  any number of handles; queries on different handles run in parallel, each
  with its own session settings). The writer keeps its handle and thread.
- A server (``http(s)://``): the reader's own HTTP connections, best as the
  read-only user of ``infra/clickhouse/reader_grants.sql``
  (``VMPULSE_CLICKHOUSE_READ_URL``).

Every reader connection runs with ``readonly=1`` set after its limits
(``max_execution_time``, ``max_memory_usage``, ``max_result_rows`` and
``max_result_bytes`` with ``result_overflow_mode='break'``, ``max_threads``,
and ``os_thread_priority``: the engine runs a read's threads at nice 10, so
where a read and the worker's inserts want the same core, the insert wins),
so no statement can change them; where the server's profile already makes
the user read-only, the profile's limits apply and none are sent. Opening
checks that the engine reports ``readonly`` for each connection.

Admission is decided before any engine work (:class:`ReadSlots`): at most
``concurrency`` reads in the process and ``per_user`` per user, else
:class:`~store.exceptions.ReadBusy` with a Retry-After estimate. A read
that outlives ``timeout_s``, or whose caller is cancelled, is stopped in the
engine: each statement starts with a comment carrying a fresh tag, and the
control connection runs ``KILL QUERY`` on it; the engine's own
``max_execution_time`` is the backstop. A read's slot is given back only
when its connection is free again.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import clickhouse_connect
import msgspec

from infra.config import Settings
from store.exceptions import QueryRejected, ReadBusy, ReadFailed, ReadTimeout
from store.sql_policy import (
    ReadPolicy,
    denied_functions,
    judge_ast,
    judge_query_tree,
    parse_refusal,
    precheck,
)

__all__ = [
    "READ_THREAD_NICENESS",
    "QueryResult",
    "ReadLimits",
    "ReadSession",
    "ReadSlots",
    "Reader",
    "jsonable",
]

log = logging.getLogger(__name__)

QueryResult = dict[str, Any]
"""``{"columns": [...], "rows": [[...], ...]}``, plus ``"truncated": True`` when capped."""

_TAG = "/* vmpulse-read {} */ "
READ_THREAD_NICENESS = 10
_CANCELLED_CODES = ("Code: 159.", "Code: 394.")  # TIMEOUT_EXCEEDED, QUERY_WAS_CANCELLED
_KILL_GRACE_S = 10.0
_PARSE = "SELECT c, parseQueryToJSON(c) FROM (SELECT formatQuery({q:String}) AS c)"
_TABLES = (
    "SELECT currentDatabase(), groupArray(name) FROM system.tables "
    "WHERE database = currentDatabase()"
)
_FUNCTIONS = "SELECT name, alias_to, categories, origin FROM system.functions"
_JSON_NATIVE = (int, float, str, bool)
_FUNCTIONS_OLD = "SELECT name, alias_to, '', origin FROM system.functions"  # before categories


@dataclasses.dataclass(frozen=True, slots=True)
class ReadLimits:
    """How much one process and one user may read at once, and how much a read may take."""

    concurrency: int = 4
    per_user: int = 2
    timeout_s: float = 30.0
    max_execution_time_s: float | None = None
    """The engine's own limit, the backstop if a KILL is lost; None: ``timeout_s`` + 1 s."""
    max_memory_bytes: int = 1 << 30
    max_result_rows: int = 10_000
    max_result_bytes: int = 64 << 20
    max_threads: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadLimits:
        return cls(
            concurrency=settings.reads.concurrency,
            per_user=settings.reads.concurrency_per_user,
            timeout_s=settings.reads.timeout_s,
            max_memory_bytes=settings.reads.max_memory_mb << 20,
            max_result_bytes=settings.reads.max_result_mb << 20,
            max_threads=settings.reads.max_threads,
        )

    def engine_settings(self) -> dict[str, Any]:
        """Session settings of a reader connection, in order: ``readonly`` last locks the rest."""
        engine_time = self.max_execution_time_s or self.timeout_s + 1
        return {
            "max_execution_time": max(1, math.ceil(engine_time)),
            "max_memory_usage": self.max_memory_bytes,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "break",
            "max_threads": self.max_threads,
            # a read's threads yield the CPU to ingest (nice 10) when both want it
            "os_thread_priority": READ_THREAD_NICENESS,
            "readonly": 1,
        }


class ReadSlots:
    """Admission of reads: a cap per process and per user, pure and with an injected clock."""

    def __init__(
        self,
        concurrency: int,
        per_user: int,
        *,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if concurrency < 1 or per_user < 1:
            raise ValueError("read caps must be at least 1")
        self.concurrency = concurrency
        self.per_user = per_user
        self._timeout_s = timeout_s
        self._clock = clock
        self._users: collections.Counter[str] = collections.Counter()
        self._durations: collections.deque[float] = collections.deque(maxlen=20)

    @property
    def in_flight(self) -> int:
        return sum(self._users.values())

    def of(self, user: str) -> int:
        return self._users[user]

    def take(self, user: str) -> float:
        """Admit one read of ``user`` and return its start time, or raise ReadBusy."""
        if self._users[user] >= self.per_user:
            raise ReadBusy(
                f"too many reads at once for this user (at most {self.per_user}); "
                "retry after the ones running",
                self.retry_after_s(),
            )
        if self.in_flight >= self.concurrency:
            raise ReadBusy(
                f"the metric store is busy with {self.concurrency} reads; retry shortly",
                self.retry_after_s(),
            )
        self._users[user] += 1
        return self._clock()

    def give_back(self, user: str, started: float) -> None:
        self._users[user] -= 1
        if self._users[user] <= 0:
            del self._users[user]
        self._durations.append(max(0.0, self._clock() - started))

    def retry_after_s(self) -> int:
        """Whole seconds until a slot is likely free: the recent mean read time, 1 at least."""
        if not self._durations:
            return 1
        mean = sum(self._durations) / len(self._durations)
        return max(1, min(math.ceil(self._timeout_s), math.ceil(mean)))


class Reader:
    """Read-only connections to the metric store with admission, limits and cancellation."""

    def __init__(self, url: str, limits: ReadLimits | None = None) -> None:
        self.url = url
        self.limits = limits or ReadLimits()
        self.slots = ReadSlots(
            self.limits.concurrency, self.limits.per_user, timeout_s=self.limits.timeout_s
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.limits.concurrency, thread_name_prefix="clickhouse-read"
        )
        self._control_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="clickhouse-read-control"
        )
        self._free: list[Any] = []
        self._control: Any = None
        self._denied: frozenset[str] = frozenset()
        self._settings: dict[str, Any] | None = None
        self.cancelled = 0
        """Statements this reader stopped in the engine (timeouts and cancelled callers)."""

    def open(self) -> None:
        """Open the connections and read the function catalogue (blocking)."""
        try:
            self._control = self._control_pool.submit(self._connect_first).result()
            self._free = [
                self._pool.submit(self._connect).result() for _ in range(self.limits.concurrency)
            ]
            self._denied = self._control_pool.submit(self._load_denied).result()
        except Exception:
            self.close()
            raise

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.open)

    @property
    def denied_functions(self) -> frozenset[str]:
        """The scalar functions the policy refuses, as built from the engine's catalogue."""
        return self._denied

    def _connect_first(self) -> Any:
        """The control connection; it finds out whether the user is read-only already.

        A server user whose profile says ``readonly=1`` may not send settings at
        all: the profile's limits apply (``infra/clickhouse/reader_grants.sql``).
        Otherwise every connection sets the reader's own limits, ``readonly`` last.
        """
        client = self._client(None)
        if _readonly(client) == 0:
            client.close()
            self._settings = self.limits.engine_settings()
            return self._connect()
        log.info("the reader's user is read-only already: the server profile's limits apply")
        return client

    def _connect(self) -> Any:
        """One connection, read-only by the engine's own account."""
        client = self._client(self._settings)
        if _readonly(client) == 0:
            client.close()
            raise ReadFailed("the read connection is not read-only (readonly=0)")
        return client

    def _client(self, settings: dict[str, Any] | None) -> Any:
        try:
            return clickhouse_connect.get_client(dsn=self.url, settings=settings)
        except Exception as exc:
            raise ReadFailed(f"cannot open a read connection: {_engine_message(exc)}") from exc

    def _load_denied(self) -> frozenset[str]:
        try:
            rows = self._control.query(_FUNCTIONS).result_rows
        except Exception:
            rows = self._control.query(_FUNCTIONS_OLD).result_rows
        return denied_functions((str(a), str(b), str(c), str(d)) for a, b, c, d in rows)

    @contextlib.asynccontextmanager
    async def session(self, user: str) -> AsyncIterator[ReadSession]:
        """One admitted read of ``user`` on a connection of its own; raises ReadBusy."""
        if self._control is None:
            raise ReadFailed("the reader is not open")
        started = self.slots.take(user)
        client = self._free.pop()
        session = ReadSession(self, client)
        try:
            yield session
        finally:
            running = session.running

            def done(*_: Any) -> None:
                self._free.append(client)
                self.slots.give_back(user, started)

            if running is None or running.done():
                done()
            else:
                # the engine has not let go of the statement yet: the slot stays taken
                running.add_done_callback(done)

    async def _kill(self, tag: str) -> None:
        sql = f"KILL QUERY WHERE startsWith(query, '{_TAG.format(tag).strip()}') ASYNC"
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._control_pool, self._control.command, sql)
            self.cancelled += 1
        except Exception as exc:
            log.warning("could not cancel a read in the engine: %s", _engine_message(exc))

    def close(self) -> None:
        clients, self._free = self._free, []
        control, self._control = self._control, None
        for client in clients:
            with contextlib.suppress(Exception):
                self._pool.submit(client.close).result(timeout=10)
        if control is not None:
            with contextlib.suppress(Exception):
                self._control_pool.submit(control.close).result(timeout=10)
        self._pool.shutdown(wait=True)
        self._control_pool.shutdown(wait=True)


class ReadSession:
    """The statements of one admitted read, run one after the other on its connection."""

    def __init__(self, reader: Reader, client: Any) -> None:
        self._reader = reader
        self._client = client
        self.running: asyncio.Future[Any] | None = None

    async def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        """Run SQL the caller wrote itself (never user SQL) with the reader's limits; values
        go in ``parameters`` (``{name:Type}`` in the SQL), bound by the engine."""
        result: QueryResult = await self._run(sql, _rows, parameters)
        return result

    async def admin_query(self, sql: str) -> QueryResult:
        """Run user SQL if :mod:`store.sql_policy` allows it; raises QueryRejected."""
        text = precheck(sql)
        try:
            canonical, tree_json = (await self._run(_PARSE, _first_row, {"q": text}))[:2]
        except ReadFailed as exc:
            raise parse_refusal(str(exc)) from None
        database, tables = (await self._run(_TABLES, _first_row))[:2]
        policy = ReadPolicy(
            database=str(database),
            tables=frozenset(map(str, tables)),
            denied_functions=self._reader.denied_functions,
        )
        judge_ast(msgspec.json.decode(tree_json), policy)
        try:
            tree = await self._run(f"EXPLAIN QUERY TREE {canonical}", _raw_text)
        except ReadFailed as exc:
            raise QueryRejected(f"the query does not resolve: {exc}") from None
        judge_query_tree(tree, policy)
        result: QueryResult = await self._run(str(canonical), _rows)
        return result

    async def _run(
        self, sql: str, call: Callable[..., Any], params: Mapping[str, Any] | None = None
    ) -> Any:
        """Run one tagged statement on this session's connection; stop it in the engine if
        the time runs out or the caller is cancelled."""
        reader = self._reader
        tag = uuid.uuid4().hex
        text = _TAG.format(tag) + sql
        loop = asyncio.get_running_loop()
        limits = reader.limits
        future = loop.run_in_executor(reader._pool, call, self._client, text, params, limits)
        self.running = future
        try:
            return await asyncio.wait_for(asyncio.shield(future), limits.timeout_s)
        except TimeoutError:
            await asyncio.shield(self._stop(tag, future))
            raise ReadTimeout(
                f"the read took longer than {limits.timeout_s:g} s and was cancelled"
            ) from None
        except asyncio.CancelledError:
            await asyncio.shield(self._stop(tag, future))
            raise

    async def _stop(self, tag: str, future: asyncio.Future[Any]) -> None:
        await self._reader._kill(tag)
        await asyncio.wait([future], timeout=_KILL_GRACE_S)
        if future.done() and not future.cancelled():
            future.exception()  # retrieved: its error is the cancellation we asked for


def _readonly(client: Any) -> int:
    return int(client.query("SELECT toUInt8(getSetting('readonly'))").result_rows[0][0])


def _call(client: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return getattr(client, method)(*args, **kwargs)
    except Exception as exc:
        message = _engine_message(exc)
        if message.startswith(_CANCELLED_CODES):
            raise ReadTimeout(f"the read was stopped in the engine: {message}") from None
        raise ReadFailed(message) from None


def _rows(
    client: Any, text: str, params: Mapping[str, Any] | None, limits: ReadLimits
) -> QueryResult:
    result = _call(client, "query", text, parameters=params or None)
    cap = limits.max_result_rows
    # Column by column: numbers and strings pass as they are (a history answer is
    # 10,000 rows of them); only other types are converted value by value. This is
    # the Python work a read does while holding the GIL the worker also needs.
    columns = [
        list(column[:cap]) if kind.python_type in _JSON_NATIVE else jsonable(column[:cap])
        for kind, column in zip(result.column_types, result.result_columns, strict=True)
    ]
    body: QueryResult = {
        "columns": list(result.column_names),
        "rows": [list(row) for row in zip(*columns, strict=True)],
    }
    if result.row_count > cap:
        body["truncated"] = True
    return body


def _first_row(client: Any, text: str, params: Mapping[str, Any] | None, limits: ReadLimits) -> Any:
    return _call(client, "query", text, parameters=params or None).result_rows[0]


def _raw_text(client: Any, text: str, params: Mapping[str, Any] | None, limits: ReadLimits) -> str:
    data = _call(client, "raw_query", text, parameters=params or None, fmt=None)
    return bytes(data).decode("utf-8", errors="replace")


def _engine_message(exc: BaseException) -> str:
    """The engine's first line, without clickhouse-connect's wrapping or the server version."""
    text = str(exc).strip()
    start = text.find("Code: ")
    if start > 0:
        text = text[start:]
    line = text.splitlines()[0] if text else type(exc).__name__
    cut = line.find(" (version ")
    return (line[:cut] if cut > 0 else line)[:1000]


def jsonable(row: Any) -> list[Any]:
    """A result row as JSON values: dates as ISO 8601, everything unknown as text."""
    return [_jsonable(v) for v in row]


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
