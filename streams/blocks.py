"""Cutting agent.raw batches into blocks that a replay reproduces exactly.

A block is what one worker stores as one insert per table: the records of one
batch, over every partition the batch holds. Its id names each partition's
offset range, ``<partition>:<first>-<last>`` joined by commas in partition
order, and each table's rows of the block get the dedup token
``<table>:<topic>:<id>``. A block of one partition has the id (and tokens) of
the earlier per-partition blocks, so stores written before blocks spanned
partitions are repaired with the tokens they hold.

Why a block spans partitions: an insert into chDB has a fixed cost of
5-25 ms per table (docs/BENCHMARKS.md), so a block per partition and second
made 19 inserts a second for 6 partitions and halved a worker's throughput.

After a crash the newest recorded block of a partition may be incomplete in
any table or rollup view. The replay therefore rebuilds that block from its id
(the records are read again from Kafka by offset, whoever owns the partitions
now) and inserts it again with the same tokens; records up to its end are
skipped as stored, records after it form new blocks.

Pure: the caller looks the newest blocks up, fetches records and writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from streams.pipeline import RawRecord

__all__ = [
    "NO_MARK",
    "Block",
    "Mark",
    "Span",
    "block_id",
    "block_token",
    "blocks_to_repair",
    "canonical",
    "cut_fresh",
    "parse_block_id",
    "repair_block",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Span:
    """The offsets ``first..last`` (both included) of one partition in a block."""

    partition: int
    first: int
    last: int


@dataclasses.dataclass(frozen=True, slots=True)
class Mark:
    """The newest block recorded for a partition: its span there and the block's id."""

    first: int
    last: int
    block: str


NO_MARK = Mark(-1, -1, "")


def block_id(spans: Iterable[Span]) -> str:
    return ",".join(f"{s.partition}:{s.first}-{s.last}" for s in sorted(spans, key=_by_part))


def parse_block_id(text: str) -> tuple[Span, ...]:
    """The spans of a block id; ValueError if it is not one."""
    spans = []
    for part in text.split(","):
        partition, _, offsets = part.partition(":")
        first, _, last = offsets.partition("-")
        spans.append(Span(int(partition), int(first), int(last)))
    if not spans or any(s.first > s.last or s.first < 0 for s in spans):
        raise ValueError(f"not a block id: {text!r}")
    return tuple(sorted(spans, key=_by_part))


def block_token(table: str, topic: str, block: str) -> str:
    return f"{table}:{topic}:{block}"


def _by_part(span: Span) -> int:
    return span.partition


@dataclasses.dataclass(frozen=True, slots=True)
class Block:
    """Records to insert as one block; ``repair`` = a replay of a recorded one.

    ``records`` are in partition order, then offset order: the order a replay
    rebuilds, so every table gets the same rows in the same order again.
    """

    spans: tuple[Span, ...]
    records: list[RawRecord]
    repair: bool

    @property
    def id(self) -> str:
        return block_id(self.spans)


def canonical(records: Iterable[RawRecord]) -> list[RawRecord]:
    """Records in partition order, offsets ascending within each (a stable sort)."""
    return sorted(records, key=lambda r: (r.partition, r.offset))


def cut_fresh(records: Sequence[RawRecord], marks: Mapping[int, Mark]) -> tuple[Block | None, int]:
    """The new block of a batch (None if nothing is new) and how many records were skipped.

    A record at or before the end of its partition's newest recorded block
    (``marks``) is stored already, or is stored by that block's repair.
    """
    fresh: list[RawRecord] = []
    skipped = 0
    for rec in canonical(records):
        if rec.offset <= marks.get(rec.partition, NO_MARK).last:
            skipped += 1
        else:
            fresh.append(rec)
    if not fresh:
        return None, skipped
    spans: list[Span] = []
    start = 0
    for i in range(1, len(fresh) + 1):
        if i == len(fresh) or fresh[i].partition != fresh[start].partition:
            spans.append(Span(fresh[start].partition, fresh[start].offset, fresh[i - 1].offset))
            start = i
    return Block(tuple(spans), fresh, repair=False), skipped


def repair_block(block: str, records: Iterable[RawRecord]) -> Block:
    """The recorded block ``block`` rebuilt from records read back by offset."""
    spans = parse_block_id(block)
    wanted = {s.partition: s for s in spans}
    kept: dict[tuple[int, int], RawRecord] = {}
    for r in records:
        span = wanted.get(r.partition)
        if span is not None and span.first <= r.offset <= span.last:
            kept[(r.partition, r.offset)] = r  # a record fetched twice counts once
    return Block(spans, canonical(kept.values()), repair=True)


def blocks_to_repair(
    records: Iterable[RawRecord], marks: Mapping[int, Mark], repaired: Iterable[str]
) -> list[str]:
    """Recorded blocks whose records came again, so they may be incomplete: repair these.

    The ingest commits a batch's offsets only after all its blocks were
    written, so records up to a partition's newest recorded block arrive again
    only if that block (or the batch it ended) was not committed, after a crash
    or a failed insert. A committed block is not repaired: its live updates and
    DLQ records are not sent twice on every restart.
    """
    done = set(repaired)
    names: list[str] = []
    for rec in records:
        mark = marks.get(rec.partition, NO_MARK)
        if rec.offset <= mark.last and mark.block not in done:
            done.add(mark.block)
            names.append(mark.block)
    return names
