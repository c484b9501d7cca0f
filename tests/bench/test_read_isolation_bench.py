"""Reads do not starve ingest (`make bench`, not in the default run; docs/BENCHMARKS.md).

One `vmpulse up` process (worker, bridge, gateway and one simulated VM, on the
session's broker) stores metrics lines offered at VMPULSE_BENCH_READ_RATE
(default 1,500/s: below the worker's capacity on a shared 2-core machine, so
that a phase measures the reads, not a saturated worker) through five phases of
VMPULSE_BENCH_PHASE_S seconds (default 15), quiet and reading in turn: in a
reading phase one admin loops the two-year history of a VM whose 1-hour rollup
holds two years of rows. Turns average out the machine's drift; the peer of
the reading phases is the quiet ones of the same run.

The stored rate is the slope of the worker's committed offsets during a phase
(as in test_worker_bench.py), the lag the mean of end offset minus committed
offset, sampled every 0.25 s. The reading user honours 429 and its Retry-After,
as a client should; the run also prints how many history answers it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from gateway.auth import issue_token
from infra.broker import free_port
from infra.config import DEV_JWT_SECRET, Settings
from schemas.topics import Topics
from streams.app import ingest_group_id
from tests.bench.test_worker_bench import _produce
from vmpulse.demo import demo_vm_ids

pytestmark = pytest.mark.bench

RATE = int(os.environ.get("VMPULSE_BENCH_READ_RATE", "1500"))
PHASE_S = float(os.environ.get("VMPULSE_BENCH_PHASE_S", "15"))
PARTITIONS = 6
HOURS = 2 * 365 * 24
VMPULSE = str(Path(sys.executable).parent / "vmpulse")

SEED = """
import asyncio, sys
from store.clickhouse import ClickHouseStore

async def main():
    store = ClickHouseStore(sys.argv[1])
    await store.start()
    # the migrations keep a year; `vmpulse up` below is told to keep 800 days
    await store.command("ALTER TABLE system_metrics_1h MODIFY TTL bucket + INTERVAL 800 DAY")
    vms = sys.argv[2].split(",")
    for vm in vms:
        await store.command(
            "INSERT INTO system_metrics_1h SELECT vm_id, bucket, avgState(cpu), max(cpu), "
            "quantileState(0.95)(cpu), avgState(mem), max(mem), quantileState(0.95)(mem), "
            "toUInt64(count()) FROM (SELECT '" + vm + "' AS vm_id, "
            "toStartOfHour(now() - toIntervalHour(number)) AS bucket, "
            "toFloat32(number % 100) AS cpu, toUInt64(1000 + number) AS mem "
            "FROM numbers(" + sys.argv[3] + ")) GROUP BY vm_id, bucket"
        )
    print((await store.query("SELECT count() FROM system_metrics_1h"))["rows"][0][0])
    store.close()

