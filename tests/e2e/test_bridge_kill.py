"""kill -9 of `vmpulse bridge` under load, then a restart, against `vmpulse simulate`.

Both run as real subprocesses the way an operator runs them. After the kill
the restarted bridge must reconnect to every VM's socket, and no line that
Kafka holds may appear twice: the simulator never resends, and the producer is
idempotent, so retries inside the bridge cannot duplicate either. (Lines the
dead bridge had read but Kafka had not acknowledged are lost with it; that is
the documented at-most-once edge of a crash, and it is not what is counted.)
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
from pathlib import Path

import pytest

from infra.config import Settings
from schemas.topics import Topics
from tests.e2e.support import VMPULSE
from tests.support.kafka import Collector, reading_from_start
from vmpulse.demo import demo_vm_ids

pytestmark = pytest.mark.integration

VMS = 20


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        VMPULSE_KAFKA_BOOTSTRAP=str(settings.kafka.bootstrap),
        VMPULSE_TOPIC_PREFIX=settings.kafka.topic_prefix,
        VMPULSE_SOCKET_DIR=str(settings.bridge.socket_dir),
        VMPULSE_DATA_DIR=str(settings.data_dir),
        VMPULSE_PARTITIONS=str(settings.kafka.partitions),
    )
    return env


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([VMPULSE, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def connections(found: Collector, vm: str) -> set[bytes]:
    """The conn_ids of the bridge's ``connected`` presence records for ``vm``."""
    return {
        dict(r.headers)["conn_id"]
        for r in found.control
        if r.key == vm.encode() and dict(r.headers)["control"] == b"connected"
    }


async def test_kill_9_under_load_then_restart_reconnects_all_without_duplicates(
    settings: Settings, topics_ready: Topics
) -> None:
    env = _env(settings)
    vms = demo_vm_ids(VMS)
    logs = settings.data_dir
    async with reading_from_start(settings, (topics_ready.agent_raw,)) as consumer:
        found = Collector(consumer, topics_ready)
        sim = _spawn(
            ["simulate", "--vms", str(VMS), "--interval", "0.02", "--progress", "1"],
            env,
            logs / "sim.log",
        )
        bridge = _spawn(["bridge"], env, logs / "bridge1.log")
        second: subprocess.Popen[bytes] | None = None
        try:
            await found.wait_for("load from every VM", lambda: len(found.raw) > 3000, 60.0)
            assert {r.key.decode() for r in found.raw} == set(vms)
            bridge.send_signal(signal.SIGKILL)
            bridge.wait(10)
            before = len(found.raw)
            second = _spawn(["bridge"], env, logs / "bridge2.log")
            await found.wait_for(
                "every VM reconnected and sending",
                lambda: (
                    all(len(connections(found, vm)) == 2 for vm in vms)
                    and len(found.raw) > before + 3000
                ),
                60.0,
            )
            second.send_signal(signal.SIGINT)
            assert second.wait(30) == 0
            await found.drain()
        finally:
            for proc in (bridge, second, sim):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    counts = collections.Counter((r.key, r.value) for r in found.raw)
    dupes = [k for k, n in counts.items() if n > 1]
    print(f"{len(found.raw)} lines ({before} before the kill), {len(dupes)} duplicated")
    assert dupes == []
    for vm in vms:
        assert len(connections(found, vm)) == 2, vm
