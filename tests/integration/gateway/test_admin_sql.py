"""Admin SQL and history against the running gateway over HTTP: attacks, caps, rate, timeouts.

A real gateway (real broker for its directory) reads through a real
:class:`~store.reader.Reader` on the session's chDB engine, as in `vmpulse up`.
Every attack of tests/support/sql_attacks.py is sent as an HTTP request; none
may answer anything but a 400 with its reason, and none may reach the file,
the listener, the path or the other database it aims at.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from infra.config import Settings
from schemas.directory import User
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore
from store.reader import Reader, ReadLimits
from tests.integration.gateway.harness import DIRECTORY, put_directory, running, token
from tests.support.sql_attacks import ALLOWED, ATTACKS, Traps

pytestmark = pytest.mark.integration

ENDLESS = "SELECT count() FROM numbers(1000000000000) WHERE sipHash64(number) % 7 = 3"
ADMINS = (User(id="root2", name="Second admin", role="admin"),)


@pytest.fixture
def traps(tmp_path: Path, other_db: str) -> Iterator[Traps]:
    made = Traps.make(tmp_path, other_db)
    yield made
    made.close()


def _auth(settings: Settings, user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, user_id)}"}


async def _post(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], **body: Any
) -> tuple[int, Any, dict[str, str]]:
    async with http.post(f"{url}/api/query", headers=headers, **body) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def _running_reads(store: ClickHouseStore) -> int:
    result = await store.query(
        "SELECT count() FROM system.processes WHERE query LIKE '/* vmpulse-read %' "
        "AND query NOT LIKE '%system.processes%'"
    )
    return int(result["rows"][0][0])


async def _until_reads(store: ClickHouseStore, count: int) -> None:
    async def loop() -> None:
        while await _running_reads(store) != count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), 10)


async def test_every_attack_is_a_400_that_reaches_nothing(
    settings: Settings, topics_ready: Topics, chdb_reader: Reader, traps: Traps
) -> None:
    await put_directory(settings, *DIRECTORY)
    headers = _auth(settings, "root")
    async with running(settings, chdb_reader) as gw, aiohttp.ClientSession() as http:
        for template, message in ATTACKS:
            status, body, _ = await _post(http, gw.url, headers, json={"sql": traps.fill(template)})
            assert status == 400, (template, body)
            assert body["error"].startswith(message), (template, body)
            assert not traps.leaked(str(body)), template
        traps.untouched()
        for template, rows in ALLOWED:
            status, body, _ = await _post(http, gw.url, headers, json={"sql": traps.fill(template)})
            assert status == 200, (template, body)
            if rows is not None:
                assert body["rows"] == rows, template
        async with http.get(f"{gw.url}/metrics") as resp:
            exposition = await resp.text()
    rejected = f'vmpulse_gateway_reads_total{{kind="query",outcome="rejected"}} {len(ATTACKS)}.0'
    assert rejected in exposition


async def test_bodies_that_hide_sql_are_judged_after_decoding(
    settings: Settings, topics_ready: Topics, chdb_reader: Reader, traps: Traps
) -> None:
    """JSON escapes and odd bodies: the policy sees what the engine would run."""
    await put_directory(settings, *DIRECTORY)
    headers = {**_auth(settings, "root"), "Content-Type": "application/json"}
    escaped = b'{"sql": "SELECT * FROM \\u0066ile(\'' + str(traps.secret).encode() + b"')\"}"
    async with running(settings, chdb_reader) as gw, aiohttp.ClientSession() as http:
        status, body, _ = await _post(http, gw.url, headers, data=escaped)
        assert status == 400 and body["error"].startswith("table function file()")
        status, body, _ = await _post(http, gw.url, headers, json={"sql": "SELECT " * 5000})
        assert status == 400 and "longer than" in body["error"]
        for payload in (b"[]", b'{"sql": 1}', b'{"sql": null}', b"\xff", b'{"sql": "x"'):
            status, body, _ = await _post(http, gw.url, headers, data=payload)
            assert status == 400 and body["error"].startswith("Body must be JSON"), payload
        status, body, _ = await _post(http, gw.url, headers, json={"sql": "SELECT"})
        assert status == 400 and body["error"].startswith("not one valid statement")
        status, body, _ = await _post(
            http, gw.url, headers, json={"sql": "SELECT no_such_column FROM system_metrics"}
        )
        assert status == 400 and "UNKNOWN_IDENTIFIER" in body["error"]
    assert not traps.leaked(str(body))


async def test_concurrency_caps_answer_429_with_retry_after(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> None:
    """Two reads in the process, one per user: the third read waits its turn, told when."""
    await put_directory(settings, *DIRECTORY, *ADMINS)
    reader = Reader(chdb_store.url, ReadLimits(concurrency=2, per_user=1, timeout_s=3))
    await reader.start()
    try:
        async with running(settings, reader) as gw, aiohttp.ClientSession() as http:
            root, root2 = _auth(settings, "root"), _auth(settings, "root2")
            endless = {"json": {"sql": ENDLESS}}
            first = asyncio.create_task(_post(http, gw.url, root, **endless))
            await _until_reads(chdb_store, 1)

            status, body, headers = await _post(http, gw.url, root, json={"sql": "SELECT 1"})
            assert status == 429 and body["error"].startswith("too many reads at once")
            assert int(headers["Retry-After"]) >= 1

            second = asyncio.create_task(_post(http, gw.url, root2, **endless))
            await _until_reads(chdb_store, 2)
            history = f"{gw.url}/api/vms/vm-a/metrics"
            async with http.get(history, headers=_auth(settings, "alice")) as resp:
                assert resp.status == 429 and resp.headers["Retry-After"]
                assert (await resp.json())["error"].startswith("the metric store is busy")

            for task in (first, second):
                status, body, _ = await task
                assert status == 504 and "cancelled" in body["error"], body
            await _until_reads(chdb_store, 0)
            async with http.get(history, headers=_auth(settings, "alice")) as resp:
                assert resp.status == 200, await resp.text()
        assert reader.cancelled == 2 and reader.slots.in_flight == 0
    finally:
        reader.close()


async def test_reads_are_rate_limited_per_user(
    settings: Settings, topics_ready: Topics, chdb_reader: Reader
) -> None:
    await put_directory(settings, *DIRECTORY, *ADMINS)
    limited = settings.replace(reads={"requests_per_minute": 3})
    async with running(limited, chdb_reader) as gw, aiohttp.ClientSession() as http:
        root = _auth(settings, "root")
        history = f"{gw.url}/api/vms/vm-a/metrics?v={uuid.uuid4().hex}"
        for _ in range(2):
            status, _, _ = await _post(http, gw.url, root, json={"sql": "SELECT 1"})
            assert status == 200
        async with http.get(history, headers=root) as resp:  # history shares the allowance
            assert resp.status == 200
        status, body, headers = await _post(http, gw.url, root, json={"sql": "SELECT 1"})
        assert status == 429
        assert body == {"error": "Rate limit exceeded: at most 3 reads a minute"}
        assert headers["Retry-After"] == "20"
        status, _, _ = await _post(http, gw.url, _auth(settings, "root2"), json={"sql": "SELECT 1"})
        assert status == 200  # another user has an allowance of their own
        async with http.get(f"{gw.url}/metrics") as resp:
            assert 'kind="query",outcome="rate_limited"} 1.0' in await resp.text()
