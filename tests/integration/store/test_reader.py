"""The read side against chDB: the policy on the engine's parse, readonly, limits, cancellation.

Everything runs on the session's chDB engine through clickhouse-connect, as
in `vmpulse up`: the store's writer connection and the reader's own ones.
The running gateway is attacked the same way over HTTP in
tests/integration/gateway/test_admin_sql.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.clickhouse import ClickHouseStore
from store.exceptions import QueryRejected, ReadFailed, ReadTimeout
from store.reader import Reader, ReadLimits
from store.reader_grants import render_reader_grants
from store.sql_policy import DENIED_CATEGORIES, DENIED_PREFIXES
from streams.pipeline import SYSTEM_METRICS_COLUMNS
from tests.support.sql_attacks import ALLOWED, ATTACKS, Traps

pytestmark = pytest.mark.integration

# Burns one core until stopped: 10^12 rows would take hours.
ENDLESS = "SELECT count() FROM numbers(1000000000000) WHERE sipHash64(number) % 7 = 3"


@pytest.fixture
def traps(tmp_path: Path, other_db: str) -> Iterator[Traps]:
    made = Traps.make(tmp_path, other_db)
    yield made
    made.close()


@pytest.mark.parametrize(("template", "message"), ATTACKS, ids=[a[0][:60] for a in ATTACKS])
async def test_attack_is_refused_and_reaches_nothing(
    chdb_reader: Reader, traps: Traps, template: str, message: str
) -> None:
    sql = traps.fill(template)
    async with chdb_reader.session("admin") as read:
        with pytest.raises(QueryRejected) as refused:
            await read.admin_query(sql)
    assert str(refused.value).startswith(message), str(refused.value)
    assert not traps.leaked(str(refused.value))
    traps.untouched()


@pytest.mark.parametrize(("template", "rows"), ALLOWED, ids=[a[0][:60] for a in ALLOWED])
async def test_reads_of_the_metric_data_run(
    chdb_reader: Reader, traps: Traps, template: str, rows: list[list[object]] | None
) -> None:
    async with chdb_reader.session("admin") as read:
        result = await read.admin_query(traps.fill(template))
    if rows is not None:
        assert result["rows"] == rows
    assert isinstance(result["columns"], list)


async def test_the_engine_itself_holds_the_connection_read_only(chdb_reader: Reader) -> None:
    """Past the policy, the session refuses writes and setting changes on its own."""
    async with chdb_reader.session("admin") as read:
        got = await read.query(
            "SELECT getSetting('readonly'), getSetting('max_threads'), "
            "getSetting('max_result_rows')"
        )
        assert got["rows"] == [[1, 1, 10_000]]
        for sql in (
            "INSERT INTO system_metrics (vm_id) VALUES ('x')",
            "SET max_execution_time = 0",
            "SELECT 1 SETTINGS max_memory_usage = 0",
            "CREATE TABLE evil (a UInt8) ENGINE = Memory",
            "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        ):
            with pytest.raises(ReadFailed, match=r"READONLY|readonly"):
                await read.query(sql)


async def test_rows_beyond_the_cap_are_cut_and_said_so(chdb_reader: Reader) -> None:
    async with chdb_reader.session("admin") as read:
        result = await read.admin_query("SELECT number FROM numbers(50000)")
    assert len(result["rows"]) == 10_000 and result["truncated"] is True


async def test_memory_is_capped_in_the_engine(chdb_store: ClickHouseStore) -> None:
    reader = Reader(chdb_store.url, ReadLimits(concurrency=1, max_memory_bytes=50 << 20))
    await reader.start()
    try:
        async with reader.session("admin") as read:
            with pytest.raises(ReadFailed, match=r"MEMORY_LIMIT_EXCEEDED|memory limit"):
                await read.admin_query("SELECT groupArray(number) FROM numbers(50000000)")
    finally:
        reader.close()


def _cpu_rate(seconds: float) -> float:
    """Core-seconds per second this process (chDB's threads included) burns over ``seconds``."""
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)  # measuring a rate over wall time, not waiting for a condition
    return (time.process_time() - cpu0) / (time.monotonic() - wall0)


async def _running_reads(store: ClickHouseStore) -> int:
    result = await store.query(
        "SELECT count() FROM system.processes WHERE query LIKE '/* vmpulse-read %' "
        "AND query NOT LIKE '%system.processes%'"
    )
    return int(result["rows"][0][0])


