"""CPU of consuming agent.raw with aiokafka beside librdkafka, on a running `vmpulse up`.

Why: at every fleet size a large share of `up`'s event-loop thread is aiokafka's fetch
machinery (docs/BENCHMARKS.md, session 8), and librdkafka does the same work in C threads.
This measures what the swap would free before anyone makes it: one consumer of each kind
(its own group, from the latest offsets, the worker's ``fetch_max_wait_ms``) reads the
same topics of the same pipeline in turn, and the process's CPU per record is printed.

Run against a pipeline that is up (the bootstrap is in ``<data dir>/up.json``)::

    .venv/bin/vmpulse up --vms 200 &
    .venv/bin/python -m tests.bench.consumer_cost --bootstrap 127.0.0.1:PORT --rounds 2

Rounds alternate the two clients: the machine is shared, compare within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

_TOPICS = ("agent.raw", "hypervisor.events")

FETCH_WAIT_MS = 10
"""Both consumers at the fetch wait the worker's aiokafka consumer had (session 8's figures);
the live consumers now wait 100 ms (infra/kafka_io.py, LIVE_FETCH_WAIT_MS)."""


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def _report(client: str, cpu_s: float, records: int, seconds: float) -> None:
    per_record = cpu_s / records * 1e6 if records else float("nan")
    print(
        f"{client:10s} {100 * cpu_s / seconds:5.1f} % of a core, "
        f"{records / seconds:7.0f} records/s, {per_record:6.1f} us a record",
        flush=True,
    )


async def _aiokafka(bootstrap: str, warmup_s: float, seconds: float) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *_TOPICS,
        bootstrap_servers=bootstrap,
        group_id=f"consumer-cost-{uuid.uuid4().hex}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        start = time.monotonic()
        while time.monotonic() - start < warmup_s:  # joins, and drains what was there
            await consumer.getmany(timeout_ms=100)
        records, cpu0, t0 = 0, _cpu_s(), time.monotonic()
        while (now := time.monotonic()) - t0 < seconds:
            got = await consumer.getmany(timeout_ms=100)
            records += sum(len(batch) for batch in got.values())
        _report("aiokafka", _cpu_s() - cpu0, records, now - t0)
    finally:
        await consumer.stop()


def _librdkafka(bootstrap: str, warmup_s: float, seconds: float) -> None:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"consumer-cost-{uuid.uuid4().hex}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": FETCH_WAIT_MS,
            "fetch.min.bytes": 1,
        }
    )
    consumer.subscribe(list(_TOPICS))
    try:
        start = time.monotonic()
        while time.monotonic() - start < warmup_s:
            consumer.consume(500, 0.1)
        records, cpu0, t0 = 0, _cpu_s(), time.monotonic()
        while (now := time.monotonic()) - t0 < seconds:
            records += sum(1 for m in consumer.consume(500, 0.1) if m.error() is None)
        _report("librdkafka", _cpu_s() - cpu0, records, now - t0)
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for _ in range(args.rounds):
        asyncio.run(_aiokafka(args.bootstrap, args.warmup, args.seconds))
        _librdkafka(args.bootstrap, args.warmup, args.seconds)


if __name__ == "__main__":
    main()
