"""A `vmpulse worker` child process and what tests need around it: lag, topics, store counts.

chDB lets one process own a directory, so the worker's store is read by a
separate short-lived process once the worker stopped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.topics import Topics
from tests.support.cpu import process_cpu_seconds

__all__ = [
    "WorkerProcess",
    "committed_and_end",
    "drained",
    "metrics_line",
    "produce_paced",
    "read_store",
    "topic_partitions",
]


class WorkerProcess:
    """`vmpulse worker` as a child process with the test's environment."""

    def __init__(self, settings: Settings, log: Path, **env: str) -> None:
        self.env = {
            **os.environ,
            "VMPULSE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap or "",
            "VMPULSE_TOPIC_PREFIX": settings.kafka.topic_prefix,
            "VMPULSE_DATA_DIR": str(settings.data_dir),
            "VMPULSE_PARTITIONS": str(settings.kafka.partitions),
            "VMPULSE_WORKER_ID": "crash-test-worker",
            "VMPULSE_KAFKA_SESSION_TIMEOUT_S": "6",
            **env,
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

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the running worker used so far (Linux /proc)."""
        return process_cpu_seconds(self.pid)

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
    """A complete dialect-1 ``system_metrics`` line of about 1 KB, as agents send them."""
    return json.dumps(
        {
            "type": "system_metrics",
            "vmId": vm_id,
            "timestamp": ts.isoformat(),
            "metrics": {
                "cpu": {
                    "usage_percent": seq % 100,
                    "cores_usage": [12.5, 22.5, 32.5, 42.5, 52.5, 62.5, 72.5, 82.5],
                    "temperature": None,
                },
                "memory": {
                    "total_kb": 8_000_000,
                    "used_kb": seq,
                    "available_kb": 4_000_000,
                    "swap_total_kb": 2_000_000,
                    "swap_used_kb": 0,
                },
                "disk": {
                    "usage_stats": [
                        {"mount_point": "/", "total_gb": 100.0, "used_gb": 40.0,
                         "available_gb": 60.0},
                        {"mount_point": "/data", "total_gb": 500.0, "used_gb": 100.0,
                         "available_gb": 400.0},
                    ],
                    "io_stats": {"read_bytes_per_sec": 1000, "write_bytes_per_sec": 2000},
                },
                "network": {
                    "stats": [
                        {"interface": "eth0", "bytes_received": 123456789, "bytes_sent": 98765432,
                         "packets_received": 123456, "packets_sent": 65432},
                    ]
                },
                "system": {
                    "uptime": 123456,
                    "load_average": {"load1min": 0.5, "load5min": 0.4, "load15min": 0.3},
                },
            },
        }
    ).encode()  # fmt: skip


async def committed_and_end(settings: Settings, topics: Topics, group: str) -> tuple[int, int]:
    """Sum of the group's committed offsets, then of the end offsets, over agent.raw."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topics.agent_raw, p) for p in range(settings.kafka.partitions)]
        try:
            committed = await admin.list_consumer_group_offsets(group)
        except GroupCoordinatorNotAvailableError:
            committed = {}  # a fresh broker creates its offsets topic on first use
        end = await consumer.end_offsets(tps)  # after: the lag is never negative
        done = sum(
            committed[tp].offset for tp in tps if tp in committed and committed[tp].offset > 0
        )
        return done, sum(end[tp] for tp in tps)
    finally:
        await consumer.stop()
        await admin.close()


async def drained(settings: Settings, topics: Topics, group: str) -> bool:
    done, end = await committed_and_end(settings, topics, group)
    return done >= end


async def topic_partitions(settings: Settings, topics: Topics) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics.all()))
        return {t["topic"]: len(t["partitions"]) for t in described if t.get("partitions")}
    finally:
        await admin.close()


QUERY = """
import asyncio, json, sys
from store.clickhouse import ClickHouseStore

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


async def produce_paced(
    settings: Settings,
    topics: Topics,
    vms: list[str],
    rate: float,
    stop_at: float,
    stop: asyncio.Event | None = None,
) -> int:
    """Metrics lines at ``rate``/s, round robin over ``vms``, until ``stop_at`` (loop time)
    or until ``stop`` is set, whichever comes first.

    Returns how many were acknowledged. Agent clocks stay near the receive time
    (off by more than the 5 min tolerance the series would use the receive time)
    and one millisecond apart, so (vm, ts) is unique per message.
    """
    producer = make_producer(settings.kafka.bootstrap or "", linger_ms=10)
    await producer.start()
    sent = 0
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    futures = []
    try:
        while loop.time() < stop_at and not (stop is not None and stop.is_set()):
            # the target stops growing at stop_at: a producer slower than the rate on a
            # loaded machine catches up to it and ends, instead of chasing a moving goal
            while sent < int((min(loop.time(), stop_at) - start) * rate):
                vm = vms[sent % len(vms)]
                ts = t0 + dt.timedelta(milliseconds=sent)
                line = metrics_line(vm, sent, ts)
                futures.append(await producer.send(topics.agent_raw, line, key=vm.encode()))
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent
