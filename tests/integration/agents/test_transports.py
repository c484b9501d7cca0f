"""Transports, identity, framing limits and presence, with real sockets and the real broker."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agents.bridge import Bridge
from agents.handshake import make_hello
from agents.simulator.fleet import FleetSimulator
from infra.config import Settings
from schemas.topics import Topics
from tests.support.kafka import Collector, header, wait_until

pytestmark = pytest.mark.integration

A = str(uuid.uuid4())
B = str(uuid.uuid4())


@pytest.fixture
async def sim(settings: Settings) -> AsyncIterator[FleetSimulator]:
    fleet = FleetSimulator(settings.bridge.socket_dir, [A], 0.05, seed=11, keep_sent=True)
    await fleet.start()
    yield fleet
    await fleet.stop()


async def _bridge(settings: Settings, **kw: Any) -> Bridge:
    bridge = Bridge(settings, reconnect_base_s=0.05, poll_interval_s=0.05, **kw)
    await bridge.start()
    return bridge


async def test_a_line_claiming_another_vm_produces_nothing_under_it(
    settings: Settings, topics_ready: Topics, sim: FleetSimulator, collector: Collector
) -> None:
    bridge = await _bridge(settings)
    try:
        await wait_until("bridge connected", lambda: sim.clients(A) == 1)
        forged = json.dumps({"type": "system_metrics", "vmId": B, "metrics": {}}).encode()
        sim.inject(A, forged)
        marker = json.dumps({"type": "system_metrics", "vmId": A, "marker": 1}).encode()
        sim.inject(A, marker)
        await collector.wait_for("the marker", lambda: marker in [r.value for r in collector.raw])
        await collector.wait_for("the DLQ record", lambda: len(collector.dlq) == 1)
    finally:
        await bridge.stop()
    assert collector.for_vm(B) == [] and forged not in [r.value for r in collector.raw]
    dead = json.loads(collector.dlq[0].value)
    assert collector.dlq[0].key == A.encode()
    assert dead["reason"] == "vm_mismatch" and dead["raw"].encode() == forged
    assert dead["origin"]["vm_id"] == A
    assert bridge.rejects_by_reason == {"vm_mismatch": 1}


async def test_a_5_mib_line_is_rejected_and_the_lines_after_it_are_stored(
    settings: Settings, topics_ready: Topics, sim: FleetSimulator, collector: Collector
) -> None:
    assert settings.bridge.max_line == 4 * 1024 * 1024
    bridge = await _bridge(settings)
    try:
        await wait_until("bridge connected", lambda: sim.clients(A) == 1)
        huge = b'{"type":"system_metrics","pad":"' + b"x" * (5 * 1024 * 1024) + b'"}'
        assert sim.inject(A, huge) == 1
        # The simulator skips a client with more than 1 MiB unsent, so the lines
        # after it are written once the bridge has read (and rejected) the big one.
        await wait_until("the big line read", lambda: bridge.rejects == 1, 10.0)
        after = [json.dumps({"type": "x", "vmId": A, "n": i}).encode() for i in range(3)]
        for line in after:

            def written(ln: bytes = line) -> bool:
                return sim.inject(A, ln) == 1

            await wait_until("room to write", written)
        await collector.wait_for(
            "the lines after it",
            lambda: all(a in [r.value for r in collector.raw] for a in after),
            10.0,
        )
        await collector.wait_for("the DLQ record", lambda: len(collector.dlq) == 1)
    finally:
        await bridge.stop()
    dead = json.loads(collector.dlq[0].value)
    assert dead["reason"] == "line_too_long" and dead["origin"]["length"] == len(huge)
    assert len(dead["raw"]) == 1024
    assert max(len(r.value) for r in collector.raw) < 100_000
    assert bridge.connections == 1  # the connection survived


ENDLESS = b"<endless line>"


class _ScriptedGuest:
    """A VM's socket whose n-th connection writes ``scripts[n]``, chunk by chunk.

    The chunk :data:`ENDLESS` writes the rest of an endless line, 1 MiB at a time
    (at most ``ENDLESS_MAX`` bytes, so a bridge that never hangs up fails the test
    instead of hanging it), until the bridge closes the connection.
    """

    ENDLESS_MAX = 64 * 1024 * 1024

    def __init__(self, path: Path, scripts: list[list[bytes]]) -> None:
        self.path = path
        self.scripts = scripts
        self.server: asyncio.Server | None = None
        self.connections = 0
        self.cut: list[int] = []  # connections the bridge hung up on while we wrote
        self.endless_written = 0

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._client, path=os.fspath(self.path))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = self.connections
        self.connections += 1
        script = self.scripts[n] if n < len(self.scripts) else []
        try:
            for chunk in script:
                if chunk is ENDLESS:
                    while self.endless_written < self.ENDLESS_MAX:
                        writer.write(b"x" * (1024 * 1024))
                        await writer.drain()
                        self.endless_written += 1024 * 1024
                else:
                    writer.write(chunk)
                    await writer.drain()
            await reader.read()  # until the bridge goes away
        except (ConnectionError, OSError):
            self.cut.append(n)
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def test_a_line_past_the_receive_buffer_closes_only_its_connection(
    settings: Settings,
    topics_ready: Topics,
    sim: FleetSimulator,
    collector: Collector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """4-8 MiB: dead-lettered, connection kept; past 8 MiB: one DLQ record, connection closed,
    the unix socket reconnected, and nothing else lost on it or on another VM's connection."""
    assert (settings.bridge.max_line, settings.bridge.max_buffer) == (4 << 20, 8 << 20)
    vm = str(uuid.uuid4())
    good = [json.dumps({"type": "system_metrics", "vmId": vm, "n": i}).encode() for i in range(4)]
    big = b'{"type":"system_metrics","pad":"' + b"y" * (6 << 20) + b'"}'
    start = b'{"type":"system_metrics","vmId":"' + vm.encode() + b'","pad":"'

    def values(of: str) -> list[bytes]:
        return [r.value for r in collector.for_vm(of)]

    def control(of: str) -> list[Any]:
        return [r for r in collector.control if r.key == of.encode()]

    guest = _ScriptedGuest(
        settings.bridge.socket_dir / f"{vm}.socket",
        [
            [good[0] + b"\n", big + b"\n", good[1] + b"\n", start, ENDLESS],
            [good[2] + b"\n" + good[3] + b"\n"],
        ],
    )
    await guest.start()
    bridge = await _bridge(settings)
    try:
        await collector.wait_for("the lines of both connections", lambda: values(vm) == good, 20.0)
        await collector.wait_for("both DLQ records", lambda: len(collector.dlq) == 2)
        marker = json.dumps({"type": "system_metrics", "vmId": A, "marker": 1}).encode()
        assert sim.inject(A, marker) == 1
        await collector.wait_for("the other VM's marker", lambda: marker in values(A))
        await collector.wait_for("3 control records", lambda: len(control(vm)) == 3)
    finally:
        await bridge.stop()
        await guest.stop()

    assert guest.cut == [0] and guest.connections == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a close, not a crash
    assert guest.endless_written < 16 << 20  # hung up soon after 8 MiB, not at our cap
    too_long, overflow = (json.loads(d.value) for d in collector.dlq)
    assert [d.key for d in collector.dlq] == [vm.encode()] * 2
    assert too_long["reason"] == "line_too_long"
    assert too_long["origin"]["length"] == len(big)
    assert overflow["reason"] == "line_overflow"
    assert "connection closed" in overflow["detail"]
    assert overflow["raw"].encode() == (start + b"x" * 1024)[:1024]
    assert overflow["origin"]["length"] > 8 << 20 and overflow["origin"]["transport"] == "unix"
    assert bridge.rejects_by_reason == {"line_too_long": 1, "line_overflow": 1}

    records = collector.for_vm(vm)
    first, second = header(records[0], "conn_id"), header(records[2], "conn_id")
    assert first != second
    assert [header(r, "conn_id") for r in records] == [first, first, second, second]
    assert [(header(r, "conn_id"), header(r, "control")) for r in control(vm)] == [
        (first, b"connected"),
        (first, b"disconnected"),
        (second, b"connected"),
    ]
    # The other VM's connection lost nothing: every line written to it, up to the
    # marker, arrived in order, on the one connection it had.
    got = values(A)
    assert got[: got.index(marker) + 1] == sim.sent[A][: sim.sent[A].index(marker) + 1]
    assert len({header(r, "conn_id") for r in collector.for_vm(A)}) == 1


