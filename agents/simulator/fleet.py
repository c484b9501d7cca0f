"""A fleet of fake guest agents, served the way QEMU serves virtio-serial ports.

For each VM the simulator listens on ``<socket_dir>/<vm>.socket`` (QEMU's
chardev is the server; the bridge connects as the client) and writes one
dialect 1 ``system_metrics`` line to every connected client per interval. It
exists so the pipeline can run end to end without VMs (``vmpulse simulate``)
and so tests can drive the real socket path, including restarts and bad input.

The numbers look like a real guest: CPU follows a daily curve with bursts,
memory and disk move slowly, and network counters and uptime only grow,
because they are derived from the time since a per-VM boot instant rather than
from random steps. Everything random comes from seeded generators.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import math
import os
import random
import time
import zlib
from pathlib import Path
from typing import Any, Final

import msgspec

from agents.handshake import make_hello
from agents.simulator import dialect2_lines as dialect2

__all__ = ["FleetSimulator", "TcpFleetSimulator", "next_lines", "system_metrics_line"]

log = logging.getLogger(__name__)

_SLOT_S: Final = 0.01
"""The fleet simulator's clock step: VMs report at their own phase, in 10 ms slots."""

_MAX_CLIENT_BACKLOG: Final = 1024 * 1024
"""Past this many unsent bytes a client is considered stalled and skips lines."""

_BOOT_EPOCH: Final = 1_767_225_600.0  # 2026-01-01T00:00:00Z; VMs boot within 30 days after
_GIB_KB: Final = 1024 * 1024


class _Profile:
    """Stable per-VM facts (size, boot time) derived from the id, not from the RNG,
    with the parts of its line that never change already encoded."""

    __slots__ = (
        "boot",
        "cores",
        "cores_format",
        "disk_gb",
        "mem_kb",
        "phase_h",
        "rx_rate",
        "swap_kb",
        "tx_rate",
        "vm_json",
    )

    def __init__(self, vm_id: str) -> None:
        h = zlib.crc32(vm_id.encode())
        self.cores = (2, 4, 8, 16)[h % 4]
        self.mem_kb = (4, 8, 16, 32)[(h >> 2) % 4] * _GIB_KB
        self.swap_kb = (0, 2, 4)[(h >> 4) % 3] * _GIB_KB
        self.disk_gb = (64.0, 128.0, 256.0)[(h >> 6) % 3]
        self.boot = _BOOT_EPOCH + (h >> 8) % (30 * 86400)
        self.rx_rate = 20_000 + (h >> 12) % 200_000  # bytes/s on average
        self.tx_rate = 5_000 + (h >> 16) % 80_000
        self.phase_h = (h >> 20) % 6  # when this VM's day peaks, in hours
        self.vm_json = msgspec.json.encode(vm_id)
        self.cores_format = b",".join([b"%.1f"] * self.cores)


@functools.lru_cache(maxsize=65_536)
def _profile(vm_id: str) -> _Profile:
    return _Profile(vm_id)


def _counter(elapsed: float, rate: float, period: float) -> int:
    """A monotone counter: a steady rate plus a wave, ``d/dt >= 0`` everywhere."""
    return int(rate * elapsed + rate * (elapsed - period * math.sin(elapsed / period)))


@functools.lru_cache(maxsize=4)
def _stamp(t: float) -> bytes:
    """ISO 8601 UTC with milliseconds and ``Z``; a fleet's tick stamps many lines alike."""
    iso = dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")
    return iso[:-6].encode() + b"Z"


# The line as the agent writes it (compact JSON, the agent's key order), one % away:
# formatting the numbers straight into it costs a fifth of building and encoding a dict,
# and a fleet of thousands of VMs shares its machine with the pipeline it feeds.
_LINE: Final = (
    b'{"type":"system_metrics","vmId":%s,"timestamp":"%s","metrics":{'
    b'"cpu":{"usage_percent":%.1f,"cores_usage":[%s],"temperature":%s},'
    b'"memory":{"total_kb":%d,"used_kb":%d,"available_kb":%d,"swap_total_kb":%d,'
    b'"swap_used_kb":%d},'
    b'"disk":{"usage_stats":[{"mount_point":"/","total_gb":%.1f,"used_gb":%.2f,'
    b'"available_gb":%.2f},'
    b'{"mount_point":"/boot","total_gb":1.0,"used_gb":0.21,"available_gb":0.79}],'
    b'"io_stats":{"read_bytes_per_sec":%d,"write_bytes_per_sec":%d}},'
    b'"network":{"stats":[{"interface":"eth0","bytes_received":%d,"bytes_sent":%d,'
    b'"packets_received":%d,"packets_sent":%d},'
    b'{"interface":"lo","bytes_received":%d,"bytes_sent":%d,"packets_received":%d,'
    b'"packets_sent":%d}]},'
    b'"system":{"uptime":%d,"load_average":{"load1min":%.2f,"load5min":%.2f,'
    b'"load15min":%.2f}}}}'
)