asyncio.run(main())
"""


def _seed(data_dir: Path, vms: list[str]) -> int:
    """Two years of hourly rollup rows per VM, written before `vmpulse up` owns the store."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SEED,
            f"chdb://{data_dir / 'clickhouse'}",
            ",".join(vms),
            str(HOURS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def _start_up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [VMPULSE, "up", "--vms", "1"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


class Reading:
    """One admin looping the two-year history of one VM, honouring 429 Retry-After."""

    def __init__(self, url: str, vm: str) -> None:
        self.url = f"{url}/api/vms/{vm}/metrics"
        self.headers = {
            "Authorization": f"Bearer {issue_token(DEV_JWT_SECRET, 'admin', admin=True)}"
        }
        self.answers: list[float] = []
        self.points = 0
        self.refused = 0

    async def loop(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                now = dt.datetime.now(dt.UTC)
                params = {
                    "from": (now - dt.timedelta(days=730)).isoformat(),
                    "to": now.isoformat(),
                }
                started = time.monotonic()
                async with http.get(self.url, params=params, headers=self.headers) as resp:
                    body: dict[str, Any] = await resp.json()
                    if resp.status == 429:
                        self.refused += 1
                        await asyncio.sleep(float(resp.headers["Retry-After"]))
                        continue
                    assert resp.status == 200, body
                assert body["resolution"] == "1h" and body["source"] == "system_metrics_1h"
                self.answers.append(time.monotonic() - started)
                self.points = len(body["rows"])


class Offsets:
    """The ingest group's committed offsets and agent.raw's end offsets, on open clients.

    (committed_and_end opens clients per call: too slow to sample four times a second
    on a loaded machine.)
    """

    def __init__(self, settings: Settings, topics: Topics, group: str) -> None:
        self.group = group
        self.tps = [TopicPartition(topics.agent_raw, p) for p in range(settings.kafka.partitions)]
        self.admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap)

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def sample(self) -> tuple[int, int]:
        committed = await self.admin.list_consumer_group_offsets(self.group)
        end = await self.consumer.end_offsets(self.tps)
        done = sum(committed[tp].offset for tp in self.tps if tp in committed)
        return done, sum(end[tp] for tp in self.tps)


async def _phase(offsets: Offsets, seconds: float) -> tuple[float, float]:
    """(stored msgs/s, mean lag in msgs) over ``seconds`` of the running load."""
    loop = asyncio.get_running_loop()
    samples: list[tuple[float, int, int]] = []
    end_at = loop.time() + seconds
    while loop.time() < end_at:
        done, end = await offsets.sample()
        samples.append((loop.time(), done, end))
        await asyncio.sleep(0.25)
    assert len(samples) > 4, "too few samples: the machine is too busy to measure"
    (t0, done0, _), (t1, done1, _) = samples[0], samples[-1]
    return (done1 - done0) / (t1 - t0), sum(e - d for _, d, e in samples) / len(samples)


@pytest.mark.timeout(1200)
async def test_history_reads_do_not_slow_ingest(settings: Settings, tmp_path: Path) -> None:
    data_dir = settings.data_dir / "up"  # short: unix socket paths stay under 108 bytes
    data_dir.mkdir()
    vm = demo_vm_ids(1)[0]
    rollup_rows = _seed(data_dir, [vm])
    prefix = f"r{uuid.uuid4().hex[:8]}."
    s = settings.replace(kafka={"topic_prefix": prefix, "partitions": PARTITIONS})
    topics = Topics(prefix)
    group = ingest_group_id(prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
    env.update(
        VMPULSE_DATA_DIR=str(data_dir),
        VMPULSE_KAFKA_BOOTSTRAP=settings.kafka.bootstrap or "",
        VMPULSE_TOPIC_PREFIX=prefix,
        VMPULSE_PARTITIONS=str(PARTITIONS),
        VMPULSE_GATEWAY_ADDR=f"127.0.0.1:{free_port()}",
        VMPULSE_ROLLUP_TTL_DAYS="800",  # keep the seeded two years
    )
    log = tmp_path / "up.log"
    up = _start_up(env, log)
    try:
        deadline = time.monotonic() + 120
        while not (data_dir / "up.json").exists():
            alive = up.poll() is None and time.monotonic() < deadline
            assert alive, f"vmpulse up did not start: {log.read_text()[-3000:]}"
            await asyncio.sleep(0.2)
        url = json.loads((data_dir / "up.json").read_text())["gateway_url"]
        vms = [f"bench-vm-{i:04d}" for i in range(1000)]
        # offered until cancelled below, whatever the phases take
        producing = asyncio.create_task(_produce(s, topics, vms, RATE * 3600, RATE))
        offsets = Offsets(s, topics, group)
        await offsets.start()
        try:
            # the backlog of the worker's start-up drained: the phases measure the
            # offered load, not catching up
            caught_up = time.monotonic() + 300
            while True:
                done, end = await offsets.sample()
                if done > 0 and end - done < 2 * RATE:
                    break
                assert not producing.done(), producing
                assert time.monotonic() < caught_up, (done, end)
                await asyncio.sleep(0.5)
            quiet: list[tuple[float, float]] = []
            reads: list[tuple[float, float]] = []
            reading = Reading(url, vm)
            for turn in range(5):
                if turn % 2 == 0:
                    quiet.append(await _phase(offsets, PHASE_S))
                    continue
                stop = asyncio.Event()
                reader = asyncio.create_task(reading.loop(stop))
                reads.append(await _phase(offsets, PHASE_S))
                stop.set()
                await reader
        finally:
            await offsets.stop()
        assert not producing.done(), producing
        producing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producing
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
    quiet_rate = sum(r for r, _ in quiet) / len(quiet)
    quiet_lag = sum(lag for _, lag in quiet) / len(quiet)
    read_rate = sum(r for r, _ in reads) / len(reads)
    read_lag = sum(lag for _, lag in reads) / len(reads)
    answers = sorted(reading.answers)
    turns = " / ".join(f"{r:,.0f}" for r, _ in _interleave(quiet, reads))
    lags = " / ".join(f"{lag:,.0f}" for _, lag in _interleave(quiet, reads))
    print(
        f"\nreads vs ingest at {RATE:,} msgs/s offered, 5 x {PHASE_S:.0f} s phases (quiet "
        f"first, then in turn), rollup {rollup_rows:,} rows: stored {turns} msgs/s, "
        f"reading = {read_rate / quiet_rate:.1%} of quiet; lag {lags} msgs, reading = "
        f"{read_lag / quiet_lag:.1%} of quiet; two-year history answers {len(answers)} "
        f"({len(answers) / (2 * PHASE_S):.1f}/s, {reading.points:,} points each, median "
        f"{answers[len(answers) // 2] * 1000:.0f} ms), 429s {reading.refused}"
    )
    assert answers, "no history answer during the reading phases"
    assert read_rate >= 0.9 * quiet_rate, "ingest slowed by more than 10 % while reading"
    assert read_lag <= 1.1 * quiet_lag, "lag grew by more than 10 % while reading"


def _interleave(
    quiet: list[tuple[float, float]], reads: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    order = [quiet[0]]
    for read, after in zip(reads, quiet[1:], strict=True):
        order += [read, after]
    return order
