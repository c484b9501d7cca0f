"""The real agent's other messages, unknown types and hostile guests, end to end (issue 10).

Everything real: guests are unix sockets in the socket directory (the
hypervisor's ``<vm-uuid>.socket``, the bridge connects to them), the bridge,
the session Kafka broker, the worker on the session chDB store, a gateway and
the VM owner's Socket.IO client. The lines are what the InfiniService agent
writes (tests.support.examples, checked byte for byte in
tests/unit/schemas/test_agent_status.py).

Shown: connection_status and circuit_breaker_state are stored agent events and
ping is presence, none of them in the DLQ; a message of an unknown type is
stored as ``unrecognized`` and counted; malformed lines are still DLQ records
with their reason; a VM that only says connection_status and ping stays online
while it pings and goes offline when it stops; a guest writing garbage as fast
as it can gets every line accounted for but only a few log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust
import pytest

from agents.bridge import Bridge
from infra.config import Settings
from schemas.directory import User, Vm
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore
from tests.support import examples as ex
from tests.support.kafka import collect, reading_from_start

from .browsers import Browser, gateway_with, running_worker, until

pytestmark = pytest.mark.integration

INTERVAL_S = 0.5  # the agent interval presence uses: offline after 3 silent ones (1.5 s)


class Guest:
    """One VM's agent port: a unix socket the bridge connects to; lines go to that connection."""

    def __init__(self, socket_dir: Path) -> None:
        self.vm_id = str(uuid.uuid4())
        self.path = socket_dir / f"{self.vm_id}.socket"
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._client, path=os.fspath(self.path))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(OSError):
            while await reader.read(4096):  # the host writes nothing the test needs
                pass

    async def send(self, *lines: bytes) -> None:
        await until(lambda: bool(self.writers), f"the bridge connected to {self.vm_id}")
        writer = self.writers[-1]
        writer.write(b"".join(line + b"\n" for line in lines))
        await writer.drain()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class Stack:
    def __init__(self, app: faust.App, bridge: Bridge, browser: Browser, store: ClickHouseStore):
        self.app = app
        self.bridge = bridge
        self.browser = browser
        self.store = store

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.app.vmpulse_stats)

    def vm_states(self, vm_id: str) -> list[str | None]:
        return [
            p["data"]["agentState"]
            for name, p in self.browser.events
            if name == "ns:vms:update" and p["data"]["vmId"] == vm_id
        ]

    async def rows(self, sql: str) -> list[list[Any]]:
        return [list(r) for r in (await self.store.query(sql))["rows"]]

    async def wait_rows(self, sql: str, expected: list[list[Any]], what: str) -> None:
        deadline = time.monotonic() + 30
        got: list[list[Any]] = []
        while time.monotonic() < deadline:
            got = await self.rows(sql)
            if got == expected:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what}: got {got!r}, want {expected!r}")


@pytest.fixture
async def guests(settings: Settings) -> AsyncIterator[dict[str, Guest]]:
    settings.bridge.socket_dir.mkdir(parents=True, exist_ok=True)
    made = {name: Guest(settings.bridge.socket_dir) for name in ("mixed", "pinger", "hostile")}
    for guest in made.values():
        await guest.start()
    yield made
    for guest in made.values():
        await guest.stop()


@pytest.fixture
async def stack(
    settings: Settings,
    topics_ready: Topics,
    chdb_store: ClickHouseStore,
    guests: dict[str, Guest],
) -> AsyncIterator[Stack]:
    fast = settings.replace(worker={"agent_interval_s": INTERVAL_S})
    directory: list[User | Vm] = [User(id="olga")]
    directory += [Vm(id=g.vm_id, owner="olga") for g in guests.values()]
    async with gateway_with(fast, topics_ready, directory) as gw:
        browser = Browser("olga")
        await browser.connect(fast, gw.url)
        try:
            async with running_worker(fast, chdb_store) as app:
                bridge = Bridge(fast, reconnect_base_s=0.05)
                await bridge.start()
                try:
                    yield Stack(app, bridge, browser, chdb_store)
                finally:
                    await bridge.stop()
        finally:
            await browser.sio.disconnect()


