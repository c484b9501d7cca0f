"""The worker's peer: a plain aiokafka loop with the same decode and one chDB insert per batch.

What a worker costs beyond the unavoidable: this loop reads agent.raw in the same
large batches, decodes and normalizes every line with the pipeline's own
``process_batch``, writes the batch's system_metrics rows with one insert into the
same schema (rollup views included), and commits. No exactly-once block record,
no other tables, no live updates, presence or alerts. ``vmpulse worker`` does all
of that; its CPU per message beside this loop's, on the same backlog in the same
run, is the figure issue 11 asks for (goal: at most 2x).

Run as a child process by tests/bench/test_worker_bench.py; prints one JSON line:
``{"messages": N, "cpu_s": S, "wall_s": W}`` counted from its first batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata

from store.clickhouse import ClickHouseStore
from streams.pipeline import TABLE_COLUMNS, process_batch
from streams.readback import to_raw_record
from vmpulse.tuning import tune_gc

__all__ = ["drain"]


async def drain(
    bootstrap: str, topic: str, group: str, store_url: str, count: int, within_s: float
) -> dict[str, float]:
    store = ClickHouseStore(store_url)
    await store.start()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    done, cpu0, wall0 = 0, 0.0, 0.0
    try:
        while done < count:
            batch: list[object] = []
            offsets = {}
            deadline = time.monotonic() + within_s
            while len(batch) < 20_000 and time.monotonic() < deadline:
                got = await consumer.getmany(timeout_ms=100, max_records=20_000 - len(batch))
                for tp, records in got.items():
                    batch.extend(records)
                    offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "")
            if not batch:
                continue
            if not done:
                cpu0, wall0 = time.process_time(), time.monotonic()
            result = process_batch([to_raw_record(r) for r in batch])
            rows = result.rows["system_metrics"]
            await store.insert("system_metrics", rows, TABLE_COLUMNS["system_metrics"], token=None)
            await consumer.commit(offsets)
            done += len(batch)
        return {
            "messages": done,
            "cpu_s": time.process_time() - cpu0,
            "wall_s": time.monotonic() - wall0,
        }
    finally:
        await consumer.stop()
        store.close()


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--store", required=True, help="chdb:///dir")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--within", type=float, default=1.0)
    a = p.parse_args(argv)
    tune_gc()  # as every vmpulse process: the default thresholds cost 40 % of a decode
    figures = asyncio.run(drain(a.bootstrap, a.topic, a.group, a.store, a.count, a.within))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
