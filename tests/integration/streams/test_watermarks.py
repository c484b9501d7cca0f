"""Block storage against chDB: a worker killed at any point inside a block, then a replay,
leaves every table and the 1-minute rollup holding each row exactly once."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from schemas import examples as ex
from streams.blocks import BlockCutter
from streams.pipeline import TABLE_COLUMNS, RawRecord, process_batch
from streams.store import ClickHouseStore
from streams.storing import Watermarks, write_block

T = time.time()  # rows older than the 30-day TTL would be dropped on insert


class Killed(Exception):
    """Stands in for kill -9: the worker stops between two inserts."""


class DyingStore:
    """The real store, but the worker dies after ``survive`` inserts."""

    def __init__(self, store: ClickHouseStore, survive: int) -> None:
        self.store = store
        self.survive = survive

    async def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        *,
        token: str | None,
    ) -> None:
        if self.survive == 0:
            raise Killed(table)
        self.survive -= 1
        await self.store.insert(table, rows, columns, token=token)

    async def query(self, sql: str, *, max_rows: int = 10_000) -> dict[str, Any]:
        return await self.store.query(sql, max_rows=max_rows)


def _records(topic: str, vm: str, partition: int, first: int, n: int) -> list[RawRecord]:
    return [
        RawRecord(
            topic=topic,
            partition=partition,
            offset=first + i,
            key=vm.encode(),
            value=ex.line(ex.d2_metrics(vm, T + i, processes=3, ports=2)),
            headers={"received_at": str(int(T * 1000)).encode()},
        )
        for i in range(n)
    ]


async def _store(store: Any, topic: str, records: list[RawRecord]) -> None:
    """What the worker does with one batch (streams/app.py), minus the side outputs."""
    marks = Watermarks(store, topic)
    cutter = BlockCutter()
    batch_marks = {p: await marks.get(p) for p in {r.partition for r in records}}
    blocks, _ = cutter.cut(records, batch_marks)
    for block in blocks:
        await write_block(store, topic, block, process_batch(block.records).rows)
        marks.advance(block.partition, block.first, block.last)


@pytest.mark.parametrize("survive", [1, 2, 3, 5])
async def test_replay_after_a_crash_inside_a_block_stores_each_row_once(
    chdb_store: ClickHouseStore, survive: int
) -> None:
    topic = f"agent.raw.{uuid.uuid4().hex[:8]}"  # apart from other tests on the session store
    partition = random.randint(0, 11)
    vm = str(uuid.uuid4())
    print(f"topic {topic} partition {partition} crash after {survive} inserts")
    earlier = _records(topic, vm, partition, 0, 3)
    batch = _records(topic, vm, partition, 3, 4)
    await _store(chdb_store, topic, earlier)
    with pytest.raises(Killed):
        await _store(DyingStore(chdb_store, survive), topic, batch)
    # the replay: a new worker reads from the last committed offset (the start of batch)
    # and, as if that commit was lost too, once more from the very beginning
    await _store(chdb_store, topic, batch)
    await _store(chdb_store, topic, earlier + batch)

    expected = {
        "system_metrics": 7,
        "process_snapshots": 21,
        "port_usage": 14,
        "disk_usage": 7,
    }
    for table, n in expected.items():
        got = await chdb_store.query(f"SELECT count() FROM {table} WHERE vm_id = '{vm}'")
        assert got["rows"] == [[n]], table
    rollup = await chdb_store.query(
        f"SELECT sum(samples) FROM system_metrics_1m WHERE vm_id = '{vm}'"
    )
    assert rollup["rows"] == [[7]]
    assert set(TABLE_COLUMNS) >= set(expected)
