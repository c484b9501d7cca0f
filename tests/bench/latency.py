"""Agent -> browser latency of live metrics, beside a plain Kafka round trip (issue 11).

What a user sees: a simulated guest stamps a sample (``timestamp``, epoch ms, the
agent's clock), the whole pipeline carries it (unix socket, bridge, Kafka, worker,
Kafka, gateway, Socket.IO) and a browser-side client receives ``metricsUpdate``. The
client runs on the same machine, so both ends read one clock. Latency is receipt time
minus the sample's own timestamp; the timestamp has millisecond resolution and is
truncated, so a figure may read up to 1 ms high.

The peer, measured in the same run under the same load: one producer and one consumer
of a plain topic on the same broker (aiokafka, defaults tuned for latency), i.e. one
Kafka hop. The pipeline makes two hops (agent.raw, events.outbound), so twice the
peer's figure is the floor the machine allows at that moment.

Completeness: a VM that reports once a second must have every sample delivered; a
gap of more than 1.5 intervals between two consecutive samples of a watched VM
counts as a missed sample.

Run: ``python -m tests.bench.latency --url URL --vms vm-0001,... --seconds 30``, or
through ``tests/bench/test_latency.py`` which starts ``vmpulse up`` itself.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

__all__ = ["Latencies", "kafka_hop", "percentile", "watch"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Latencies:
    """Seconds from a sample's timestamp to its receipt, and the samples per VM."""

    values: list[float] = field(default_factory=list)
    per_vm: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, stamped: float, received: float) -> None:
        self.values.append(received - stamped)
        self.per_vm.setdefault(key, []).append(stamped)

    def missed(self, interval_s: float) -> int:
        """Samples missing between the first and the last one received of each VM."""
        lost = 0
        for stamps in self.per_vm.values():
            stamps = sorted(set(stamps))
            for a, b in itertools.pairwise(stamps):
                if b - a > 1.5 * interval_s:
                    lost += round((b - a) / interval_s) - 1
        return lost

    def duplicates(self) -> int:
        """Samples received more than once (the same VM and timestamp): at most once is
        not promised, but a duplicate on the live path is worth knowing about."""
        return sum(len(stamps) - len(set(stamps)) for stamps in self.per_vm.values())

    def expected(self, interval_s: float) -> int:
        """Samples the watched VMs should have delivered between their first and last."""
        return sum(round((max(s) - min(s)) / interval_s) + 1 for s in self.per_vm.values() if s)

    def summary(self) -> str:
        ms = [v * 1000 for v in self.values]
        if not ms:
            return "no samples"
        return (
            f"n={len(ms)} p50={percentile(ms, 0.5):.1f} ms p90={percentile(ms, 0.9):.1f} ms "
            f"p99={percentile(ms, 0.99):.1f} ms max={max(ms):.1f} ms "
            f"mean={statistics.fmean(ms):.1f} ms"
        )


def _stamp(timestamp: str) -> float:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


async def watch(
    url: str, token: str, vm_ids: Sequence[str], *, warmup_s: float, seconds: float
) -> Latencies:
    """Subscribe one Socket.IO client to ``vm_ids``; record latencies after ``warmup_s``."""
    client = socketio.AsyncClient(reconnection=False)
    result = Latencies()
    recording = False

    @client.on("metricsUpdate")  # type: ignore[untyped-decorator]
    async def on_update(payload: dict[str, Any]) -> None:
        received = time.time()
        if recording:
            result.add(str(payload["vmId"]), _stamp(str(payload["timestamp"])), received)

    await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    try:
        for vm in vm_ids:
            ack = await client.call("subscribe", {"vmId": vm}, timeout=10)
            if not (isinstance(ack, dict) and ack.get("ok")):
                raise RuntimeError(f"subscribe {vm} refused: {ack}")
        await asyncio.sleep(warmup_s)  # the run's warm-up, not a condition: nothing to wait for
        recording = True
        await asyncio.sleep(seconds)  # the measuring window itself
        recording = False
    finally:
        await client.disconnect()
    return result


async def kafka_hop(bootstrap: str, *, rate: float, warmup_s: float, seconds: float) -> Latencies:
    """One Kafka hop on the same broker: produce a stamped record, consume it (the peer)."""
    topic = f"bench.hop.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="latest", fetch_max_wait_ms=100
    )
    await producer.start()
    await consumer.start()
    result = Latencies()
    loop = asyncio.get_running_loop()
    start = loop.time()
    stop_at = start + warmup_s + seconds

    async def produce() -> None:
        n = 0
        while loop.time() < stop_at:
            await producer.send(topic, str(time.time()).encode())
            n += 1
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))

    async def consume() -> None:
        while loop.time() < stop_at + 1:
            got = await consumer.getmany(timeout_ms=200)
            received = time.time()
            for records in got.values():
                for record in records:
                    if loop.time() - start >= warmup_s:
                        result.add("hop", float(record.value), received)

    try:
        await asyncio.gather(produce(), consume())
    finally:
        await producer.stop()
        await consumer.stop()
    return result


def main(argv: Sequence[str] | None = None) -> None:
    from gateway.auth import issue_token
    from infra.config import DEV_JWT_SECRET

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--vms", required=True, help="comma-separated VM ids to watch")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--bootstrap", help="also measure one Kafka hop on this broker")
    args = p.parse_args(argv)
    token = issue_token(DEV_JWT_SECRET, "admin", admin=True)

    async def run() -> None:
        jobs: list[Any] = [
            watch(args.url, token, args.vms.split(","), warmup_s=args.warmup, seconds=args.seconds)
        ]
        if args.bootstrap:
            jobs.append(
                kafka_hop(args.bootstrap, rate=100, warmup_s=args.warmup, seconds=args.seconds)
            )
        results = await asyncio.gather(*jobs)
        print(f"agent -> browser: {results[0].summary()}; missed {results[0].missed(1.0)}")
        if args.bootstrap:
            print(f"one Kafka hop (peer): {results[1].summary()}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