async def test_a_line_past_the_receive_buffer_disconnects_a_tcp_agent(
    settings: Settings,
    topics_ready: Topics,
    collector: Collector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings.replace(bridge={"tcp_host": "127.0.0.1", "tcp_port": 0})
    bridge = await _bridge(settings)
    host, port = bridge.listeners[0].address[:2]
    good = json.dumps({"type": "system_metrics", "vmId": B, "ok": 1}).encode()

    def values(of: str) -> list[bytes]:
        return [r.value for r in collector.for_vm(of)]

    _, writer = await asyncio.open_connection(host, port)
    written = 0
    try:
        writer.write(make_hello(settings.bridge.agent_secret.reveal(), B) + good + b"\n")
        with pytest.raises(OSError):  # the bridge hung up: ConnectionResetError, BrokenPipeError
            while written < 64 << 20:
                writer.write(b"z" * (1 << 20))
                await writer.drain()
                written += 1 << 20
        await wait_until("the bridge let go of it", lambda: bridge.active_connections == 0)
        await collector.wait_for("the line and the DLQ record", lambda: len(collector.dlq) == 1)
        await collector.wait_for("the good line", lambda: values(B) == [good])
    finally:
        writer.close()
        await bridge.stop()
    assert written < 16 << 20
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    dead = json.loads(collector.dlq[0].value)
    assert dead["reason"] == "line_overflow" and dead["origin"]["transport"] == "tcp"
    assert dead["raw"].encode() == b"z" * 1024
    assert bridge.rejects_by_reason == {"line_overflow": 1}


async def test_presence_records_bracket_a_connection(
    settings: Settings, topics_ready: Topics, sim: FleetSimulator, collector: Collector
) -> None:
    bridge = await _bridge(settings)
    try:
        await collector.wait_for("some lines", lambda: len(collector.for_vm(A)) >= 3)
        await sim.remove(A)
        await collector.wait_for("disconnected", lambda: len(collector.control) == 2)
    finally:
        await bridge.stop()
    connected, disconnected = collector.control
    assert [header(connected, "control"), header(disconnected, "control")] == [
        b"connected",
        b"disconnected",
    ]
    for rec in (connected, disconnected):
        assert rec.key == A.encode() and rec.value == b""
        assert header(rec, "transport") == b"unix"
        assert header(rec, "conn_id") == header(collector.for_vm(A)[0], "conn_id")
    # Same key, same partition: connected comes before the lines, disconnected after them.
    lines = collector.for_vm(A)
    assert connected.offset < lines[0].offset and disconnected.offset > lines[-1].offset


async def test_tcp_needs_a_signed_hello(
    settings: Settings, topics_ready: Topics, collector: Collector
) -> None:
    settings = settings.replace(bridge={"tcp_host": "127.0.0.1", "tcp_port": 0})
    bridge = await _bridge(settings)
    host, port = bridge.listeners[0].address[:2]
    secret = settings.bridge.agent_secret.reveal()

    async def session(first: bytes, line: bytes) -> bytes:
        """Send the first line and one more; return what the bridge sends back before closing."""
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(first + line + b"\n")
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(100), 3.0)
        finally:
            writer.close()

    try:
        good = json.dumps({"type": "system_metrics", "vmId": A, "ok": 1}).encode()
        _, writer = await asyncio.open_connection(host, port)
        writer.write(make_hello(secret, A) + good + b"\n")
        await collector.wait_for("the signed agent's line", lambda: len(collector.for_vm(A)) == 1)
        rec = collector.for_vm(A)[0]
        assert rec.value == good and header(rec, "transport") == b"tcp"

        # A hello is good once; the same bytes again are a replay.
        replay = make_hello(secret, A, nonce="cd" * 16)
        first = json.dumps({"type": "system_metrics", "vmId": A, "first": 1}).encode()
        _, w1 = await asyncio.open_connection(host, port)
        w1.write(replay + first + b"\n")
        await collector.wait_for("the first use", lambda: len(collector.for_vm(A)) == 2)
        w1.close()
        hellos = {
            "wrong key": make_hello("not-the-secret", B),
            "unsigned": json.dumps(
                {"type": "hello", "vm_id": B, "ts": int(time.time()), "nonce": "ef" * 16}
            ).encode()
            + b"\n",
            "no hello": b"",
            "replay": replay,
        }
        for name, first in hellos.items():
            line = json.dumps({"type": "system_metrics", "vmId": B, "bad": name}).encode()
            if name == "replay":
                line = json.dumps({"type": "system_metrics", "vmId": A, "bad": name}).encode()
            assert await session(first, line) == b"", name  # closed by the bridge
        writer.close()
        await wait_until("refusals counted", lambda: sum(bridge.refused.values()) == 4)
    finally:
        await bridge.stop()
    assert collector.for_vm(B) == [] and len(collector.for_vm(A)) == 2
    assert bridge.refused == {
        "handshake_bad_signature": 1,
        "handshake_unsigned": 1,
        "handshake_missing": 1,
        "handshake_replay": 1,
    }


