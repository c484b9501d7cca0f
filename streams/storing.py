"""Writing one block of agent.raw into every table, so that a replay stores it exactly once.

A block is the records of one worker's batch over its partitions, each
partition's offsets ``first..last`` (streams/blocks.py). One record may become
rows in several tables (a dialect 2 ``metrics`` line fills system_metrics,
disk_usage, network_interfaces, process_snapshots and port_usage) and
ClickHouse has no transaction across tables, and an insert into system_metrics
also feeds the rollup views after the raw part is written. So a worker killed
mid-block can leave any subset of a block's inserts done.

The rule that makes every crash point safe:

1. Before any row of a block is written, the block itself is recorded in
   ``ingest_blocks``: one row per partition (topic, partition, first, last)
   that also names the whole block. This is the intent.
2. Each table then gets one insert for the block, with the dedup token
   ``<table>:<topic>:<block id>``.
3. On replay, a partition's newest recorded block says exactly which records
   it held, on every partition. That block is read again from Kafka by offset
   and re-inserted with the same tokens: a table that has the block drops the
   insert as a duplicate, a table (or a rollup view, with
   ``deduplicate_blocks_in_dependent_materialized_views``) that missed it gets
   it once. Records up to its end are skipped; records after it are new.

Blocks are written one after another, and a worker repairs the newest block of
a partition whose records come again (it was not committed) before it records a
new one there, so only the newest recorded block of a partition can be
incomplete. A crash before the intent leaves nothing of the block stored, so
the replay may cut it differently without harm. DLQ records and live updates of
a repaired block are sent again: at least once, carrying the origin offset that
identifies them. Presence and alerts do not see a repaired block again: their
state resumes from ``worker.state`` (streams/state_log.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from store.clickhouse import Store
from streams.blocks import (
    NO_MARK,
    Block,
    Mark,
    Span,
    block_token,
    blocks_to_repair,
    cut_fresh,
    parse_block_id,
    repair_block,
)
from streams.pipeline import TABLE_COLUMNS, RawRecord
from streams.rows import Row

__all__ = [
    "INGEST_BLOCKS_COLUMNS",
    "BlockPlanner",
    "ReadBack",
    "Watermarks",
    "record_block",
    "write_block",
]

log = logging.getLogger(__name__)

ReadBack = Callable[[Sequence[Span]], Awaitable[list[RawRecord]]]
"""Reads a block's spans back from the topic (streams/readback.py)."""

INGEST_BLOCKS_COLUMNS = ("topic", "partition", "block_start", "block_end", "block")


class Watermarks:
    """The newest recorded block of each partition of one topic, loaded once per assignment."""

    def __init__(self, store: Store, topic: str) -> None:
        self._store = store
        self._topic = topic
        self._marks: dict[int, Mark] = {}

    def forget(self) -> None:
        """After a rebalance another worker may have stored more: reload lazily."""
        self._marks.clear()

    async def load(self, partitions: Iterable[int]) -> dict[int, Mark]:
        """The marks of partitions not loaded yet (one query), now cached; returns those."""
        missing = sorted({int(p) for p in partitions} - self._marks.keys())
        if not missing:
            return {}
        result = await self._store.query(
            "SELECT partition, argMax(block_start, block_end), max(block_end), "
            "argMax(block, block_end) FROM ingest_blocks "
            "WHERE topic = {topic:String} AND partition IN {partitions:Array(UInt32)} "
            "GROUP BY partition",
            {"topic": self._topic, "partitions": missing},
        )
        loaded = {p: NO_MARK for p in missing}
        for partition, first, last, block in result["rows"]:
            p, first, last = int(partition), int(first), int(last)
            # rows from before blocks spanned partitions name no block: their own span is one
            loaded[p] = Mark(first, last, str(block) or f"{p}:{first}-{last}")
        self._marks.update(loaded)
        return loaded

    def get(self, partition: int) -> Mark:
        return self._marks.get(partition, NO_MARK)

    def advance(self, block: Block) -> None:
        name = block.id
        for span in block.spans:
            self._marks[span.partition] = Mark(span.first, span.last, name)


class BlockPlanner:
    """Which blocks a batch becomes: repairs of recorded blocks first, then one new block.

    The caller writes each block (:func:`write_block` and its side outputs) and
    reports it with :meth:`stored`; a block that failed is not reported, so the
    batch, read again, repairs it.
    """

    def __init__(self, store: Store, topic: str, read_back: ReadBack) -> None:
        self.marks = Watermarks(store, topic)
        self._topic = topic
        self._read_back = read_back
        self._repaired: set[str] = set()

    def forget(self) -> None:
        """Partitions moved (or a batch is read again): marks reload, blocks may need repair."""
        self.marks.forget()
        self._repaired.clear()

    async def plan(self, batch: Sequence[RawRecord]) -> tuple[list[Block], int]:
        """The blocks to write, in order, and how many records were skipped as stored."""
        partitions = {rec.partition for rec in batch}
        await self.marks.load(partitions)
        marks = {p: self.marks.get(p) for p in partitions}
        blocks = []
        for name in blocks_to_repair(batch, marks, self._repaired):
            block = repair_block(name, await self._read_back(parse_block_id(name)))
            # only after a crash, a failed insert or a commit lost in a rebalance
            log.warning(
                "block %s of %s was stored but not committed: re-inserting its %d records "
                "(the store drops what it holds already)",
                name, self._topic, len(block.records),
            )  # fmt: skip
            blocks.append(block)
        fresh, skipped = cut_fresh(batch, marks)
        if fresh is not None:
            blocks.append(fresh)
        return blocks, skipped

    def stored(self, block: Block) -> None:
        if block.repair:
            self._repaired.add(block.id)
        else:
            self.marks.advance(block)


async def record_block(store: Store, topic: str, block: Block) -> None:
    """Record a new block (one row per partition), before any of its rows."""
    name = block.id
    rows = [(topic, s.partition, s.first, s.last, name) for s in block.spans]
    await store.insert("ingest_blocks", rows, INGEST_BLOCKS_COLUMNS, token=None)


async def write_block(
    store: Store,
    topic: str,
    block: Block,
    rows: Mapping[str, Sequence[Row]],
    tables: Mapping[str, Sequence[str]] = TABLE_COLUMNS,
) -> int:
    """Record the block (unless it is a repair), then insert its rows table by table.

    Returns how many rows were written.
    """
    if not block.repair:
        await record_block(store, topic, block)
    name = block.id
    written = 0
    for table, columns in tables.items():
        table_rows = rows.get(table) or ()
        if not table_rows:
            continue
        await store.insert(table, list(table_rows), columns, token=block_token(table, topic, name))
        written += len(table_rows)
    return written
