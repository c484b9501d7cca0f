"""Gateway benchmark: the Python gateway beside the reference Node.js Socket.IO server.

Both servers read the same ``events.outbound`` topic on a real local broker and
fan metrics events out to ``vm:<id>`` rooms; the same Node load client
(``tests/bench/node/load.js``, npm ``socket.io-client``) opens N websocket
clients, one room each, and records the latency from the producer's write
(``data.sentAt``) to the client. Two phases per server: *steady* (a fixed rate
both servers should sustain: latency) and *burst* (events as fast as the
producer can write: deliveries per second). Memory per connection is the
server's RSS growth while the clients connect, divided by N.

Run: ``python -m tests.bench.gateway_bench --clients 5000`` (needs ``npm install``
in tests/bench/node; starts a broker unless VMPULSE_KAFKA_BOOTSTRAP is set).
Each run is bounded: connection, phase and drain deadlines, then it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from gateway.auth import issue_token
from infra.broker import LocalBroker
from infra.config import DEV_JWT_SECRET
from infra.kafka_io import ensure_topics
from schemas.directory import User, Vm, directory_key, encode_record
from schemas.events import OutboundEvent, encode_outbound
from schemas.topics import Topics
from tests.support.cpu import process_cpu_seconds
from tests.support.ready import wait_ready

NODE_DIR = Path(__file__).resolve().parent / "node"
PARTITIONS = 6


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _broker() -> Iterator[str]:
    external = os.environ.get("VMPULSE_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    work = Path(tempfile.mkdtemp(prefix="vmpulse-bench-kafka-"))
    broker = LocalBroker(work)
    try:
        yield broker.start()
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


async def _produce_directory(bootstrap: str, topics: Topics, vms: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        records: list[User | Vm] = [User(id="bench", role="admin")]
        records += [Vm(id=f"vm{i}", owner="bench") for i in range(vms)]
        for r in records:
            await producer.send(topics.directory, encode_record(r), key=directory_key(r).encode())
        await producer.flush()
    finally:
        await producer.stop()


class Load:
    """The Node load client as a subprocess speaking JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not raw:
                raise RuntimeError("load client exited")
            text = raw.decode().strip()
            if text.startswith("{"):
                return dict(json.loads(text))

    async def report(self, phase: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"report {phase}\n".encode())
        await self.proc.stdin.drain()
        return await self.line(30)

    async def quit(self) -> None:
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.write(b"quit\n")
            with contextlib.suppress(Exception):
                await self.proc.stdin.drain()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@contextlib.asynccontextmanager