async def test_a_read_past_its_time_is_stopped_in_the_engine(
    chdb_store: ClickHouseStore,
) -> None:
    """The time limit cancels the statement in the engine, not only the await.

    The engine's own limit is set far away (300 s), so what stops the query is
    the reader's KILL QUERY; the process's CPU rate shows it no longer burns.
    """
    limits = ReadLimits(concurrency=1, timeout_s=2.0, max_execution_time_s=300)
    reader = Reader(chdb_store.url, limits)
    await reader.start()
    try:
        loop = asyncio.get_running_loop()
        async with reader.session("admin") as read:
            task = asyncio.create_task(read.admin_query(ENDLESS))
            deadline = loop.time() + 5
            while await _running_reads(chdb_store) == 0:
                assert loop.time() < deadline, "the read never started"
                await asyncio.sleep(0.05)
            busy = await loop.run_in_executor(None, _cpu_rate, 1.0)
            with pytest.raises(ReadTimeout, match="cancelled"):
                await task
        assert reader.cancelled == 1
        deadline = loop.time() + 10
        while await _running_reads(chdb_store):
            assert loop.time() < deadline, "the engine still runs the cancelled read"
            await asyncio.sleep(0.05)
        idle = await loop.run_in_executor(None, _cpu_rate, 1.0)
        print(f"\nCPU while the read ran {busy:.2f} core, after its cancel {idle:.2f} core")
        assert idle < busy / 2  # a shared machine: compare with itself, not a fixed figure
        assert reader.slots.in_flight == 0
        async with reader.session("admin") as read:  # its connection serves again
            assert (await read.admin_query("SELECT 1"))["rows"] == [[1]]
    finally:
        reader.close()


async def test_the_engine_limit_stops_a_read_on_its_own(chdb_store: ClickHouseStore) -> None:
    limits = ReadLimits(concurrency=1, timeout_s=60, max_execution_time_s=1)
    reader = Reader(chdb_store.url, limits)
    await reader.start()
    try:
        started = time.monotonic()
        async with reader.session("admin") as read:
            with pytest.raises(ReadTimeout, match=r"TIMEOUT_EXCEEDED|Timeout exceeded"):
                await read.admin_query(ENDLESS)
        assert time.monotonic() - started < 10
        assert reader.cancelled == 0  # the engine's own max_execution_time did it
    finally:
        reader.close()


async def test_a_cancelled_caller_stops_its_read_in_the_engine(
    chdb_store: ClickHouseStore,
) -> None:
    reader = Reader(chdb_store.url, ReadLimits(concurrency=1, timeout_s=60))
    await reader.start()
    try:
        loop = asyncio.get_running_loop()

        async def read_forever() -> None:
            async with reader.session("admin") as read:
                await read.admin_query(ENDLESS)

        task = asyncio.create_task(read_forever())
        deadline = loop.time() + 5
        while await _running_reads(chdb_store) == 0:
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = loop.time() + 10
        while await _running_reads(chdb_store) or reader.slots.in_flight:
            assert loop.time() < deadline, "the cancelled read still runs"
            await asyncio.sleep(0.05)
        assert reader.cancelled == 1
    finally:
        reader.close()


async def test_inserts_do_not_wait_for_a_long_read(chdb_store: ClickHouseStore) -> None:
    """The writer's connection and thread are not the reader's."""
    reader = Reader(chdb_store.url, ReadLimits(concurrency=1, timeout_s=30))
    await reader.start()
    try:
        vm = f"vm-{uuid.uuid4().hex[:8]}"
        t0 = dt.datetime.now(dt.UTC)
        base = dict.fromkeys(SYSTEM_METRICS_COLUMNS)
        base.update(vm_id=vm, received_at=t0, ts_source="agent", dialect=1, cpu_cores_usage=[])
        base.update(kafka_partition=0)
        loop = asyncio.get_running_loop()
        async with reader.session("admin") as read:
            task = asyncio.create_task(read.admin_query(ENDLESS))
            deadline = loop.time() + 5
            while await _running_reads(chdb_store) == 0:
                assert loop.time() < deadline
                await asyncio.sleep(0.05)
            slowest = 0.0
            for i in range(5):
                row = dict(base, ts=t0 + dt.timedelta(seconds=i), kafka_offset=i)
                started = time.monotonic()
                await chdb_store.insert(
                    "system_metrics",
                    [tuple(row[c] for c in SYSTEM_METRICS_COLUMNS)],
                    SYSTEM_METRICS_COLUMNS,
                    token=None,
                )
                slowest = max(slowest, time.monotonic() - started)
            assert not task.done(), "the read should still be running"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        print(f"\nslowest insert while a read ran: {slowest * 1000:.0f} ms")
        assert slowest < 2.0
        counted = await chdb_store.query(f"SELECT count() FROM system_metrics WHERE vm_id='{vm}'")
        assert counted["rows"] == [[5]]
    finally:
        reader.close()