def system_metrics_line(vm_id: str, t: float, rng: random.Random) -> bytes:
    """One dialect 1 ``system_metrics`` message for ``vm_id`` at epoch seconds ``t``.

    Returns the JSON line without its ``\\n``. Gauges draw noise from ``rng``;
    counters (network, uptime) depend only on ``vm_id`` and ``t``, so they grow
    across calls, processes and simulator restarts.
    """
    p = _profile(vm_id)
    elapsed = max(0.0, t - p.boot)
    hour = (t / 3600.0 + p.phase_h) % 24
    daily = 0.5 - 0.5 * math.cos(2 * math.pi * (hour - 3) / 24)  # low at 03:00, high at 15:00
    usage = 5 + 45 * daily + rng.gauss(0, 4)
    if rng.random() < 0.05:
        usage += rng.uniform(20, 50)  # a burst: a build, a scan, a login storm
    usage = min(100.0, max(0.0, usage))
    # each core within 8 points of the average (uniform noise: a gauss per core cost
    # more than the rest of the line); clamped only where the band crosses 0 or 100,
    # since a generator of clamped values was a third of the line at 16 cores
    random_ = rng.random
    low = usage - 8.0
    cores = [low + 16.0 * random_() for _ in range(p.cores)]
    if not 8.0 <= usage <= 92.0:
        cores = [min(100.0, max(0.0, c)) for c in cores]

    mem_total = p.mem_kb
    mem_used = int(mem_total * min(0.97, max(0.1, 0.35 + 0.3 * daily + rng.gauss(0, 0.02))))
    swap_used = int(p.swap_kb * min(1.0, max(0.0, 0.1 * daily + 0.02 * random_() - 0.01)))

    disk_total = p.disk_gb
    root_used = disk_total * (0.3 + 0.4 * ((elapsed / 86400 / 60) % 1))
    load1 = max(0.0, p.cores * usage / 100 + 0.2 * random_() - 0.1)
    lo_bytes = _counter(elapsed, 2_000, 600.0)
    lo_packets = _counter(elapsed, 20, 600.0)
    return _LINE % (
        p.vm_json,
        _stamp(t),
        usage,
        p.cores_format % tuple(cores),
        b"null" if p.cores == 16 else b"%.1f" % (38 + usage * 0.35),
        mem_total,
        mem_used,
        mem_total - mem_used,
        p.swap_kb,
        swap_used,
        disk_total,
        root_used,
        disk_total - round(root_used, 2),
        int(rng.expovariate(1 / 400_000) * (0.3 + daily)),
        int(rng.expovariate(1 / 250_000) * (0.3 + daily)),
        _counter(elapsed, p.rx_rate, 3600.0),
        _counter(elapsed, p.tx_rate, 5400.0),
        _counter(elapsed, p.rx_rate / 900, 3600.0),
        _counter(elapsed, p.tx_rate / 700, 5400.0),
        lo_bytes,
        lo_bytes,
        lo_packets,
        lo_packets,
        int(elapsed),
        load1,
        max(0.0, p.cores * (5 + 45 * daily) / 100),
        max(0.0, p.cores * (5 + 40 * daily) / 100),
    )


def next_lines(
    vm_id: str, now: float, rng: random.Random, *, dialect: int, bad_rate: float, seq: int
) -> list[bytes]:
    """What one agent writes per interval: dialect 1 ``system_metrics``, or dialect 2
    ``metrics`` + ``keep_alive``; with probability ``bad_rate`` a line is replaced by
    invalid JSON (for DLQ paths). Lines are without their newline."""
    d1 = system_metrics_line(vm_id, now, rng)
    if dialect == 2:
        lines = [dialect2.metrics_line(d1, now, rng), dialect2.keep_alive_line(seq, now)]
    else:
        lines = [d1]
    if bad_rate > 0:
        lines = [
            b'{"type":"system_metrics","vmId":"' + vm_id.encode() + b'", broken'
            if rng.random() < bad_rate
            else line
            for line in lines
        ]
    return lines


