"""Attacks on the running bridge's admission (issue 10, points 6 and 7): real sockets,
the real broker, the bridge's own counters and its /metrics endpoint.

- Idle TCP connections that never say hello, from many peer addresses, cannot lock
  agents out: they live in a small identifying pool (per-peer cap, oldest evicted)
  and never take an agent slot; agents connect and their lines reach Kafka.
- A VM that opens more connections than its cap loses its own oldest, nothing else.
- In the socket directory a symlink, a second hard link and a socket of a foreign
  owner are refused and counted; the real VM's socket is read as usual.
- The development agent secret is refused on a listener beyond loopback.

Attackers connect from 127.0.0.2 and up (the loopback range is all this machine's),
agents from 127.0.0.1, so per-peer caps can be told apart.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from agents.bridge import Bridge
from agents.handshake import make_hello
from agents.simulator.fleet import FleetSimulator
from infra.config import DEV_AGENT_SECRET, ConfigError, Secret, Settings
from schemas.topics import Topics
from tests.e2e.support import VMPULSE
from tests.support.kafka import Collector, wait_until

pytestmark = pytest.mark.integration

A, B, C, D = (str(uuid.uuid4()) for _ in range(4))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _metrics(port: int) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def _refused(transport: str, reason: str) -> str:
    return f'vmpulse_bridge_refused_connections_total{{reason="{reason}",transport="{transport}"}}'


@pytest.fixture
async def tcp_bridge(settings: Settings, topics_ready: Topics) -> AsyncIterator[Bridge]:
    bridge = Bridge(
        settings.replace(
            bridge={
                "tcp_host": "127.0.0.1",
                "tcp_port": 0,
                "max_connections": 5,
                "max_identifying": 16,
                "max_identifying_per_peer": 4,
                "hello_timeout_s": 60.0,
                "max_connections_per_vm": 2,
                "metrics_port": _free_port(),
            }
        ),
        poll_interval_s=0.05,
    )
    await bridge.start()
    yield bridge
    await bridge.stop()


async def _agent(bridge: Bridge, vm: str, line: bytes) -> tuple[Any, asyncio.StreamWriter]:
    host, port = bridge.listeners[0].address[:2]
    reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.1", 0))
    writer.write(make_hello(bridge.settings.bridge.agent_secret.reveal(), vm) + line + b"\n")
    await writer.drain()
    return reader, writer


async def test_idle_connections_from_many_peers_do_not_lock_agents_out(
    tcp_bridge: Bridge, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = tcp_bridge
    attack_started = time.monotonic()
    host, port = bridge.listeners[0].address[:2]
    attackers: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    peers = [f"127.0.0.{i}" for i in range(2, 22)]  # 20 peers x 10 silent connections
    try:
        for peer in peers:
            for _ in range(10):
                attackers.append(await asyncio.open_connection(host, port, local_addr=(peer, 0)))
        # Each peer: 4 in the identifying pool, 6 refused; the pool holds 16, so
        # 64 of the 80 admitted were evicted by newer ones.
        await wait_until(
            "every attacker handled",
            lambda: sum(bridge.refused.values()) == 20 * 6 + 64,
            10.0,
        )
        assert bridge.refused == {"identify_peer_cap": 120, "identify_evicted": 64}
        # 184 refusals, but at most one warning per reason a second in the log.
        warnings = [r for r in caplog.records if r.name == "agents.listeners"]
        assert len(warnings) <= 2 * (time.monotonic() - attack_started + 1), len(warnings)
        assert bridge.listeners[0].admission.identifying == 16
        assert bridge.active_connections == 0  # no agent slot taken by a silent peer

        lines = {vm: json.dumps({"type": "system_metrics", "vmId": vm}).encode() for vm in (A, B)}
        agents = [await _agent(bridge, vm, line) for vm, line in lines.items()]
        await collector.wait_for(
            "both agents' lines in Kafka",
            lambda: all(
                [r.value for r in collector.for_vm(vm)] == [ln] for vm, ln in lines.items()
            ),
            10.0,
        )
        assert bridge.active_connections == 2
        # The first agent found the pool full and pushed out its oldest silent peer;
        # the second found the place the first left when it was identified.
        await wait_until(
            f"one more evicted: {bridge.refused}",
            lambda: bridge.refused["identify_evicted"] == 65,
        )
        # The silent connections that were refused or evicted are closed by the bridge.
        closed = 0
        for reader, _ in attackers:
            try:
                if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                    closed += 1
            except TimeoutError:
                pass
        assert closed == 120 + 65
        values = await _metrics(bridge.settings.bridge.metrics_port or 0)
        assert values[_refused("tcp", "identify_peer_cap")] == 120
        assert values[_refused("tcp", "identify_evicted")] == 65
        for _, writer in agents:
            writer.close()
    finally:
        for _, writer in attackers:
            writer.close()


async def test_silent_connections_are_cut_at_the_hello_timeout(
    settings: Settings, topics_ready: Topics
) -> None:
    bridge = Bridge(
        settings.replace(bridge={"tcp_host": "127.0.0.1", "tcp_port": 0, "hello_timeout_s": 1.0})
    )
    await bridge.start()
    conns = []
    try:
        host, port = bridge.listeners[0].address[:2]
        conns = [await asyncio.open_connection(host, port) for _ in range(3)]
        conns[0][1].write(b'{"type":"hello"')  # half a hello does not buy time either
        start = time.monotonic()
        for reader, _ in conns:
            assert await asyncio.wait_for(reader.read(10), 5.0) == b""
        assert 0.5 < time.monotonic() - start < 4.0
        await wait_until("counted", lambda: bridge.refused.get("handshake_timeout") == 3)
    finally:
        for _, writer in conns:
            writer.close()
        await bridge.stop()


async def test_a_vm_past_its_connection_cap_loses_its_own_oldest_connection(
    tcp_bridge: Bridge, collector: Collector
) -> None:
    bridge = tcp_bridge
    first, second, third = (
        json.dumps({"type": "system_metrics", "vmId": A, "n": n}).encode() for n in range(3)
    )
    other = json.dumps({"type": "system_metrics", "vmId": B}).encode()
    conns = [await _agent(bridge, B, other)]
    try:
        for line in (first, second):
            conns.append(await _agent(bridge, A, line))

            def arrived(ln: bytes = line) -> bool:
                return ln in [r.value for r in collector.raw]

            await collector.wait_for("the line", arrived)
        conns.append(await _agent(bridge, A, third))
        assert await asyncio.wait_for(conns[1][0].read(10), 5.0) == b""  # A's oldest: closed
        await collector.wait_for(
            "A's third line", lambda: third in [r.value for r in collector.raw]
        )
        assert bridge.refused == {"vm_connection_cap": 1}
        await wait_until("3 connections left", lambda: bridge.active_connections == 3)
        assert [r.value for r in collector.for_vm(A)] == [first, second, third]
        assert [r.value for r in collector.for_vm(B)] == [other]
    finally:
        for _, writer in conns:
            writer.close()


class _Guest:
    """A VM's virtio-serial socket as QEMU serves it; counts the bridge's connections."""

    def __init__(self, path: Any) -> None:
        self.path = path
        self.clients = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._client, path=os.fspath(self.path))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients += 1
        writer.write(b'{"type":"keep_alive","sequence_number":1}\n')
        await reader.read()
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def test_links_and_foreign_sockets_in_the_socket_dir_are_refused_and_counted(
    settings: Settings, topics_ready: Topics, collector: Collector
) -> None:
    sim = FleetSimulator(settings.bridge.socket_dir, [A], 0.05, seed=3)
    await sim.start()
    sock_a = sim.socket_path(A)
    # <B>.socket points at VM A's socket: A's lines would be filed under B.
    (settings.bridge.socket_dir / f"{B}.socket").symlink_to(sock_a)
    # <C>.socket is a socket some other user created.
    foreign = _Guest(settings.bridge.socket_dir / f"{C}.socket")
    await foreign.start()
    os.chown(foreign.path, 65534, 65534)
    port = _free_port()
    bridge = Bridge(
        settings.replace(bridge={"metrics_port": port}), poll_interval_s=0.05, reconnect_base_s=0.05
    )
    await bridge.start()
    try:
        await collector.wait_for("A's lines", lambda: len(collector.for_vm(A)) >= 5)
        # <D>.socket: a second name for A's socket, made while the bridge reads A.
        os.link(sock_a, settings.bridge.socket_dir / f"{D}.socket")
        await wait_until("the hard link refused", lambda: "hardlink" in bridge.refused)
        seen = len(collector.for_vm(A))
        await collector.wait_for("A goes on", lambda: len(collector.for_vm(A)) >= seen + 5)
        values = await _metrics(port)
        clients = sim.clients(A)
    finally:
        await bridge.stop()
        await foreign.stop()
        await sim.stop()
    assert bridge.refused == {"symlink": 1, "foreign_owner": 1, "hardlink": 1}  # once each
    assert values[_refused("unix", "symlink")] == 1
    assert values[_refused("unix", "foreign_owner")] == 1
    assert values[_refused("unix", "hardlink")] == 1
    assert clients == 1 and foreign.clients == 0  # no connection through B, C or D
    keys = {r.key.decode() for r in [*collector.raw, *collector.control]}
    assert keys == {A}


async def test_a_foreign_owner_may_be_configured(
    settings: Settings, topics_ready: Topics, collector: Collector
) -> None:
    settings.bridge.socket_dir.mkdir(parents=True)
    guest = _Guest(settings.bridge.socket_dir / f"{C}.socket")
    await guest.start()
    os.chown(guest.path, 65534, 65534)
    bridge = Bridge(
        settings.replace(bridge={"socket_owners": frozenset({65534})}), poll_interval_s=0.05
    )
    await bridge.start()
    try:
        await collector.wait_for("C's line", lambda: len(collector.for_vm(C)) == 1)
    finally:
        await bridge.stop()
        await guest.stop()
    assert bridge.refused == {}


def test_the_development_secret_is_refused_beyond_loopback(settings: Settings) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.7"):
        with pytest.raises(ConfigError, match="VMPULSE_AGENT_SECRET"):
            Bridge(settings.replace(bridge={"tcp_host": host}))
    Bridge(settings.replace(bridge={"tcp_host": "127.0.0.1"}))  # loopback: development is fine
    Bridge(settings.replace(bridge={"tcp_host": "0.0.0.0", "agent_secret": Secret("s" * 64)}))
    assert settings.bridge.agent_secret.reveal() == DEV_AGENT_SECRET


def test_vmpulse_bridge_refuses_to_start_with_the_development_secret_on_all_interfaces(
    settings: Settings,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
    env.update(
        VMPULSE_KAFKA_BOOTSTRAP=str(settings.kafka.bootstrap),
        VMPULSE_DATA_DIR=str(settings.data_dir),
        VMPULSE_AGENT_TCP_ADDR="0.0.0.0:0",
    )
    out = subprocess.run([VMPULSE, "bridge"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "VMPULSE_AGENT_SECRET" in out.stderr and "0.0.0.0" in out.stderr
    assert DEV_AGENT_SECRET not in out.stderr + out.stdout  # the key itself is never echoed
