"""Slow and silent clients are bounded (issue 10.5), attacked over real sockets with raw frames.

- A websocket that stops reading (receive buffer as small as the kernel
  allows) while its VM's room is busy: the bytes the gateway holds for it
  (outbox plus transport buffer) stay under the bound, it is dropped and
  counted as a slow consumer, and a well-behaved client of the same room gets
  every event.
- The same against ``vmpulse gateway`` as its own process (uvloop): 40 MB sent
  toward a client that reads nothing grow the process's RSS by a fraction.
- A client that reads again just after the drop is told why:
  ``session:ended {reason: "slow consumer"}``, then CLOSE.
- Engine.IO sessions that never send a Socket.IO CONNECT hold a connection
  slot while they wait (a real client is refused ``Too many connections``),
  are closed after the CONNECT deadline and counted; the slot is free again.
- Past the hard ceiling on sessions the handshake itself is refused.
- Reconnects with ``lastPosition`` are rate-limited per user: past the rate,
  ``resync`` without a replay, counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import socketio

from gateway.engine import CLOSE_GRACE_S, EngineSocket
from gateway.server import HEARTBEAT_TICK_S
from gateway.service import GatewayService
from infra.config import Settings
from schemas.events import OutboundEvent
from schemas.topics import Topics
from tests.integration.gateway.harness import (
    DEADLINE_S,
    DIRECTORY,
    Client,
    connect,
    hang_up,
    publish,
    put_directory,
    running,
    token,
    until,
)
from tests.support.rawsocket import RawSocket, eio_open

pytestmark = pytest.mark.integration

BOUND = 1_048_576  # 1 MiB: a client that reads keeps well under it
EVENT_BYTES = 16_384


def _big_samples(count: int, start: int = 0) -> list[OutboundEvent]:
    filler = "x" * EVENT_BYTES
    return [
        OutboundEvent(
            resource="metrics",
            action="update",
            data={"vmId": "vm-a", "n": n, "filler": filler},
            rooms=["vm:vm-a"],
        )
        for n in range(start, start + count)
    ]


async def _metric(gw: GatewayService, name: str) -> float:
    """A sample of the running gateway's /metrics, read over HTTP like a scraper."""
    async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def _subscribed_raw(gw: GatewayService, settings: Settings) -> tuple[RawSocket, EngineSocket]:
    """A raw websocket with a tiny receive buffer, connected as alice, in ``vm:vm-a``."""
    raw = await RawSocket.connect("127.0.0.1", gw.port, rcvbuf=4096)
    sio_sid = await raw.socketio_connect({"token": token(settings, "alice")})
    raw.send_text('420["subscribe",{"vmId":"vm-a"}]')
    ack = await raw.expect("430")
    assert json.loads(ack[3:])[0]["ok"] is True
    eio_sid = gw.sio.manager.eio_sid_from_sid(sio_sid, "/")
    return raw, gw.sio.eio.sockets[eio_sid]


@contextlib.asynccontextmanager
async def _blind_pongs(raw: RawSocket) -> AsyncIterator[None]:
    """Answer pings without reading them: a client that is alive but never reads."""

    async def loop() -> None:
        while True:
            raw.send_text("3")
            await asyncio.sleep(0.2)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _has_updates(client: Client, count: int) -> Callable[[], bool]:
    return lambda: len(client.named("metricsUpdate")) >= count


def _has_answered_resume(client: Client) -> Callable[[], bool]:
    return lambda: bool(client.named("resumed") or client.named("resync"))


async def _watch_backlog(sock: EngineSocket, peaks: list[int]) -> None:
    while not sock.closed:
        peaks.append(sock.backlog())
        await asyncio.sleep(0.002)


