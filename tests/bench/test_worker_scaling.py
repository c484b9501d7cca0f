"""Workers side by side (issue 14.3): throughput and CPU per message with 1, 2 and 4
`vmpulse worker` processes on 12 partitions, and the pause when one joins or leaves.

chDB lets one process own a store directory and no ClickHouse server runs here,
so each worker process has its own chDB directory (VMPULSE_DATA_DIR per process);
the rows are what Kafka's committed offsets say, summed over the group (every
worker commits only after its store acknowledged). On a server every worker
would write the same store; the exactly-once test of several workers on one
store is tests/integration/streams/test_two_workers.py, in-process.

Knobs: VMPULSE_BENCH_SCALE_BACKLOG (messages per run, default 60,000),
VMPULSE_BENCH_SCALE_WORKERS (default "1,2,4"), VMPULSE_BENCH_SCALE_RATE (the
offered rate of the rebalance run, default 1,500/s). Figures go to
docs/BENCHMARKS.md ("Workers side by side").
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from infra.config import Settings
from infra.kafka_io import ensure_settings_topics
from schemas.topics import Topics
from streams.app import ingest_group_id
from tests.bench.test_worker_bench import _produce
from tests.integration.streams.worker_process import committed_and_end
from tests.support.kafka import wait_group_stable
from tests.support.stages import StageProcess, stage_env

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

PARTITIONS = 12
BACKLOG = int(os.environ.get("VMPULSE_BENCH_SCALE_BACKLOG", "60000"))
COUNTS = [int(n) for n in os.environ.get("VMPULSE_BENCH_SCALE_WORKERS", "1,2,4").split(",")]
RATE = float(os.environ.get("VMPULSE_BENCH_SCALE_RATE", "1500"))
VMS = [f"scale-vm-{i:05d}" for i in range(1000)]


def _workers(s: Settings, work: Path, count: int, first: int = 1) -> list[StageProcess]:
    made = []
    for i in range(first, first + count):
        data = work / f"worker-{i}"
        data.mkdir(parents=True, exist_ok=True)
        env = stage_env(
            s, data, VMPULSE_WORKER_ID=f"scale-{i}", VMPULSE_KAFKA_SESSION_TIMEOUT_S="6"
        )
        made.append(StageProcess("worker", f"worker-{i}", env, work))
    return made


@pytest.mark.parametrize("count", COUNTS)
async def test_throughput_and_cpu_per_message_by_worker_count(
    settings: Settings, tmp_path: Path, count: int
) -> None:
    s = settings.replace(
        kafka={"topic_prefix": f"w{uuid.uuid4().hex[:8]}.", "partitions": PARTITIONS}
    )
    topics = await ensure_settings_topics(s)
    group = ingest_group_id(s.kafka.topic_prefix)
    workers = _workers(s, tmp_path, count)
    for w in workers:
        w.start()
    try:
        await wait_group_stable(s.kafka.bootstrap or "", group, 120, members=count)
        cpu0 = sum(w.cpu_seconds() for w in workers)
        loop = asyncio.get_running_loop()
        start = loop.time()
        producing = asyncio.create_task(_produce(s, topics, VMS, BACKLOG, None))
        done = 0
        while done < BACKLOG:
            assert all(w.alive() for w in workers)
            await asyncio.sleep(0.25)
            done, _ = await committed_and_end(s, topics, group)
        elapsed = loop.time() - start
        cpu = sum(w.cpu_seconds() for w in workers) - cpu0
        produced_in = await producing
    finally:
        for w in workers:
            w.stop()
    print(
        f"\n{count} worker process(es), {PARTITIONS} partitions, own chDB directory each "
        f"(rows of all counted via the group's commits): {BACKLOG:,} msgs stored in "
        f"{elapsed:.1f} s = {BACKLOG / elapsed:,.0f} msgs/s; CPU {cpu:.1f} s = "
        f"{cpu / BACKLOG * 1e6:.0f} us/msg (producer done after {produced_in:.1f} s); "
        f"load average {os.getloadavg()[0]:.1f}"
    )


async def _longest_stall(s: Settings, topics: Topics, group: str, seconds: float) -> float:
    """The longest time the group's committed offsets did not advance, over ``seconds``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    last_done, last_move, longest = -1, loop.time(), 0.0
    while loop.time() < end:
        done, _ = await committed_and_end(s, topics, group)
        now = loop.time()
        if done != last_done:
            longest = max(longest, now - last_move)
            last_done, last_move = done, now
        await asyncio.sleep(0.2)
    return max(longest, loop.time() - last_move)


async def test_rebalance_pause_when_a_worker_joins_or_leaves(
    settings: Settings, tmp_path: Path
) -> None:
    s = settings.replace(
        kafka={"topic_prefix": f"r{uuid.uuid4().hex[:8]}.", "partitions": PARTITIONS}
    )
    topics = await ensure_settings_topics(s)
    group = ingest_group_id(s.kafka.topic_prefix)
    two = _workers(s, tmp_path, 2)
    third = _workers(s, tmp_path, 1, first=3)[0]
    for w in two:
        w.start()
    try:
        await wait_group_stable(s.kafka.bootstrap or "", group, 120, members=2)
        total = int(RATE * 60)
        producing = asyncio.create_task(_produce(s, topics, VMS, total, RATE))
        quiet = await _longest_stall(s, topics, group, 12.0)
        third.start()
        joined = await _longest_stall(s, topics, group, 15.0)
        two[0].stop()  # SIGTERM: a graceful leave
        left = await _longest_stall(s, topics, group, 15.0)
        producing.cancel()
    finally:
        for w in [*two, third]:
            w.stop()
    print(
        f"\nrebalance, 2 -> 3 -> 2 worker processes on {PARTITIONS} partitions at {RATE:,.0f} "
        f"msgs/s offered (own chDB directory each): longest stall of the committed offsets "
        f"{quiet:.1f} s steady, {joined:.1f} s when one joined, {left:.1f} s when one left "
        f"(SIGTERM); load average {os.getloadavg()[0]:.1f}"
    )
