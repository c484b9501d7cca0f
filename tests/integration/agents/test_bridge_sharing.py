"""Two bridges over one socket directory: never both read a VM; a dead one's VMs move at once.

Real parts: the fleet simulator serves real unix sockets; bridge A is a
`vmpulse bridge` child process (so it can be killed with SIGKILL, as a crash
would), bridge B runs in this process; both produce to the session's broker and
share the VMs through the group of agents/ownership.py. A starts alone and
takes every VM, B joins (A hands half over), then A is killed and B takes all.

What a user would check: at no sampled moment has a VM's socket two clients
(the simulator counts them), and agent.raw says the same exactly: per VM, the
records of one connection are never interleaved with another's (each
connection's records are one run), which also means the next owner's first
record came after the previous owner's last. The move after the kill is timed.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from agents.bridge import Bridge
from agents.simulator.fleet import FleetSimulator
from agents.vm_partition import vm_partition
from infra.config import Settings
from infra.kafka_io import ensure_settings_topics
from tests.support.kafka import header, reading_from_start, wait_until
from tests.support.stages import BridgeProcess

pytestmark = pytest.mark.integration

VMS = [str(uuid.UUID(int=1000 + i, version=4)) for i in range(24)]
SESSION_S = 6.0  # the broker's smallest group session timeout (group.min.session.timeout.ms)
MOVE_WITHIN_S = SESSION_S + 10.0  # detection, then one rebalance and the reconnects


async def _watch_overlap(fleet: FleetSimulator, seen: collections.Counter[str]) -> None:
    """Every 20 ms: the VMs whose socket has more than one client right now."""
    while True:
        for vm in VMS:
            if fleet.clients(vm) > 1:
                seen[vm] += 1
        await asyncio.sleep(0.02)


def _runs(records: list[Any]) -> dict[str, list[str]]:
    """Per VM, its connections in the order their records appear (one entry per run)."""
    out: dict[str, list[str]] = collections.defaultdict(list)
    for r in records:
        runs = out[r.key.decode()]
        conn = header(r, "conn_id").decode()
        if not runs or runs[-1] != conn:
            runs.append(conn)
    return out


async def test_two_bridges_share_a_directory_and_a_dead_ones_vms_move(
    settings: Settings, tmp_path: Path
) -> None:
    s = settings.replace(
        kafka={"partitions": 6, "session_timeout_s": SESSION_S}, bridge={"shared": True}
    )
    topics = await ensure_settings_topics(s)
    fleet = FleetSimulator(s.bridge.socket_dir, VMS, 0.1, seed=14)
    await fleet.start()
    overlap: collections.Counter[str] = collections.Counter()
    watching = asyncio.create_task(_watch_overlap(fleet, overlap))
    a = BridgeProcess(
        s,
        "bridge-a",
        tmp_path,
        VMPULSE_BRIDGE_SHARED="1",
        VMPULSE_KAFKA_SESSION_TIMEOUT_S=str(SESSION_S),
    )
    a.start()
    b = Bridge(s, reconnect_base_s=0.1)
    try:
        await wait_until(
            "bridge A to read every VM", lambda: all(fleet.clients(v) == 1 for v in VMS), 60.0
        )
        await b.start()
        assert b.ownership is not None

        def shared() -> bool:
            mine = b.watcher.connected
            return 0 < len(mine) < len(VMS) and all(fleet.clients(v) == 1 for v in VMS)

        took = await wait_until("B to take a share, A to keep the rest", shared, 30.0)
        mine = b.watcher.connected
        owned = b.ownership.partitions
        assert mine == {v for v in VMS if vm_partition(v, s.kafka.partitions) in owned}
        print(f"B joined: {len(mine)} of {len(VMS)} VMs (partitions {sorted(owned)}) "
              f"after {took:.1f} s")  # fmt: skip
        assert a.alive(), a.output()

        killed = time.monotonic()
        a.kill9()
        moved = await wait_until(
            "B to read every VM after A died",
            lambda: b.watcher.connected == set(VMS),
            MOVE_WITHIN_S,
        )
        print(f"kill -9 of bridge A: its {len(VMS) - len(mine)} VMs read by B "
              f"{moved:.1f} s later (group session timeout {SESSION_S:.0f} s)")  # fmt: skip
        assert time.monotonic() - killed < MOVE_WITHIN_S
        assert b.ownership.partitions == frozenset(range(s.kafka.partitions))
        before = b.lines
        await wait_until("B's lines acknowledged", lambda: b.lines > before + len(VMS), 10.0)
    finally:
        watching.cancel()
        a.stop()
        await b.stop()
        await fleet.stop()

    assert not overlap, f"VMs with two readers at once: {dict(overlap)}"
    async with reading_from_start(s, [topics.agent_raw]) as consumer:
        records: list[Any] = []
        while batches := await consumer.getmany(timeout_ms=1000):
            for got in batches.values():
                records += got
    # the share is computed as the producer partitions: every record where it was expected
    assert all(r.partition == vm_partition(r.key.decode(), s.kafka.partitions) for r in records)
    runs = _runs(records)
    assert set(runs) == set(VMS)
    for vm, conns in runs.items():
        assert len(conns) == len(set(conns)), f"VM {vm}: connections interleaved {conns}"
    moved_vms = [vm for vm in VMS if vm not in mine]
    assert all(len(runs[vm]) >= 2 for vm in moved_vms), "A's VMs were read by B after it"