async def test_tcp_idle_timeout_and_connection_cap(
    settings: Settings, topics_ready: Topics, collector: Collector
) -> None:
    settings = settings.replace(
        bridge={"tcp_host": "127.0.0.1", "tcp_port": 0, "idle_timeout_s": 1.0, "max_connections": 3}
    )
    bridge = await _bridge(settings)
    host, port = bridge.listeners[0].address[:2]
    secret = settings.bridge.agent_secret.reveal()
    conns = []
    try:
        for _ in range(3):
            r, w = await asyncio.open_connection(host, port)
            w.write(make_hello(secret, A) + b'{"partial')
            conns.append((r, w))
        await wait_until("three served", lambda: bridge.active_connections == 3)
        r4, w4 = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(r4.read(10), 3.0) == b""  # over the cap: closed
        w4.close()
        assert bridge.refused == {"connection_cap": 1}
        start = time.monotonic()
        for r, _ in conns:  # silent connections are cut after the idle timeout
            assert await asyncio.wait_for(r.read(10), 5.0) == b""
        idle = time.monotonic() - start
        assert 0.5 < idle < 4.0, idle
        await collector.wait_for("3 truncated lines", lambda: len(collector.dlq) == 3)
        assert {json.loads(d.value)["reason"] for d in collector.dlq} == {"truncated_line"}
    finally:
        for _, w in conns:
            w.close()
        await bridge.stop()


