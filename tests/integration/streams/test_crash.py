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
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.topics import Topics
from vmpulse.config import Settings
from vmpulse.kafka_io import make_producer

pytestmark = pytest.mark.integration

RATE = 2000  # messages per second
PRODUCE_S = 20.0
KILLS = 3
VMS = [f"crash-vm-{i:03d}" for i in range(50)]


class WorkerProcess:
    """`vmpulse worker` as a child process with the test's environment."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.env = {
            **os.environ,
            "VMPULSE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
            "VMPULSE_TOPIC_PREFIX": settings.topic_prefix,
            "VMPULSE_DATA_DIR": str(settings.data_dir),
            "VMPULSE_PARTITIONS": str(settings.partitions),
            "VMPULSE_WORKER_ID": "crash-test-worker",
            "VMPULSE_KAFKA_SESSION_TIMEOUT_S": "6",
        }
        self.exe = str(Path(sys.executable).with_name("vmpulse"))
        self.log = log.open("ab")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.log.write(f"\n--- start {self.starts} ---\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen(
            [self.exe, "worker"], env=self.env, stdout=self.log, stderr=self.log
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def metrics_line(vm_id: str, seq: int, ts: dt.datetime) -> bytes:
    return json.dumps(
        {
            "type": "system_metrics",
            "vmId": vm_id,
            "timestamp": ts.isoformat(),
            "metrics": {
                "cpu": {"usage_percent": seq % 100},
                "memory": {"used_kb": seq, "total_kb": 8_000_000},
            },
        }
    ).encode()


async def produce(settings: Settings, topics: Topics, stop_at: float) -> int:
    """Produce at RATE/s until ``stop_at`` (monotonic); returns how many were acknowledged."""
    producer = make_producer(settings.kafka_bootstrap or "", linger_ms=10)
    await producer.start()
    sent = 0
    t0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
    loop = asyncio.get_running_loop()
    start = loop.time()
    futures = []
    try:
        while loop.time() < stop_at:
            due = int((loop.time() - start) * RATE)
            while sent < due:
                vm = VMS[sent % len(VMS)]
                ts = t0 + dt.timedelta(milliseconds=sent)  # unique per message
                futures.append(
                    await producer.send(
                        topics.agent_raw, metrics_line(vm, sent, ts), key=vm.encode()
                    )
                )
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


async def drained(settings: Settings, topics: Topics, group: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topics.agent_raw, p) for p in range(settings.partitions)]
        end = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group)
        return all(tp in committed and committed[tp].offset >= end[tp] for tp in tps)
    finally:
        await consumer.stop()
        await admin.close()


async def topic_partitions(settings: Settings, topics: Topics) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics.all()))
        return {t["topic"]: len(t["partitions"]) for t in described if t.get("partitions")}
    finally:
        await admin.close()


QUERY = """
import asyncio, json, sys
from streams.store import ClickHouseStore

async def main():
    store = ClickHouseStore(sys.argv[1])
    await store.start()
    out = {}
    for name, sql in (
        ("rows", "SELECT count() FROM system_metrics"),
        ("positions", "SELECT uniqExact(kafka_partition, kafka_offset) FROM system_metrics"),
        ("samples", "SELECT uniqExact(vm_id, ts) FROM system_metrics"),
        ("rollup", "SELECT sum(samples) FROM system_metrics_1m"),
        ("mismatched_minutes",
         "SELECT count() FROM (SELECT vm_id, toStartOfMinute(ts) AS b, count() AS n "
         "FROM system_metrics GROUP BY vm_id, b) r FULL OUTER JOIN "
         "(SELECT vm_id, bucket AS b, sum(samples) AS n FROM system_metrics_1m "
         "GROUP BY vm_id, b) m USING (vm_id, b) WHERE r.n != m.n"),
    ):
        out[name] = (await store.query(sql))["rows"][0][0]
    store.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def read_store(settings: Settings) -> dict[str, int]:
    """Counts from the worker's chDB directory, read by a separate process."""
    done = subprocess.run(
        [sys.executable, "-c", QUERY, f"chdb://{settings.data_dir / 'clickhouse'}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=str(Path(__file__).resolve().parents[3]),
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def test_kill_9_three_times_loses_and_doubles_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    seed = int(os.environ.get("VMPULSE_CRASH_SEED", "20261125"))
    rng = random.Random(seed)
    print(f"crash test seed {seed}, {RATE} msg/s for {PRODUCE_S} s")
    topics = Topics(settings.topic_prefix)
    group = f"{settings.topic_prefix}vmpulse-worker"
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        # the worker creates every topic at start with the configured partitions
        deadline = time.monotonic() + 60
        while len(await topic_partitions(settings, topics)) < len(topics.all()):
            assert time.monotonic() < deadline, "worker did not create its topics"
            await asyncio.sleep(0.2)
        assert set((await topic_partitions(settings, topics)).values()) == {settings.partitions}

        loop = asyncio.get_running_loop()
        begin = loop.time()
        kills = sorted(rng.uniform(2.0, PRODUCE_S - 2.0) for _ in range(KILLS))
        print(f"kill -9 at {[round(k, 1) for k in kills]} s")
        producing = asyncio.create_task(produce(settings, topics, begin + PRODUCE_S))
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
    print(f"produced {produced}, drained {drained_in:.1f} s after the last send: {found}")
    assert worker.starts == KILLS + 1
    assert found["rows"] == produced
    assert found["positions"] == produced
    assert found["samples"] == produced
    assert found["rollup"] == produced
    assert found["mismatched_minutes"] == 0
