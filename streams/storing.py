"""Writing one block of agent.raw into every table, so that a replay stores it exactly once.

A block is one partition's records ``first..last`` (streams/blocks.py). One
record may become rows in several tables (a dialect 2 ``metrics`` line fills
system_metrics, disk_usage, network_interfaces, process_snapshots and
port_usage) and ClickHouse has no transaction across tables, and an insert
into system_metrics also feeds the rollup views after the raw part is written.
So a worker killed mid-block can leave any subset of a block's inserts done.

The rule that makes every crash point safe:

1. Before any row of a block is written, the block itself is recorded in
   ``ingest_blocks`` (topic, partition, first, last): the intent.
2. Each table then gets one insert for the block, with the dedup token
   ``<table>:<topic>:<partition>:<first>-<last>``.
3. On replay, the partition's newest recorded block says exactly which
   records it held. Records before it are stored completely and skipped; its
   own records are cut into the same block again and re-inserted with the same
   tokens: a table that has the block drops the insert as a duplicate, a table
   (or a rollup view, with ``deduplicate_blocks_in_dependent_materialized_views``)
   that missed it gets it once. Records after it are new.

Blocks are written one after another, so only the newest recorded block of a
partition can be incomplete. A crash before the intent leaves nothing of the
block stored, so the replay may cut it differently without harm. DLQ records,
live updates and presence signals of a replayed block are sent again: at
least once, carrying the origin offset that identifies them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from streams.blocks import NO_BLOCK, Block, block_token
from streams.pipeline import TABLE_COLUMNS
from streams.rows import Row
from streams.store import Store

__all__ = ["INGEST_BLOCKS_COLUMNS", "Watermarks", "record_blocks", "write_block"]

INGEST_BLOCKS_COLUMNS = ("topic", "partition", "block_start", "block_end")


class Watermarks:
    """The newest recorded block ``(first, last)`` of each partition of one topic."""

    def __init__(self, store: Store, topic: str) -> None:
        self._store = store
        self._topic = topic
        self._blocks: dict[int, tuple[int, int]] = {}

    def forget(self) -> None:
        """After a rebalance another worker may have stored more: reload lazily."""
        self._blocks.clear()

    async def get(self, partition: int) -> tuple[int, int]:
        if partition not in self._blocks:
            topic = self._topic.replace("\\", "\\\\").replace("'", "\\'")
            result = await self._store.query(
                "SELECT block_start, block_end FROM ingest_blocks "
                f"WHERE topic = '{topic}' AND partition = {int(partition)} "
                "ORDER BY block_end DESC LIMIT 1"
            )
            rows = result["rows"]
            self._blocks[partition] = (int(rows[0][0]), int(rows[0][1])) if rows else NO_BLOCK
        return self._blocks[partition]

    def advance(self, partition: int, first: int, last: int) -> None:
        self._blocks[partition] = (first, last)


async def record_blocks(store: Store, topic: str, blocks: Sequence[Block]) -> None:
    """Record several new blocks in one insert, before any of their rows.

    Only new blocks of distinct partitions may be recorded together: a repair
    block is recorded already, and it must be complete before a newer block of
    its partition is recorded (the newest recorded block is the only one a
    replay completes).
    """
    if blocks:
        rows = [(topic, b.partition, b.first, b.last) for b in blocks]
        await store.insert("ingest_blocks", rows, INGEST_BLOCKS_COLUMNS, token=None)


async def write_block(
    store: Store,
    topic: str,
    block: Block,
    rows: Mapping[str, Sequence[Row]],
    tables: Mapping[str, Sequence[str]] = TABLE_COLUMNS,
    *,
    record: bool = True,
) -> int:
    """Record the block (unless it is), then insert its rows table by table; returns rows."""
    if record:
        await record_blocks(store, topic, [block])
    written = 0
    for table, columns in tables.items():
        table_rows = rows.get(table) or ()
        if not table_rows:
            continue
        token = block_token(table, topic, block.partition, block.first, block.last)
        await store.insert(table, list(table_rows), columns, token=token)
        written += len(table_rows)
    return written
