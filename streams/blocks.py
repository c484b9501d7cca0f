"""Cutting agent.raw batches into per-partition blocks that a replay reproduces exactly.

A block is one partition's records ``first..last``; streams/storing.py records
each block before writing its rows and inserts every table's rows of the block
with the token ``<table>:<topic>:<partition>:<first>-<last>``. After a crash
the newest recorded block of a partition may be incomplete in any table or
rollup view, so the replay must cut exactly that block again: records before
it are skipped as stored, its records are held back until the block is whole
and handed out as a ``repair`` block (same records, same tokens), and records
after it form new blocks.

Pure: the caller looks the last blocks up and writes what comes out.
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
