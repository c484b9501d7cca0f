"""Crash test: kill -9 the worker three times while metrics flow; nothing lost, nothing doubled.

A real `vmpulse worker` process (its own chDB directory) consumes agent.raw
while this test produces metrics lines at RATE messages a second. At three
seeded random moments the worker is killed with SIGKILL and started again.
After the stream drained (the group's committed offsets reached the end of
every partition), the worker is stopped and the store is read from a separate
process (chDB: one process owns a directory): every produced message must be
in system_metrics exactly once, and the 1-minute rollup must count exactly the
raw rows.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

from infra.config import Settings
from schemas.topics import Topics
from streams.app import ingest_group_id

from .worker_process import WorkerProcess, drained, produce_paced, read_store, topic_partitions

pytestmark = pytest.mark.integration

RATE = 2000  # messages per second
PRODUCE_S = 20.0
KILLS = 3
VMS = [f"crash-vm-{i:03d}" for i in range(50)]


async def test_kill_9_three_times_loses_and_doubles_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    seed = int(os.environ.get("VMPULSE_CRASH_SEED", "20261125"))
    rng = random.Random(seed)
    print(f"crash test seed {seed}, {RATE} msg/s for {PRODUCE_S} s")
    topics = Topics(settings.kafka.topic_prefix)
    group = ingest_group_id(settings.kafka.topic_prefix)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        # the worker creates every topic at start with the configured partitions
        deadline = time.monotonic() + 60
        while len(await topic_partitions(settings, topics)) < len(topics.all()):
            assert time.monotonic() < deadline, "worker did not create its topics"
            await asyncio.sleep(0.2)
        assert set((await topic_partitions(settings, topics)).values()) == {
            settings.kafka.partitions
        }

        loop = asyncio.get_running_loop()
        begin = loop.time()
        kills = sorted(rng.uniform(2.0, PRODUCE_S - 2.0) for _ in range(KILLS))
        print(f"kill -9 at {[round(k, 1) for k in kills]} s")
        producing = asyncio.create_task(
            produce_paced(settings, topics, VMS, RATE, begin + PRODUCE_S)
        )
        for at in kills:
            await asyncio.sleep(max(0.0, begin + at - loop.time()))
            worker.kill9()
            worker.start()
        produced = await producing

        deadline = time.monotonic() + 90
        while not await drained(settings, topics, group):
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            await asyncio.sleep(0.5)
        drained_in = loop.time() - begin - PRODUCE_S
    finally:
        worker.stop()

    found = await asyncio.to_thread(read_store, settings)
    repairs = (tmp_path / "worker.log").read_text().count("stored but not committed")
    print(
        f"produced {produced}, drained {drained_in:.1f} s after the last send: {found}; "
        f"{repairs} blocks repaired after a kill"
    )
    assert worker.starts == KILLS + 1
    assert found["rows"] == produced
    assert found["positions"] == produced
    assert found["samples"] == produced
    assert found["rollup"] == produced
    assert found["mismatched_minutes"] == 0