async def _dlq(settings: Settings, topics: Topics, vm_id: str, count: int) -> list[Any]:
    async with reading_from_start(settings, (topics.agent_dlq,)) as consumer:
        return await collect(consumer, count, 30, keep=lambda r: r.key == vm_id.encode())


async def test_status_lines_are_events_unknown_types_are_counted_malformed_lines_dead_lettered(
    settings: Settings, topics_ready: Topics, stack: Stack, guests: dict[str, Guest]
) -> None:
    vm = guests["mixed"].vm_id
    now = time.time()
    unknown = (
        b'{"payload":{"gpu":[{"id":0,"util":41.5}]},"timestamp":' + str(int(now)).encode()
        + b',"type":"gpu_metrics","vm_id":"' + vm.encode() + b'"}'
    )  # fmt: skip
    bad_ping = b'{"sequence":"soon","type":"ping"}'
    cut = b'{"details":"VirtIO connection lost","state":'
    await guests["mixed"].send(
        ex.line(ex.d2_connection_status(vm, now)),
        ex.line(ex.d2_ping(now)),
        ex.line(ex.d2_circuit_breaker_state(now + 1, state="Open")),
        unknown,
        bad_ping,
        cut,
        ex.line(ex.d2_circuit_breaker_state(now + 2, state="Closed")),
        ex.line(ex.d2_keep_alive(1, now + 2)),
    )
    await stack.wait_rows(
        "SELECT kind, message_type, state, severity FROM agent_events "
        f"WHERE vm_id = '{vm}' ORDER BY kafka_offset",
        [
            ["connection_status", "connection_status", "connected", "info"],
            ["circuit_breaker_state", "circuit_breaker_state", "Open", "error"],
            ["unrecognized", "gpu_metrics", None, "warn"],
            ["circuit_breaker_state", "circuit_breaker_state", "Closed", "info"],
        ],
        "the agent events of the mixed VM",
    )
    ((details, message),) = await stack.rows(
        f"SELECT details, message FROM agent_events WHERE vm_id = '{vm}' AND kind = 'unrecognized'"
    )
    assert details == unknown.decode()  # the whole line, for whoever adds the type later
    assert message == "message of unrecognized type 'gpu_metrics'"
    ((breaker,),) = await stack.rows(
        f"SELECT details FROM agent_events WHERE vm_id = '{vm}' AND state = 'Open'"
    )
    assert json.loads(breaker) == {
        "failure_count": 5,
        "last_failure_time": int(now + 1) - 2,
        "recovery_eta_seconds": 30,
    }

    records = await _dlq(settings, topics_ready, vm, 2)
    got = sorted((json.loads(r.value)["reason"], json.loads(r.value)["raw"]) for r in records)
    assert got == [("invalid_json", cut.decode()), ("schema_violation", bad_ping.decode())]
    # counted: the unknown type as unrecognized, the six good lines as stored, two rejects
    await until(lambda: stack.stats["unrecognized"] >= 1, "the unrecognized line counted")
    assert stack.stats["unrecognized"] == 1
    assert stack.stats["rejected"] == 2
    assert stack.stats["stored"] == 6
    assert stack.bridge.rejects == 0


