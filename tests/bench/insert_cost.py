"""Fixed cost of one insert into each table of the embedded store (chDB).

Why: the worker writes every block of every partition as its own insert, so
the cost of an insert that does not depend on its size bounds how many blocks
a second a worker can afford. Run: ``.venv/bin/python -m tests.bench.insert_cost``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
from typing import Any

from store.clickhouse import ClickHouseStore
from streams.pipeline import TABLE_COLUMNS
from streams.storing import INGEST_BLOCKS_COLUMNS

ROUNDS = 20


def _row(columns: tuple[str, ...], i: int, now: dt.datetime) -> tuple[Any, ...]:
    given: dict[str, Any] = {
        "vm_id": "bench-vm",
        "ts": now,
        "received_at": now,
        "agent_ts": now,
        "ts_source": "agent",
        "dialect": 1,
        "cpu_usage_percent": 12.5,
        "cpu_cores_usage": [],
        "mount_point": "/",
        "name": "eth0",
        "kafka_partition": 0,
        "kafka_offset": i,
    }
    return tuple(given.get(c) for c in columns)


async def main() -> None:
    store = ClickHouseStore(f"chdb://{tempfile.mkdtemp(prefix='vmpulse-insert-cost-')}")
    await store.start()
    now = dt.datetime.now(dt.UTC)
    tables: dict[str, tuple[str, ...]] = {
        "system_metrics": tuple(TABLE_COLUMNS["system_metrics"]),
        "disk_usage": tuple(TABLE_COLUMNS["disk_usage"]),
        "network_interfaces": tuple(TABLE_COLUMNS["network_interfaces"]),
    }
    print(f"{'table':<20} {'rows':>6} {'ms per insert':>14}")
    try:
        for table, columns in tables.items():
            for size in (1, 1700):
                start = time.perf_counter()
                for k in range(ROUNDS):
                    rows = [_row(columns, k * size + i, now) for i in range(size)]
                    await store.insert(table, rows, columns, token=f"{table}:{size}:{k}")
                per = (time.perf_counter() - start) / ROUNDS * 1e3
                print(f"{table:<20} {size:>6} {per:>14.1f}")
        start = time.perf_counter()
        for k in range(ROUNDS):
            await store.insert("ingest_blocks", [("t", 0, k, k)], INGEST_BLOCKS_COLUMNS, token=None)
        per = (time.perf_counter() - start) / ROUNDS * 1e3
        print(f"{'ingest_blocks':<20} {1:>6} {per:>14.1f}")
    finally:
        store.close()


if __name__ == "__main__":
    asyncio.run(main())