class _SlowServer:
    """A guest that writes half a line and then nothing, forever."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._client, path=os.fspath(self.path))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(b'{"type":"system_metrics","vmId":"never-finished",')
        await reader.read()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()


async def test_1000_slow_connections_do_not_starve_a_normal_vm(
    settings: Settings, topics_ready: Topics, sim: FleetSimulator, collector: Collector
) -> None:
    slow = [_SlowServer(settings.bridge.socket_dir / f"{uuid.uuid4()}.socket") for _ in range(1000)]
    for s in slow:
        await s.start()
    bridge = await _bridge(settings)
    try:
        await wait_until("1001 connections", lambda: bridge.active_connections == 1001, 30.0)
        await wait_until("the normal VM's server saw the bridge", lambda: sim.clients(A) == 1)
        delays = []
        for i in range(5):
            marker = json.dumps({"type": "system_metrics", "vmId": A, "probe": i}).encode()
            start = time.monotonic()
            assert sim.inject(A, marker) == 1

            def stored(m: bytes = marker) -> bool:
                return m in [r.value for r in collector.raw]

            await collector.wait_for(f"probe {i}", stored, 5.0)
            delays.append(time.monotonic() - start)
        print(f"probe latency with 1000 slow connections: {[f'{d:.3f}' for d in delays]}")
        assert max(delays) < 1.0
        assert bridge.rejects == 0  # half lines are held, not rejected, while open
    finally:
        await bridge.stop()
        for s in slow:
            await s.stop()


async def test_metrics_endpoint_shows_lines_and_rejects(
    settings: Settings, topics_ready: Topics, sim: FleetSimulator, collector: Collector
) -> None:
    import socket as _socket

    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bridge = await _bridge(settings.replace(bridge={"metrics_port": port}))
    try:
        await wait_until("lines acknowledged", lambda: bridge.lines >= 3)
        sim.inject(A, json.dumps({"vmId": B}).encode())
        await wait_until("the reject", lambda: bridge.rejects == 1)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as resp,
        ):
            text = await resp.text()
    finally:
        await bridge.stop()
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    # read from the bridge's own counts when scraped; they only grow after the scrape
    assert 3 <= values["vmpulse_bridge_lines_total"] <= bridge.lines
    assert 0 < values["vmpulse_bridge_bytes_total"] <= bridge.bytes
    assert values['vmpulse_bridge_rejects_total{reason="vm_mismatch"}'] == 1
    assert values['vmpulse_bridge_connections_total{transport="unix"}'] == 1
    assert values["vmpulse_bridge_produce_latency_seconds_count"] >= 1