async def test_a_websocket_that_stops_reading_is_dropped_as_a_slow_consumer(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    async with running(settings.replace(gateway={"send_buffer_bytes": BOUND})) as gw:
        good = await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        await good.wait_for("connected")
        assert (await good.sio.call("subscribe", {"vmId": "vm-a"}, timeout=5))["ok"]
        raw, sock = await _subscribed_raw(gw, settings)
        peaks: list[int] = []
        watcher = asyncio.create_task(_watch_backlog(sock, peaks))
        # A busy room: rounds of events the good client keeps up with, until the
        # silent one is dropped (10 MB at most: far past its bound and the kernel's
        # buffers).
        total = 0
        async with _blind_pongs(raw):
            while not sock.closed and total < 640:
                await publish(settings, *_big_samples(16, start=total))
                total += 16
                await good.wait(_has_updates(good, total))
        await watcher

        assert [p["n"] for p in good.named("metricsUpdate")] == list(range(total))
        assert sock.sid not in gw.sio.eio.sockets
        assert gw.namespace.connected_sids == 1
        assert await _metric(gw, "vmpulse_gateway_slow_consumers_total") == 1.0
        # What the gateway held for the silent client: at most the bound, plus what
        # one write may leave in the transport's buffer (its high-water mark, 64 KiB).
        assert max(peaks) <= BOUND + 65_536, max(peaks)
        assert max(peaks) > BOUND // 2  # it did fill up: the bound, not luck, held it
        # The server aborts a transport whose peer does not read its goodbye.
        started = time.monotonic()
        while await asyncio.wait_for(raw.recv_text(), DEADLINE_S) is not None:
            pass
        assert time.monotonic() - started < DEADLINE_S
        raw.close()


async def test_a_client_that_reads_again_is_told_it_was_a_slow_consumer(
    settings: Settings, topics_ready: Topics
) -> None:
    await put_directory(settings, *DIRECTORY)
    async with running(settings.replace(gateway={"send_buffer_bytes": BOUND})) as gw:
        raw, sock = await _subscribed_raw(gw, settings)
        await publish(settings, *_big_samples(400))
        await until(lambda: sock.overflowed, DEADLINE_S * 2)
        # It reads again, within the grace the server gives a goodbye.
        packets: list[str] = []
        while (text := await asyncio.wait_for(raw.recv_text(), CLOSE_GRACE_S * 2)) is not None:
            packets.append(text)
        raw.close()
        assert packets[-2:] == ['42["session:ended",{"reason":"slow consumer"}]', "1"]
        updates = [json.loads(p[2:])[1]["n"] for p in packets if p.startswith('42["metricsUpdate"')]
        assert updates == list(range(len(updates)))  # what it got came in order, no gap
        assert 0 < len(updates) < 400
        assert gw.stats.slow_consumers._value.get() == 1


async def _polling_session(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/socket.io/?EIO=4&transport=polling") as resp:
        assert resp.status == 200
        return str(eio_open(await resp.text())["sid"])


async def test_sessions_that_never_connect_hold_a_slot_then_time_out(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    timeout_s = 2.0
    limited = settings.replace(gateway={"max_connections": 2, "connect_timeout_s": timeout_s})
    async with running(limited) as gw, aiohttp.ClientSession() as http:
        opened_at = time.monotonic()
        raw = await RawSocket.connect("127.0.0.1", gw.port)
        eio_open(await raw.expect("0"))
        polling_sid = await _polling_session(http, gw.url)
        # The long poll a client keeps open; it is answered when the session ends.
        pending = asyncio.create_task(
            http.get(f"{gw.url}/socket.io/?EIO=4&transport=polling&sid={polling_sid}")
        )
        assert gw.sio.eio.waiting == 2

        # Both slots are held by sessions that said nothing yet: a real client is refused.
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        assert opened[-1].refusal == {"message": "Too many connections"}

        assert await asyncio.wait_for(raw.recv_text(), timeout_s * 4) == "1"  # CLOSE
        closed_after = time.monotonic() - opened_at
        resp = await asyncio.wait_for(pending, timeout_s * 4)
        assert await resp.text() == "1"
        resp.release()
        assert closed_after >= timeout_s - HEARTBEAT_TICK_S
        assert await _metric(gw, "vmpulse_gateway_connect_timeouts_total") >= 2.0
        assert gw.sio.eio.waiting == 0
        raw.close()

        # The slots are free again.
        alice = await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        await alice.wait_for("connected")


async def test_the_handshake_is_refused_past_the_session_ceiling(
    settings: Settings, topics_ready: Topics
) -> None:
    await put_directory(settings, *DIRECTORY)
    limited = settings.replace(gateway={"max_connections": 2})
    async with running(limited) as gw, aiohttp.ClientSession() as http:
        ceiling = gw.sio.eio.max_sessions
        assert ceiling > 2  # room to refuse CONNECTs with the contract's message first
        for _ in range(ceiling):
            await _polling_session(http, gw.url)
        async with http.get(f"{gw.url}/socket.io/?EIO=4&transport=polling") as resp:
            assert resp.status == 503
            assert await resp.json() == {"message": "Too many connections"}
        refused = await _metric(
            gw, 'vmpulse_gateway_connections_refused_total{reason="process_limit"}'
        )
        assert refused == 1.0


async def test_reconnects_with_resume_are_rate_limited_per_user(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    async with running(settings.replace(gateway={"resumes_per_minute": 2})) as gw:
        first = await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        position = (await first.wait_for("connected"))["position"]
        await hang_up(first)
        answers = []
        for _ in range(3):
            auth = {"token": token(settings, "alice"), "lastPosition": position, "vmIds": ["vm-a"]}
            again = await connect(gw.url, auth, into=opened)
            await again.wait(_has_answered_resume(again))
            answers.append(again.events[-1])
            await hang_up(again)
        assert [name for name, _ in answers] == ["resumed", "resumed", "resync"]
        resync = answers[-1][1]
        assert resync["reason"] == "resume rate limit exceeded"
        assert resync["vmIds"] == ["vm-a"] and resync["position"]
        assert await _metric(gw, "vmpulse_gateway_resumes_rate_limited_total") == 1.0
        # Another user is not affected by alice's rate.
        auth = {"token": token(settings, "root"), "lastPosition": position}
        root = await connect(gw.url, auth, into=opened)
        await root.wait_for("resumed")


async def test_long_polling_upgrades_to_websocket_without_losing_order(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    """The default client way: long polling first, then the upgrade, events in order across it."""
    await put_directory(settings, *DIRECTORY)
    async with running(settings) as gw:
        client = await connect(
            gw.url,
            {"token": token(settings, "alice")},
            transports=("polling", "websocket"),
            into=opened,
        )
        ns = (await client.wait_for("connected"))["namespace"]
        events = [
            OutboundEvent(resource="vms", action="update", data={"n": n}, users=["alice"])
            for n in range(200)
        ]
        publishing = asyncio.create_task(publish(settings, *events))
        await until(lambda: client.sio.transport() == "websocket")
        await publishing
        name = f"{ns}:vms:update"
        await client.wait(lambda: len(client.named(name)) >= 200)
        assert [p["data"]["n"] for p in client.named(name)] == list(range(200))
        eio_sid = gw.sio.manager.eio_sid_from_sid(client.sio.get_sid("/"), "/")
        assert gw.sio.eio.sockets[eio_sid].upgraded


async def test_a_replay_bigger_than_the_send_bound_is_paced_not_dropped(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    """A resume owed 5 MB with a 1 MiB bound: chunks wait for the client to drain."""
    await put_directory(settings, *DIRECTORY)
    async with running(settings.replace(gateway={"send_buffer_bytes": BOUND})) as gw:
        first = await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        position = (await first.wait_for("connected"))["position"]
        await hang_up(first)
        missed = 320  # x 16 KiB
        await publish(settings, *_big_samples(missed))
        await until(lambda: len(gw.consumer.log) >= missed, DEADLINE_S)
        auth = {"token": token(settings, "alice"), "lastPosition": position, "vmIds": ["vm-a"]}
        again = await connect(gw.url, auth, into=opened)
        resumed = await again.wait_for("resumed", DEADLINE_S * 3)
        assert resumed["replayed"] == missed
        assert [p["n"] for p in again.named("metricsUpdate")] == list(range(missed))
        assert gw.stats.slow_consumers._value.get() == 0
        assert gw.stats.replay_chunks._value.get() > 1  # the bytes, not the count, cut it


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextlib.asynccontextmanager
async def _gateway_process(settings: Settings, **env: str) -> AsyncIterator[tuple[int, int]]:
    """``vmpulse gateway`` as its own process (uvloop, as deployed): (pid, port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "vmpulse"),
        "gateway",
        env={
            **os.environ,
            "VMPULSE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap or "",
            "VMPULSE_TOPIC_PREFIX": settings.kafka.topic_prefix,
            "VMPULSE_GATEWAY_ADDR": f"127.0.0.1:{port}",
            "VMPULSE_DATA_DIR": str(settings.data_dir),
            **env,
        },
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + DEADLINE_S * 3
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            break
                assert proc.returncode is None and time.monotonic() < deadline, "no gateway"
                await asyncio.sleep(0.1)
        yield proc.pid, port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), DEADLINE_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_the_gateway_process_holds_little_for_a_client_that_never_reads(
    settings: Settings, topics_ready: Topics
) -> None:
    """40 MB sent toward a silent client: the running gateway's memory grows by a fraction."""
    await put_directory(settings, *DIRECTORY)
    # The replay log and the recent-samples buffer keep events on purpose; off here, so
    # what the process holds is the send path's.
    quiet = {"VMPULSE_GATEWAY_RESUME_MAX_EVENTS": "0", "VMPULSE_GATEWAY_RECENT_SAMPLES": "1"}
    async with _gateway_process(settings, **quiet) as (pid, port):
        raw = await RawSocket.connect("127.0.0.1", port, rcvbuf=4096)
        await raw.socketio_connect({"token": token(settings, "alice")})
        raw.send_text('420["subscribe",{"vmId":"vm-a"}]')
        await raw.expect("430")
        before = _rss_bytes(pid)
        flood = 2500  # x 16 KiB
        async with _blind_pongs(raw):
            for start in range(0, flood, 250):
                await publish(settings, *_big_samples(250, start=start))

            async def dropped() -> bool:
                url = f"http://127.0.0.1:{port}/metrics"
                async with aiohttp.ClientSession() as http, http.get(url) as resp:
                    text = await resp.text()
                return "vmpulse_gateway_slow_consumers_total 1.0" in text

            deadline = time.monotonic() + DEADLINE_S * 2
            while not await dropped():
                assert time.monotonic() < deadline, "the silent client was not dropped"
                await asyncio.sleep(0.2)
        growth = _rss_bytes(pid) - before
        raw.close()
        assert growth < 16 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB for a 40 MB flood"
