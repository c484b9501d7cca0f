"""Two workers share agent.raw on one store: a worker joins, another leaves, rows count once.

The production shape: several `vmpulse worker` processes in one consumer group,
writing to one ClickHouse server. chDB lets one process own a store, so both
workers run here as Faust apps in this process on the session store; the
broker, the group's rebalances and the store are real. Each batch is one block
over the partitions a worker holds at that moment, so the partitions a block
names are split between workers after a rebalance: the test checks that no
message is lost or stored twice, in the raw table or in the rollup, and that
both workers stored part of the stream.
"""

from __future__ import annotations

import asyncio
import uuid

import faust
import pytest

from infra.config import Settings
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore
from streams.app import create_app, ingest_group_id

from .browsers import until
from .worker_process import drained, produce_paced

pytestmark = pytest.mark.integration

RATE = 400  # messages per second
PRODUCE_S = 120.0  # at most: the load runs until the second worker stored after the handover


def stats(app: faust.App | None) -> dict[str, int]:
    assert app is not None
    return app.vmpulse_stats  # type: ignore[no-any-return]


async def _drained(settings: Settings, topics: Topics, group: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not await drained(settings, topics, group):
        assert loop.time() < deadline, "the stream did not drain"
        await asyncio.sleep(0.2)


async def _start(settings: Settings, store: ClickHouseStore) -> faust.App:
    app = create_app(settings, store, batch_within_s=0.2)
    await app.start()
    return app


async def test_a_worker_joins_and_another_leaves_and_every_row_counts_once(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> None:
    s = settings.replace(kafka={"session_timeout_s": 6.0})
    vms = [f"two-{uuid.uuid4().hex[:6]}-{i:02d}" for i in range(30)]
    group = ingest_group_id(s.kafka.topic_prefix)
    first = await _start(s, chdb_store)
    stop_at = asyncio.get_running_loop().time() + PRODUCE_S
    enough = asyncio.Event()
    producing = asyncio.create_task(produce_paced(s, topics_ready, vms, RATE, stop_at, enough))
    second: faust.App | None = None
    try:
        await until(lambda: stats(first)["stored"] > 0, "the first worker stores")
        second = await _start(s, chdb_store)  # a rebalance splits the partitions
        mark = stats(first)["stored"]
        await until(
            lambda: stats(second)["stored"] > 100 and stats(first)["stored"] > mark + 100,
            "both workers store, side by side",
        )
        await first.stop()  # another rebalance: the second worker takes them all
        assert not producing.done(), "the load ended before the handover: raise PRODUCE_S"
        second_before = stats(second)["stored"]
        await until(
            lambda: stats(second)["stored"] > second_before + 100,
            "the second worker stores the load after the handover",
        )
        enough.set()
        sent = await producing
        await _drained(s, topics_ready, group)
    finally:
        producing.cancel()
        if second is not None:
            await second.stop()
        await first.stop()

    names = ", ".join(f"'{vm}'" for vm in vms)
    raw = await chdb_store.query(
        "SELECT count(), uniqExact(kafka_partition, kafka_offset), uniqExact(vm_id, ts) "
        f"FROM system_metrics WHERE vm_id IN ({names})"
    )
    rollup = await chdb_store.query(
        f"SELECT sum(samples) FROM system_metrics_1m WHERE vm_id IN ({names})"
    )
    stored = [stats(first)["stored"], stats(second)["stored"]]
    # a batch stored but not committed when its partitions moved is repaired by the next
    # owner: its tokens make the store drop it, and it counts as skipped, not stored
    repaired = [stats(first)["repaired"], stats(second)["repaired"]]
    print(
        f"sent {sent}; stored by the first worker {stored[0]}, by the second {stored[1]} "
        f"({second_before} of them while the first still ran); re-inserted by repairs {repaired}"
    )
    assert raw["rows"] == [[sent, sent, sent]]
    assert rollup["rows"] == [[sent]]
    assert stored[1] > second_before  # the second went on with the first one's partitions