async def test_connection_status_and_ping_keep_a_vm_online_until_it_goes_quiet(
    stack: Stack, guests: dict[str, Guest]
) -> None:
    pinger = guests["pinger"]
    vm = pinger.vm_id
    await pinger.send(ex.line(ex.d2_connection_status(vm, time.time())))
    await until(lambda: stack.vm_states(vm) == ["online"], "online after connection_status")
    # pings only, for twice the offline timeout (3 intervals): it stays online
    loop = asyncio.get_running_loop()
    until_t = loop.time() + 6 * INTERVAL_S
    last_ping = loop.time()
    while last_ping < until_t:
        await pinger.send(ex.line(ex.d2_ping(time.time())))
        last_ping = loop.time()
        await asyncio.sleep(INTERVAL_S / 2)
    assert stack.vm_states(vm) == ["online"], "a pinging agent went offline"
    await until(lambda: stack.vm_states(vm) == ["online", "offline"], "offline once quiet")
    quiet_for = loop.time() - last_ping
    assert quiet_for >= 3 * INTERVAL_S * 0.9, quiet_for
    # nothing of it in the DLQ; pings are presence only, never rows
    assert stack.stats["rejected"] == 0
    assert await stack.rows(
        f"SELECT kind, count() FROM agent_events WHERE vm_id = '{vm}' GROUP BY kind"
    ) == [["connection_status", 1]]


async def test_a_flooding_guest_is_accounted_for_line_by_line_but_logged_sparingly(
    settings: Settings,
    topics_ready: Topics,
    stack: Stack,
    guests: dict[str, Guest],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hostile = guests["hostile"]
    vm = hostile.vm_id
    other = str(uuid.uuid4())
    garbage = [b'{"type":"ping","sequence":%d' % i for i in range(300)]  # cut off: invalid JSON
    novel = [b'{"type":"novel_%d","n":%d}' % (i % 7, i) for i in range(300)]
    forged = [ex.line(ex.d2_connection_status(other, time.time())) for _ in range(50)]
    with caplog.at_level(logging.WARNING):
        await hostile.send(*garbage, *novel, *forged)
        await until(
            lambda: stack.stats["unrecognized"] >= 300 and stack.bridge.rejects >= 50,
            "every line of the flood accounted for",
            deadline_s=60,
        )
        records = await _dlq(settings, topics_ready, vm, 350)
    reasons = [json.loads(r.value)["reason"] for r in records]
    assert reasons.count("invalid_json") == 300 and reasons.count("vm_mismatch") == 50
    assert stack.stats["unrecognized"] == 300
    await stack.wait_rows(
        f"SELECT count() FROM agent_events WHERE vm_id = '{vm}' AND kind = 'unrecognized'",
        [[300]],
        "300 unrecognized rows",
    )
    about_vm = [r for r in caplog.records if vm in r.getMessage()]
    from_worker = [r for r in about_vm if r.name == "streams.conductor"]
    from_bridge = [r for r in about_vm if r.name == "agents.bridge" and "line" in r.getMessage()]
    print(f"log lines about the flooding VM: worker {len(from_worker)}, bridge {len(from_bridge)}")
    # 650 refused or unrecognized lines; each stage writes its burst (5), plus one a
    # 10 s refill if the flood spans one
    assert 1 <= len(from_worker) <= 7 and 1 <= len(from_bridge) <= 7


async def test_a_long_malformed_line_is_dead_lettered_whole_and_the_next_line_stored(
    settings: Settings, topics_ready: Topics, stack: Stack, guests: dict[str, Guest]
) -> None:
    # 3 MiB is within the 4 MiB line limit; its DLQ record (the line in JSON) is larger than
    # Kafka's default record batch (1 MiB), so producer and topic must both allow it
    vm = guests["mixed"].vm_id
    now = time.time()
    long_bad = b'{"type":"system_metrics","pad":"' + b"x" * (3 * 1024 * 1024)
    await guests["mixed"].send(long_bad, ex.line(ex.d2_connection_status(vm, now)))
    await stack.wait_rows(
        f"SELECT kind FROM agent_events WHERE vm_id = '{vm}'",
        [["connection_status"]],
        "the line after the long one",
    )
    (record,) = await _dlq(settings, topics_ready, vm, 1)
    dead = json.loads(record.value)
    assert dead["reason"] == "invalid_json"
    assert dead["raw"] == long_bad.decode()
