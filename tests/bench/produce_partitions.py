"""What librdkafka costs a producer per record at the bridge's rate, by partition count.

One process produces 30,000 records of ~1 KB at 10,000 a second over 10,000 keys (one
line per VM and read, as at 10,000 VMs), configured as the bridge's producer (zstd,
idempotent, acks=all, linger 2 ms), with five headers and a delivery callback per
record, and prints the loop thread's and the whole process's CPU per record. librdkafka
sends a request per partition, so its own threads' share grows with the partitions
(docs/BENCHMARKS.md, session 11).

Run: ``python -m infra.broker run`` in one shell, then
``.venv/bin/python -m tests.bench.produce_partitions 127.0.0.1:PORT 12`` (and ``2``).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

RECORDS = 30_000
RATE = 10_000
KEYS = 10_000
HEADERS = [
    ("transport", b"unix"),
    ("peer", b"/run/vmpulse/vm.socket"),
    ("received_at", b"1764729000000"),
    ("conn_id", b"0123456789abcdef0123456789abcdef"),
    ("line_no", b"17"),
]


def run(bootstrap: str, partitions: int) -> tuple[float, float]:
    """(loop thread, whole process) CPU seconds per record."""
    topic = f"pp{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "zstd",
            "linger.ms": 2,
            "batch.size": 1 << 20,
            "partitioner": "murmur2_random",
        }
    )
    producer.list_topics(topic, 10)
    value = os.urandom(500).hex().encode()
    keys = [str(uuid.uuid4()).encode() for _ in range(KEYS)]
    stop = threading.Event()

    def poll() -> None:  # delivery reports on their own thread, as the bridge serves them
        while not stop.is_set():
            producer.poll(0.2)

    def delivered(_err: Any, _msg: Any) -> None:
        pass

    poller = threading.Thread(target=poll)
    poller.start()
    start, loop0, proc0 = time.perf_counter(), time.thread_time(), time.process_time()
    for i in range(RECORDS):
        producer.produce(topic, value, keys[i % KEYS], headers=list(HEADERS), on_delivery=delivered)
        if i % 100 == 99 and (ahead := start + (i + 1) / RATE - time.perf_counter()) > 0:
            time.sleep(ahead)  # paced: the offered rate, not a burst
    loop_s = time.thread_time() - loop0
    producer.flush(30)
    stop.set()
    poller.join()
    return loop_s / RECORDS, (time.process_time() - proc0) / RECORDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bootstrap")
    parser.add_argument("partitions", type=int)
    args = parser.parse_args()
    loop, process = run(args.bootstrap, args.partitions)
    print(
        f"{args.partitions} partitions, {RECORDS} records at {RATE}/s: produce() on the "
        f"loop {loop * 1e6:.1f} us/record, process {process * 1e6:.1f} us/record"
    )


if __name__ == "__main__":
    main()
