"""Block storage against chDB and the real broker: a worker killed at any point inside a
block, then a replay, leaves every table and the 1-minute rollup holding each row exactly
once, also when the block's partitions go to different workers afterwards."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore
from streams.blocks import Span
from streams.pipeline import TABLE_COLUMNS, RawRecord, process_batch
from streams.readback import read_back
from streams.storing import BlockPlanner, write_block
from tests.support import examples as ex

from .faulty_store import FaultyStore

T = time.time()  # rows older than the 30-day TTL would be dropped on insert


class Killed(Exception):
    """Stands in for kill -9: the worker stops between two inserts."""


def _dies_after(survive: int) -> Callable[[int, str], Exception | None]:
    """The worker dies (every later insert fails) after ``survive`` inserts."""
    return lambda n, table: Killed(table) if n >= survive else None


async def _produce(settings: Settings, topics: Topics, vm: str, per_partition: int) -> None:
    """Dialect 2 metrics lines of one VM (5 tables each) to partitions 0 and 1 of agent.raw."""
    producer = make_producer(settings.kafka.bootstrap or "")
    await producer.start()
    try:
        headers = [("received_at", str(int(T * 1000)).encode())]
        for i in range(2 * per_partition):
            line = ex.line(ex.d2_metrics(vm, T + i, processes=3, ports=2))
            await producer.send(
                topics.agent_raw, line, key=vm.encode(), partition=i % 2, headers=headers
            )
        await producer.flush()
    finally:
        await producer.stop()


async def _store(planner: BlockPlanner, store: Any, topic: str, batch: list[RawRecord]) -> None:
    """What the worker does with one batch (streams/app.py), minus the side outputs."""
    blocks, _ = await planner.plan(batch)
    for block in blocks:
        await write_block(store, topic, block, process_batch(block.records).rows)
        planner.stored(block)


def _planner(store: ClickHouseStore, settings: Settings, topic: str) -> BlockPlanner:
    """A new worker's view: nothing cached, repairs read back from the real broker."""

    async def read(spans: Sequence[Span]) -> list[RawRecord]:
        return await read_back(settings.kafka.bootstrap or "", topic, spans, timeout_s=10)

    return BlockPlanner(store, topic, read)


@pytest.mark.parametrize("survive", [1, 2, 3, 5])
@pytest.mark.parametrize("split", [False, True], ids=["one-owner", "partitions-split"])
async def test_replay_after_a_crash_inside_a_block_stores_each_row_once(
    chdb_store: ClickHouseStore,
    settings: Settings,
    topics_ready: Topics,
    survive: int,
    split: bool,
) -> None:
    topic = topics_ready.agent_raw
    vm = str(uuid.uuid4())
    print(f"topic {topic}, crash after {survive} inserts, partitions split: {split}")
    await _produce(settings, topics_ready, vm, per_partition=4)
    log = await read_back(settings.kafka.bootstrap or "", topic, [Span(0, 0, 3), Span(1, 0, 3)])
    earlier = [r for r in log if r.offset < 1]
    batch = [r for r in log if r.offset >= 1]  # one block over both partitions
    assert len(earlier) == 2 and len(batch) == 6

    worker = _planner(chdb_store, settings, topic)
    await _store(worker, chdb_store, topic, earlier)
    with pytest.raises(Killed):
        await _store(worker, FaultyStore(chdb_store, _dies_after(survive)), topic, batch)
    # the replay: the next owner reads from the last committed offset (the start of batch)
    # and, as if that commit was lost too, once more from the very beginning
    if split:  # the crashed block's partitions went to two workers, one after the other
        for partition in (1, 0):
            owner = _planner(chdb_store, settings, topic)
            await _store(owner, chdb_store, topic, [r for r in batch if r.partition == partition])
            mine = [r for r in earlier + batch if r.partition == partition]
            await _store(owner, chdb_store, topic, mine)
    else:
        owner = _planner(chdb_store, settings, topic)
        await _store(owner, chdb_store, topic, batch)
        await _store(owner, chdb_store, topic, earlier + batch)

    expected = {
        "system_metrics": 8,
        "process_snapshots": 24,
        "port_usage": 16,
        "disk_usage": 8,
    }
    for table, n in expected.items():
        got = await chdb_store.query(f"SELECT count() FROM {table} WHERE vm_id = '{vm}'")
        assert got["rows"] == [[n]], table
    rollup = await chdb_store.query(
        f"SELECT sum(samples) FROM system_metrics_1m WHERE vm_id = '{vm}'"
    )
    assert rollup["rows"] == [[8]]
    assert set(TABLE_COLUMNS) >= set(expected)
