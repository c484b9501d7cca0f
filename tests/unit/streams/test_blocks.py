"""Cutting batches into blocks that a replay reproduces."""

from __future__ import annotations

import pytest

from streams.blocks import (
    NO_MARK,
    Block,
    Mark,
    Span,
    block_id,
    block_token,
    blocks_to_repair,
    cut_fresh,
    parse_block_id,
    repair_block,
)
from streams.pipeline import RawRecord


def recs(partition: int, *offsets: int) -> list[RawRecord]:
    return [RawRecord("t", partition, o, b"vm", b"{}", {}) for o in offsets]


def offsets(block: Block) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in block.records]


def test_a_batch_over_several_partitions_is_one_block_in_partition_order() -> None:
    block, skipped = cut_fresh(recs(3, 5, 6) + recs(0, 0, 1, 2), {0: NO_MARK})
    assert skipped == 0 and block is not None
    assert block.spans == (Span(0, 0, 2), Span(3, 5, 6))
    assert block.id == "0:0-2,3:5-6"
    assert offsets(block) == [(0, 0), (0, 1), (0, 2), (3, 5), (3, 6)]
    assert not block.repair


def test_records_up_to_the_newest_recorded_block_are_skipped() -> None:
    marks = {0: Mark(10, 14, "0:10-14,1:3-4")}
    block, skipped = cut_fresh(recs(0, *range(5, 18)) + recs(1, 0), marks)
    assert skipped == 10  # 5..14
    assert block is not None and block.id == "0:15-17,1:0-0"


def test_nothing_new_is_no_block() -> None:
    assert cut_fresh(recs(0, 1, 2), {0: Mark(0, 2, "0:0-2")}) == (None, 2)


def test_a_block_whose_records_come_again_is_repaired_once() -> None:
    marks = {0: Mark(10, 14, "0:10-14,1:3-4"), 1: Mark(3, 4, "0:10-14,1:3-4"), 2: NO_MARK}
    batch = recs(0, 12, 13, 14, 15) + recs(1, 4, 5) + recs(2, 0)
    assert blocks_to_repair(batch, marks, repaired=()) == ["0:10-14,1:3-4"]
    assert blocks_to_repair(batch, marks, repaired={"0:10-14,1:3-4"}) == []


def test_a_committed_block_is_not_repaired() -> None:
    # the consumer resumes after the block: nothing of it comes again, no live update repeats
    marks = {0: Mark(10, 14, "0:10-14")}
    assert blocks_to_repair(recs(0, 15, 16), marks, repaired=()) == []


def test_repair_rebuilds_the_same_records_in_the_same_order() -> None:
    original, _ = cut_fresh(recs(1, 3, 4) + recs(0, 10, 11, 12), {})
    assert original is not None
    # read back: fetch order, a neighbour outside the spans, one record fetched twice
    fetched = recs(1, 2, 3, 4) + recs(0, 10, 11) + recs(0, 11, 12, 13)
    repaired = repair_block(original.id, fetched)
    assert repaired.repair
    assert repaired.spans == original.spans
    assert repaired.records == original.records


def test_ids_round_trip_and_one_partition_keeps_the_old_token() -> None:
    spans = (Span(0, 10, 14), Span(7, 0, 0))
    assert parse_block_id(block_id(reversed(spans))) == spans
    # blocks stored before blocks spanned partitions are repaired with their own tokens
    assert block_token("system_metrics", "agent.raw", block_id([Span(3, 10, 14)])) == (
        "system_metrics:agent.raw:3:10-14"
    )


@pytest.mark.parametrize("text", ["", "x", "0:5", "0:5-3", "0:1-2,,1:2-3", "0:-1-2"])
def test_malformed_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_block_id(text)