# Functions whose name, or description, says they touch what a read must not reach.
# Each is denied, or reviewed below as harmless; a newer engine that adds one fails
# here until someone has looked at it.
_RISKY_NAME = re.compile(
    r"file|disk|host|server|url|http|keeper|model|path|remote|cert|kernel|macro|socket"
    r"|cluster|env|exec|shell|command|script|process|secret|password|credential",
    re.IGNORECASE,
)
_RISKY_TEXT = re.compile(
    r"reads? (a |the |from )?files?|file ?system|host ?name|server'?s? (config|setting)"
    r"|connects?|connection to|remote (server|host)|zookeeper|keeper|certificate|kernel"
    r"|dictionar|macro|external (program|process|command|service|model)|http request"
    r"|environment variable|executes? (a |an )?(command|program|script)|LLM|provider",
    re.IGNORECASE,
)
_REVIEWED_HARMLESS = {
    # string functions that take URLs or paths as text; they fetch nothing
    *("URLHash", "URLHierarchy", "URLPathHierarchy", "cutURLParameter", "extractURLParameter"),
    *("extractURLParameterNames", "extractURLParameters", "decodeURLComponent", "path"),
    *("decodeURLFormComponent", "encodeURLComponent", "encodeURLFormComponent", "pathFull"),
    *("base64URLDecode", "base64URLEncode", "tryBase64URLDecode", "basename", "domain"),
    *("domainRFC", "JSONAllPaths", "JSONAllPathsWithTypes", "JSONDynamicPaths"),
    *("JSONDynamicPathsWithTypes", "JSONSharedDataPaths", "JSONSharedDataPathsWithTypes"),
    *("distinctJSONPaths", "distinctJSONPathsAndTypes", "tokens", "naiveBayesNgrams"),
    # "dictionary" of a LowCardinality column, "connections" of the H3 grid
    *("lowCardinalityIndices", "lowCardinalityKeys", "h3Distance"),
    # IN for distributed tables: there are none to reach, and their tables are judged
    *("globalIn", "globalInIgnoreSet", "globalNotIn", "globalNotInIgnoreSet"),
    *("globalNotNullIn", "globalNotNullInIgnoreSet", "globalNullIn", "globalNullInIgnoreSet"),
    # about the query and the session, not the host
    *("currentDatabase", "currentUser", "connectionId", "connection_id", "getSetting"),
    *("getSettingOrDefault", "currentRequestURL", "shardNum", "shardCount", "serverTimeZone"),
    *("serverTimezone", "currentProfiles", "defaultProfiles", "enabledProfiles"),
}


async def test_every_risky_looking_function_is_denied_or_reviewed(chdb_reader: Reader) -> None:
    async with chdb_reader.session("admin") as read:
        rows = (await read.query("SELECT name, description, categories FROM system.functions"))[
            "rows"
        ]
    denied = chdb_reader.denied_functions
    unreviewed = sorted(
        name
        for name, description, _ in rows
        if (_RISKY_NAME.search(name) or _RISKY_TEXT.search(str(description)))
        and name.lower() not in denied
        and not name.lower().startswith(DENIED_PREFIXES)
        and name not in _REVIEWED_HARMLESS
    )
    assert not unreviewed, f"review these and deny or list them as harmless: {unreviewed}"
    for name, _, categories in rows:
        if set(str(categories).split(", ")) & DENIED_CATEGORIES:
            assert name.lower() in denied, name


async def test_the_reader_user_grants_parse(chdb_reader: Reader) -> None:
    """No server runs here: the rendered statements must at least parse on the same engine."""
    statements = render_reader_grants("https://vmpulse_reader:pw@h:8443/vmpulse", ReadLimits())
    assert len(statements) >= 5
    async with chdb_reader.session("admin") as read:
        for statement in statements:
            tree = await read.query(f"EXPLAIN AST {statement}")
            assert tree["rows"], statement
