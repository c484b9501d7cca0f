"""``vmpulse simulate``: run a simulated fleet until SIGINT/SIGTERM, printing its send rate.

Kept out of the CLI module so tests and benchmarks can run the same loop, and
out of :mod:`agents.simulator.fleet` so the simulator stays free of process concerns.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any, Final, TextIO

from agents.simulator.fleet import FleetSimulator, TcpFleetSimulator
from infra.descriptors import raise_descriptor_limit

__all__ = ["descriptors_needed", "run_fleet"]

_SPARE_DESCRIPTORS: Final = 64
"""Descriptors a fleet's process holds beside its VMs' (stdio, the event loop, imports)."""


def descriptors_needed(vms: int, transport: str) -> int:
    """File descriptors a fleet of ``vms`` holds at once.

    Over unix sockets each VM is a listening socket plus the bridge's connection
    to it (QEMU holds these for a real guest); over TCP each VM is one connection.
    """
    return vms * (2 if transport == "unix" else 1) + _SPARE_DESCRIPTORS


async def run_fleet(
    vm_ids: list[str],
    *,
    interval_s: float,
    dialect: int,
    transport: str,
    bad_rate: float,
    socket_dir: Path,
    tcp_addr: tuple[str, int] | None,
    agent_secret: str,
    progress_s: float = 2.0,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve (unix) or connect (tcp) ``vm_ids`` until ``stop`` is set; without ``stop``,
    until SIGINT or SIGTERM."""
    needed = descriptors_needed(len(vm_ids), transport)
    limit = raise_descriptor_limit(needed)
    if limit != resource.RLIM_INFINITY and limit < needed:
        # past the limit each accept failed with a traceback and VMs went silent
        print(
            f"{len(vm_ids)} VMs over {transport} need about {needed} file descriptors "
            f"and this process may open {limit} (ulimit -n); use fewer VMs, or share them "
            "among processes (--shard I/N)"
            + (", or --transport tcp (one each)" if transport == "unix" else ""),
            file=sys.stderr,
        )
        return 2
    fleet: Any
    if transport == "unix":
        fleet = FleetSimulator(socket_dir, vm_ids, interval_s, dialect=dialect, bad_rate=bad_rate)
        where = f"unix sockets in {socket_dir}"
    else:
        if tcp_addr is None:
            print("--transport tcp needs VMPULSE_AGENT_TCP_ADDR (the bridge's)", file=sys.stderr)
            return 2
        fleet = TcpFleetSimulator(
            tcp_addr[0],
            tcp_addr[1],
            agent_secret,
            vm_ids,
            interval_s,
            dialect=dialect,
            bad_rate=bad_rate,
        )
        where = f"tcp to {tcp_addr[0]}:{tcp_addr[1]}"
    loop = asyncio.get_running_loop()
    handled = []
    if stop is None:  # run as a command: SIGINT / SIGTERM stop it
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                handled.append(sig)
    await fleet.start()
    print(f"simulating {len(vm_ids)} agents (dialect {dialect}) over {where}", file=out, flush=True)
    last_n, last_t = 0, time.monotonic()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), progress_s)
            now, n = time.monotonic(), fleet.lines_sent
            rate = (n - last_n) / max(now - last_t, 1e-9)
            print(f"sent {n} lines, {rate:.0f} lines/s", file=out, flush=True)
            last_n, last_t = n, now
    finally:
        await fleet.stop()
        for sig in handled:
            loop.remove_signal_handler(sig)
    return 0