async def _server(kind: str, bootstrap: str, topics: Topics, port: int) -> AsyncIterator[int]:
    """Start one server; yield its pid once it serves and reads the topic."""
    if kind == "python":
        env = {
            **os.environ,
            "VMPULSE_KAFKA_BOOTSTRAP": bootstrap,
            "VMPULSE_TOPIC_PREFIX": topics.prefix,
            "VMPULSE_GATEWAY_ADDR": f"127.0.0.1:{port}",
            "VMPULSE_DATA_DIR": tempfile.mkdtemp(prefix="vmpulse-bench-"),
            "VMPULSE_GATEWAY_MAX_CONNECTIONS_PER_USER": "100000",
            "VMPULSE_GATEWAY_MAX_CONNECTIONS": "100000",
            "VMPULSE_GATEWAY_CLIENT_EVENTS_PER_MINUTE": "10000000",
        }
        exe = Path(sys.executable).parent / "vmpulse"
        proc = await asyncio.create_subprocess_exec(
            str(exe), "gateway", env=env, stdout=subprocess.DEVNULL
        )
        await wait_ready(f"http://127.0.0.1:{port}", 60, alive=lambda: proc.returncode is None)
    else:
        env = {
            **os.environ,
            "BOOTSTRAP": bootstrap,
            "TOPIC": topics.events_outbound,
            "PORT": str(port),
        }
        proc = await asyncio.create_subprocess_exec(
            "node", str(NODE_DIR / "server.js"), env=env, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"READY":
            raise RuntimeError(f"node server did not start: {line!r}")
    try:
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGINT if kind == "python" else signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _phase(
    producer: AIOKafkaProducer,
    topics: Topics,
    load: Load,
    name: str,
    *,
    events: int,
    rate: float | None,
    vms: int,
    per_room: int,
    drain_s: float,
) -> dict[str, Any]:
    started = time.monotonic()
    for n in range(events):
        vm = f"vm{n % vms}"
        data = {
            "vmId": vm,
            "metrics": {"cpu": {"usage_percent": 12.5}, "memory": {"used_kb": 1024}},
            "timestamp": "2026-01-01T00:00:00Z",
            "sentAt": time.time() * 1000,
            "phase": name,
        }
        event = OutboundEvent(resource="metrics", action="update", data=data, rooms=[f"vm:{vm}"])
        await producer.send(topics.events_outbound, encode_outbound(event), key=vm.encode())
        if rate is not None:
            due = started + (n + 1) / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    await producer.flush()
    produced_s = time.monotonic() - started
    expected = events * per_room
    deadline = time.monotonic() + drain_s
    report: dict[str, Any] = {}
    while time.monotonic() < deadline:
        report = await load.report(name)
        if report["received"] >= expected:
            break
        await asyncio.sleep(0.5)
    report.update(expected=expected, produced_s=round(produced_s, 2))
    return report


async def bench_server(
    kind: str,
    bootstrap: str,
    topics: Topics,
    *,
    clients: int,
    vms: int,
    steady_rate: float,
    steady_s: float,
    burst_events: int,
    settle_s: float = 5.0,
) -> dict[str, Any]:
    port = _free_port()
    token = issue_token(DEV_JWT_SECRET, "bench")
    async with _server(kind, bootstrap, topics, port) as pid:
        await asyncio.sleep(1.0)  # let start-up garbage settle before the baseline
        rss0 = _rss_kb(pid)
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(NODE_DIR / "load.js"),
            f"http://127.0.0.1:{port}",
            str(clients),
            str(vms),
            token,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        load = Load(proc)
        try:
            t0 = time.monotonic()
            cpu0 = process_cpu_seconds(pid)
            ready = await load.line(timeout=max(120.0, clients / 20))
            connect_s = time.monotonic() - t0
            connect_cpu = process_cpu_seconds(pid) - cpu0
            rss1 = _rss_kb(pid)
            # Both servers get the same pause after the connection storm before
            # the measured phases, so the figures are of delivery, not of handshakes.
            await asyncio.sleep(settle_s)
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
            await producer.start()
            try:
                per_room = clients // vms
                cpu1 = process_cpu_seconds(pid)
                steady = await _phase(
                    producer,
                    topics,
                    load,
                    f"{kind}-steady",
                    events=int(steady_rate * steady_s),
                    rate=steady_rate,
                    vms=vms,
                    per_room=per_room,
                    drain_s=60,
                )
                cpu2 = process_cpu_seconds(pid)
                burst = await _phase(
                    producer,
                    topics,
                    load,
                    f"{kind}-burst",
                    events=burst_events,
                    rate=None,
                    vms=vms,
                    per_room=per_room,
                    drain_s=120,
                )
                cpu3 = process_cpu_seconds(pid)
            finally:
                await producer.stop()
            rss2 = _rss_kb(pid)
        finally:
            await load.quit()
    return {
        "server": kind,
        "clients": clients,
        "subscribed": ready.get("subscribed"),
        "connect_s": round(connect_s, 1),
        "rss_idle_mb": round(rss0 / 1024, 1),
        "rss_connected_mb": round(rss1 / 1024, 1),
        "rss_after_mb": round(rss2 / 1024, 1),
        "kb_per_connection": round((rss1 - rss0) / max(clients, 1), 1),
        "connect_cpu_ms_per_client": round(connect_cpu * 1000 / max(clients, 1), 2),
        "steady": _rounded(steady),
        "burst": _rounded(burst),
        # Includes the phase's drain wait, when the server only waits: an upper bound.
        "steady_cpu_us_per_delivery": _per(cpu2 - cpu1, steady.get("received")),
        "burst_cpu_us_per_delivery": _per(cpu3 - cpu2, burst.get("received")),
    }


def _per(cpu_s: float, count: Any) -> float | None:
    return round(cpu_s * 1e6 / count, 1) if isinstance(count, int) and count else None


def _table(results: list[dict[str, Any]]) -> str:
    by = {r["server"]: r for r in results}
    # (label, how to read the figure from one server's results, which way is better)
    rows: list[tuple[str, Callable[[dict[str, Any]], Any], str | None]] = [
        ("clients connected", lambda r: r["subscribed"], None),
        ("connect time s", lambda r: r["connect_s"], "lower"),
        ("steady deliveries/s", lambda r: _round(r["steady"]["perSecond"]), "higher"),
        (
            "steady received/expected",
            lambda r: f"{r['steady']['received']}/{r['steady']['expected']}",
            None,
        ),
        ("steady p50 ms", lambda r: r["steady"]["p50"], "lower"),
        ("steady p99 ms", lambda r: r["steady"]["p99"], "lower"),
        ("burst deliveries/s", lambda r: _round(r["burst"]["perSecond"]), "higher"),
        (
            "burst received/expected",
            lambda r: f"{r['burst']['received']}/{r['burst']['expected']}",
            None,
        ),
        ("burst p50 ms", lambda r: r["burst"]["p50"], "lower"),
        ("burst p99 ms", lambda r: r["burst"]["p99"], "lower"),
        ("memory per connection KiB", lambda r: r["kb_per_connection"], "lower"),
        ("connect CPU ms/client", lambda r: r["connect_cpu_ms_per_client"], "lower"),
        ("steady CPU us/delivery", lambda r: r["steady_cpu_us_per_delivery"], "lower"),
        ("burst CPU us/delivery", lambda r: r["burst_cpu_us_per_delivery"], "lower"),
        ("RSS with clients MiB", lambda r: r["rss_connected_mb"], "lower"),
    ]
    out = [f"{'figure':28} {'python':>14} {'node':>14} {'python/node':>12}"]
    for label, get, _ in rows:
        py = get(by["python"]) if "python" in by else None
        nd = get(by["node"]) if "node" in by else None
        ratio = ""
        if isinstance(py, int | float) and isinstance(nd, int | float) and nd:
            ratio = f"{py / nd:.2f}"
        out.append(f"{label:28} {py!s:>14} {nd!s:>14} {ratio:>12}")
    return "\n".join(out)


def _rounded(report: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in report.items()}


def _round(value: float | None) -> int | None:
    return None if value is None else round(value)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    with _broker() as bootstrap:
        results = []
        for kind in args.servers:
            topics = Topics(f"bench{uuid.uuid4().hex[:8]}.")
            await ensure_topics(bootstrap, topics, partitions=PARTITIONS, replication_factor=1)
            await _produce_directory(bootstrap, topics, args.vms)
            result = await bench_server(
                kind,
                bootstrap,
                topics,
                clients=args.clients,
                vms=args.vms,
                steady_rate=args.steady_rate,
                steady_s=args.steady_seconds,
                burst_events=args.burst_events,
                settle_s=args.settle_seconds,
            )
            print(json.dumps(result), flush=True)
            results.append(result)
        print(_table(results), flush=True)
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--vms", type=int, default=100, help="rooms; clients spread evenly")
    parser.add_argument("--steady-rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--burst-events", type=int, default=2000)
    parser.add_argument("--settle-seconds", type=float, default=5.0)
    parser.add_argument("--servers", nargs="+", default=["python", "node"])
    args = parser.parse_args(argv)
    if not (NODE_DIR / "node_modules").is_dir():
        print(f"run `npm install` in {NODE_DIR} first", file=sys.stderr)
        return 2
    import logging

    logging.basicConfig(level=logging.ERROR)  # broker chatter would bury the figures
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