class _VmServer:
    """One VM's listening socket and its connected clients."""

    def __init__(self, vm_id: str, path: Path, rng: random.Random, greeting: bytes = b"") -> None:
        self.vm_id = vm_id
        self.path = path
        self.rng = rng
        self.greeting = greeting
        self.seq = 0
        self.phase = zlib.crc32(vm_id.encode())  # where in the interval it reports
        self.server: asyncio.Server | None = None
        self.clients: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._on_client, path=os.fspath(self.path))

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.greeting:
            writer.write(self.greeting)
        self.clients.add(writer)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        try:
            # Guests ignore what the host writes for now; reading only tells us
            # when the client goes away.
            while await reader.read(4096):
                pass
        except OSError:
            pass
        finally:
            self.clients.discard(writer)
            writer.close()

    def write(self, data: bytes) -> int:
        """Write to every client that keeps up; return how many got it."""
        sent = 0
        for writer in list(self.clients):
            transport = writer.transport
            if transport.is_closing() or transport.get_write_buffer_size() > _MAX_CLIENT_BACKLOG:
                continue
            writer.write(data)
            sent += 1
        return sent

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.clients):
            writer.close()
        self.clients.clear()
        if self._handlers:
            # the handlers end on their closed connections; left to asyncio.run they were
            # cancelled, and Python 3.11's stream callback logged each as an ERROR at exit
            await asyncio.wait(self._handlers, timeout=1.0)
        if self.server is not None:
            with contextlib.suppress(OSError):
                await self.server.wait_closed()
            self.server = None
        # Python < 3.13 leaves the socket file behind; QEMU removes it.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class FleetSimulator:
    """Serves ``<socket_dir>/<vm>.socket`` for each VM and streams metrics to clients.

    ``lines_sent`` counts lines written to a client (a line to two clients counts
    twice); ``lines_skipped`` counts lines a stalled client missed. With
    ``keep_sent`` every line written to at least one client is kept in
    ``sent[vm]`` (without its newline) so tests can compare byte for byte.
    """

    def __init__(
        self,
        socket_dir: Path,
        vms: list[str],
        interval_s: float = 1.0,
        seed: int = 0,
        *,
        keep_sent: bool = False,
        dialect: int = 1,
        bad_rate: float = 0.0,
    ) -> None:
        if dialect not in (1, 2):
            raise ValueError(f"dialect must be 1 or 2, got {dialect}")
        self.dialect = dialect
        self.bad_rate = bad_rate
        self.socket_dir = socket_dir
        self.interval_s = interval_s
        self.seed = seed
        self._initial = list(vms)
        self._servers: dict[str, _VmServer] = {}
        self._fleet_version = 0  # changes whenever a VM is added or removed
        self._ticker: asyncio.Task[None] | None = None
        self.lines_sent = 0
        self.lines_skipped = 0
        self.keep_sent = keep_sent
        self.sent: dict[str, list[bytes]] = {}

    @property
    def vms(self) -> list[str]:
        return list(self._servers)

    def socket_path(self, vm: str) -> Path:
        return self.socket_dir / f"{vm}.socket"

    def clients(self, vm: str) -> int:
        """How many clients are connected to this VM's socket now."""
        server = self._servers.get(vm)
        return len(server.clients) if server is not None else 0

    async def start(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        for vm in self._initial:
            await self.add(vm)
        self._ticker = asyncio.create_task(self._tick(), name="fleet-simulator")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for vm in list(self._servers):
            await self.remove(vm)

    async def add(self, vm: str) -> None:
        """Start serving a VM's socket (a VM boots, or its QEMU restarts)."""
        if vm in self._servers:
            return
        rng = random.Random(f"{self.seed}:{vm}")
        greeting = dialect2.handshake_line(vm, time.time()) + b"\n" if self.dialect == 2 else b""
        server = _VmServer(vm, self.socket_path(vm), rng, greeting)
        await server.start()
        self._servers[vm] = server
        self._fleet_version += 1

    async def remove(self, vm: str) -> None:
        """Stop serving a VM: close its clients and delete its socket file."""
        server = self._servers.pop(vm, None)
        self._fleet_version += 1
        if server is not None:
            await server.stop()

    async def restart(self, vm: str) -> None:
        """Stop and start a VM's server, as when QEMU restarts: clients are cut off."""
        await self.remove(vm)
        await self.add(vm)

    def inject(self, vm: str, raw: bytes) -> int:
        """Write ``raw + b"\\n"`` to the VM's clients (e.g. invalid JSON); return how many."""
        sent = self._servers[vm].write(raw + b"\n")
        self._keep(vm, raw, sent)
        return sent

    def emit(self, vm: str | None = None) -> None:
        """Write one metrics line now, to one VM's clients or to all."""
        targets = [self._servers[vm]] if vm is not None else list(self._servers.values())
        self._emit(targets, time.time())

    def _emit(self, targets: list[_VmServer], now: float) -> None:
        for server in targets:
            server.seq += 1
            for line in next_lines(
                server.vm_id,
                now,
                server.rng,
                dialect=self.dialect,
                bad_rate=self.bad_rate,
                seq=server.seq,
            ):
                sent = server.write(line + b"\n")
                self._keep(server.vm_id, line, sent)
                self.lines_sent += sent
                self.lines_skipped += len(server.clients) - sent

    def _keep(self, vm: str, line: bytes, sent: int) -> None:
        if self.keep_sent and sent:
            self.sent.setdefault(vm, []).append(line)

    async def _tick(self) -> None:
        """Each VM reports once an interval, at its own phase within it.

        Real agents start at different times, so a fleet's samples spread over the
        interval; all of them in the same millisecond would be a burst no fleet
        sends (and the last line of the burst would wait for every other).
        """
        loop = asyncio.get_running_loop()
        slots = max(1, round(self.interval_s / _SLOT_S))
        slot_s = self.interval_s / slots
        next_at = loop.time()
        slot = 0
        groups: list[list[_VmServer]] = []
        grouped = -1
        while True:
            if grouped != self._fleet_version:  # VMs came or went
                grouped = self._fleet_version
                groups = [[] for _ in range(slots)]
                for server in self._servers.values():
                    groups[server.phase % slots].append(server)
            now = loop.time()
            # every slot whose time has come, late ones too: a loop busy for a few ms
            # must not cost their VMs a sample; a stall over a whole interval does
            while next_at <= now:
                if now - next_at >= self.interval_s:
                    missed = int((now - next_at) // self.interval_s) * slots
                    slot, next_at = (slot + missed) % slots, next_at + missed * slot_s
                    continue
                try:
                    self._emit(groups[slot], time.time())
                except Exception:  # a simulator hiccup must not stop the fleet
                    log.exception("simulator tick failed")
                slot, next_at = (slot + 1) % slots, next_at + slot_s
            await asyncio.sleep(next_at - loop.time())


class TcpFleetSimulator:
    """Agents that connect to the bridge over TCP (development transport).

    Each VM opens a connection, sends its signed hello (:mod:`agents.handshake`,
    under the per-VM key derived from ``agent_secret``), a dialect 2 handshake
    if it speaks dialect 2, then its lines every interval; it reconnects after
    ``reconnect_s`` when the connection breaks. ``lines_sent`` counts lines written.
    """

    def __init__(
        self,
        host: str,
        port: int,
        agent_secret: str,
        vms: list[str],
        interval_s: float = 1.0,
        seed: int = 0,
        *,
        dialect: int = 1,
        bad_rate: float = 0.0,
        reconnect_s: float = 1.0,
    ) -> None:
        self.host = host
        self.port = port
        self._secret = agent_secret
        self.vms = list(vms)
        self.interval_s = interval_s
        self.seed = seed
        self.dialect = dialect
        self.bad_rate = bad_rate
        self.reconnect_s = reconnect_s
        self.lines_sent = 0
        self.connected: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._agent(vm), name=f"tcp-agent-{vm}") for vm in self.vms
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _agent(self, vm: str) -> None:
        rng = random.Random(f"{self.seed}:{vm}")
        seq = 0
        loop = asyncio.get_running_loop()
        while True:
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(self.reconnect_s)
                continue
            try:
                writer.write(make_hello(self._secret, vm))
                if self.dialect == 2:
                    writer.write(dialect2.handshake_line(vm, time.time()) + b"\n")
                self.connected.add(vm)
                next_at = loop.time()
                while not writer.transport.is_closing():
                    seq += 1
                    lines = next_lines(
                        vm, time.time(), rng, dialect=self.dialect, bad_rate=self.bad_rate, seq=seq
                    )
                    writer.write(b"".join(line + b"\n" for line in lines))
                    await writer.drain()
                    self.lines_sent += len(lines)
                    next_at = max(next_at + self.interval_s, loop.time())
                    await asyncio.sleep(next_at - loop.time())
            except OSError:
                pass
            finally:
                self.connected.discard(vm)
                writer.close()
            await asyncio.sleep(self.reconnect_s)
