"""Per-table watermarks against chDB: a replay after a crash between two tables' inserts
stores every row exactly once."""

from __future__ import annotations

import random
import time
import uuid

from schemas import examples as ex
from streams.app import Watermarks
from streams.pipeline import TABLE_COLUMNS, RawRecord, process_batch
from streams.store import ClickHouseStore

T = time.time()  # rows older than the 30-day TTL would be dropped on insert


async def test_replay_after_a_crash_between_tables_stores_each_row_once(
    chdb_store: ClickHouseStore,
) -> None:
    partition = random.randint(20_000, 60_000)  # apart from other tests on the session store
    print(f"partition {partition}")
    vm = str(uuid.uuid4())
    records = [
        RawRecord(
            topic="agent.raw",
            partition=partition,
            offset=10 + i,
            key=vm.encode(),
            value=ex.line(ex.d2_metrics(vm, T + i, processes=3, ports=2)),
            headers={"received_at": str(int(T * 1000)).encode()},
        )
        for i in range(2)
    ]
    result = process_batch(records)
    # first run: system_metrics stored, then the worker dies before the other tables
    first = Watermarks(chdb_store)
    rows = await first.fresh("system_metrics", result.rows["system_metrics"])
    await chdb_store.insert("system_metrics", rows, TABLE_COLUMNS["system_metrics"], token=None)

    # the replay: a new worker, the same records
    replay = Watermarks(chdb_store)
    for table, columns in TABLE_COLUMNS.items():
        fresh = await replay.fresh(table, result.rows[table])
        if table == "system_metrics":
            assert fresh == []
        else:
            assert len(fresh) == len(result.rows[table])
        await chdb_store.insert(table, fresh, columns, token=None)
        replay.advance(table, fresh)
    # and once more, as if the offsets were not committed either
    for table in TABLE_COLUMNS:
        assert await replay.fresh(table, result.rows[table]) == []

    for table, expected in {
        "system_metrics": 2,
        "process_snapshots": 6,
        "port_usage": 4,
        "disk_usage": 2,
    }.items():
        got = await chdb_store.query(f"SELECT count() FROM {table} WHERE vm_id = '{vm}'")
        assert got["rows"] == [[expected]], table
