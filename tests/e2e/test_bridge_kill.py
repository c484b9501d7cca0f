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
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.topics import Topics
from vmpulse.config import Settings
from vmpulse.demo import demo_vm_ids

pytestmark = pytest.mark.integration

VMPULSE = str(Path(sys.executable).parent / "vmpulse")
VMS = 20


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        VMPULSE_KAFKA_BOOTSTRAP=str(settings.kafka_bootstrap),
        VMPULSE_TOPIC_PREFIX=settings.topic_prefix,
        VMPULSE_SOCKET_DIR=str(settings.socket_dir),
        VMPULSE_DATA_DIR=str(settings.data_dir),
        VMPULSE_PARTITIONS=str(settings.partitions),
    )
    return env


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([VMPULSE, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


class Raw:
    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.lines: list[Any] = []
        self.control: list[Any] = []

    async def until(self, what: str, cond: Callable[[], bool], within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {len(self.lines)} lines")
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    if any(k == "control" for k, _ in r.headers):
                        self.control.append(r)
                    else:
                        self.lines.append(r)

    async def drain(self) -> None:
        """Read until a whole second brings nothing new."""
        while True:
            got = await self.consumer.getmany(timeout_ms=1000)
            if not got:
                return
            for records in got.values():
                for r in records:
                    is_control = any(k == "control" for k, _ in r.headers)
                    (self.control if is_control else self.lines).append(r)

    def connections(self, vm: str) -> set[bytes]:
        return {
            dict(r.headers)["conn_id"]
            for r in self.control
            if r.key == vm.encode() and dict(r.headers)["control"] == b"connected"
        }


async def test_kill_9_under_load_then_restart_reconnects_all_without_duplicates(
    settings: Settings, topics_ready: Topics
) -> None:
    env = _env(settings)
    vms = demo_vm_ids(VMS)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    tps = [TopicPartition(topics_ready.agent_raw, p) for p in range(settings.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    raw = Raw(consumer)
    logs = settings.data_dir
    sim = _spawn(
        ["simulate", "--vms", str(VMS), "--interval", "0.02", "--progress", "1"],
        env,
        logs / "sim.log",
    )
    bridge = _spawn(["bridge"], env, logs / "bridge1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        await raw.until("load from every VM", lambda: len(raw.lines) > 3000, 60.0)
        assert {r.key.decode() for r in raw.lines} == set(vms)
        bridge.send_signal(signal.SIGKILL)
        bridge.wait(10)
        before = len(raw.lines)
        second = _spawn(["bridge"], env, logs / "bridge2.log")
        await raw.until(
            "every VM reconnected and sending",
            lambda: (
                all(len(raw.connections(vm)) == 2 for vm in vms) and len(raw.lines) > before + 3000
            ),
            60.0,
        )
        second.send_signal(signal.SIGINT)
        assert second.wait(30) == 0
        await raw.drain()
    finally:
        for proc in (bridge, second, sim):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        await consumer.stop()
    counts = collections.Counter((r.key, r.value) for r in raw.lines)
    dupes = [k for k, n in counts.items() if n > 1]
    print(f"{len(raw.lines)} lines ({before} before the kill), {len(dupes)} duplicated")
    assert dupes == []
    for vm in vms:
        assert len(raw.connections(vm)) == 2, vm
