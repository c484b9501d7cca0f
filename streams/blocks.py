"""Insert blocks that a replay reproduces exactly, so neither raw rows nor rollups double.

Why: an insert into ``system_metrics`` writes the raw part first and then
pushes the block through the rollup views; a worker killed in between leaves
raw rows whose rollup is missing. Skipping stored offsets on replay would
make that permanent; inserting them again would double the raw rows. So every
insert is one block of one partition with the dedup token
``<table>:<topic>:<partition>:<first offset>-<last offset>``; a replay inserts
the partition's *last* block again, with the same records and the same token:
ClickHouse drops it from the raw table as a duplicate and, with
``deduplicate_blocks_in_dependent_materialized_views``, still gives every view
that missed it its share, and none twice.

Only the last block of a partition can be incomplete: blocks are inserted one
after another, each after the previous returned. Rows carry their block's
first offset (``kafka_block_start``), so the store says where that block
starts and ends; records before it are stored completely and are skipped.

Pure: the caller looks the last blocks up and inserts what comes out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from streams.pipeline import RawRecord

__all__ = ["NO_BLOCK", "Block", "BlockCutter", "block_token"]

NO_BLOCK = (-1, -1)


def block_token(table: str, topic: str, partition: int, first: int, last: int) -> str:
    return f"{table}:{topic}:{partition}:{first}-{last}"


@dataclasses.dataclass(frozen=True, slots=True)
class Block:
    """Records of one partition to insert as one block; ``repair`` = a replay of a stored one."""

    partition: int
    first: int
    last: int
    records: list[RawRecord]
    repair: bool


class BlockCutter:
    """Cuts batches into per-partition blocks, holding back a replayed block until it is whole."""

    def __init__(self) -> None:
        self._pending: dict[int, list[RawRecord]] = {}

    def forget(self) -> None:
        """Partitions moved: whatever was held back belongs to the next owner now."""
        self._pending.clear()

    def cut(
        self, records: Sequence[RawRecord], last_blocks: Mapping[int, tuple[int, int]]
    ) -> tuple[list[Block], int]:
        """The blocks to insert now and how many records were skipped as completely stored.

        ``last_blocks[p]`` is ``(first, last)`` of the newest block stored for
        partition ``p``, or :data:`NO_BLOCK`. Records of a partition must come
        in offset order.
        """
        by_partition: dict[int, list[RawRecord]] = {}
        for rec in records:
            by_partition.setdefault(rec.partition, []).append(rec)
        blocks: list[Block] = []
        skipped = 0
        for partition, recs in by_partition.items():
            start, end = last_blocks.get(partition, NO_BLOCK)
            pending = self._pending.setdefault(partition, [])
            fresh: list[RawRecord] = []
            for rec in recs:
                if rec.offset < start:
                    skipped += 1
                elif rec.offset <= end:
                    pending.append(rec)
                else:
                    fresh.append(rec)
            if pending and (pending[-1].offset >= end or fresh):
                # whole again (or the rest will never come): the same block, the same token
                blocks.append(Block(partition, start, end, list(pending), repair=True))
                pending.clear()
            if fresh:
                blocks.append(
                    Block(partition, fresh[0].offset, fresh[-1].offset, fresh, repair=False)
                )
        return blocks, skipped
