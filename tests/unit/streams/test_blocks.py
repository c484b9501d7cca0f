"""Cutting batches into per-partition blocks that a replay reproduces."""

from __future__ import annotations

from streams.blocks import NO_BLOCK, BlockCutter, block_token
from streams.pipeline import RawRecord


def recs(partition: int, *offsets: int) -> list[RawRecord]:
    return [RawRecord("t", partition, o, b"vm", b"{}", {}) for o in offsets]


def summary(blocks: list) -> list[tuple[int, int, int, bool, list[int]]]:  # type: ignore[type-arg]
    return [(b.partition, b.first, b.last, b.repair, [r.offset for r in b.records]) for b in blocks]


def test_fresh_records_make_one_block_per_partition() -> None:
    blocks, skipped = BlockCutter().cut(recs(0, 0, 1, 2) + recs(1, 5, 6), {0: NO_BLOCK})
    assert skipped == 0
    assert summary(blocks) == [(0, 0, 2, False, [0, 1, 2]), (1, 5, 6, False, [5, 6])]


def test_replay_skips_whole_blocks_and_repeats_the_last_one_exactly() -> None:
    # stored: ... a complete block ending at 9, then the last block 10-14 (maybe half-propagated)
    blocks, skipped = BlockCutter().cut(recs(0, *range(5, 18)), {0: (10, 14)})
    assert skipped == 5  # 5..9
    assert summary(blocks) == [
        (0, 10, 14, True, [10, 11, 12, 13, 14]),
        (0, 15, 17, False, [15, 16, 17]),
    ]


def test_a_replayed_block_split_across_fetches_is_held_until_whole() -> None:
    cutter = BlockCutter()
    blocks, _ = cutter.cut(recs(0, 10, 11), {0: (10, 14)})
    assert blocks == []
    blocks, _ = cutter.cut(recs(0, 12, 13, 14), {0: (10, 14)})
    assert summary(blocks) == [(0, 10, 14, True, [10, 11, 12, 13, 14])]


def test_forget_drops_held_records() -> None:
    cutter = BlockCutter()
    cutter.cut(recs(0, 10, 11), {0: (10, 14)})
    cutter.forget()
    blocks, _ = cutter.cut(recs(0, 12, 13, 14), {0: (10, 14)})
    assert summary(blocks) == [(0, 10, 14, True, [12, 13, 14])]


def test_tokens_name_table_topic_partition_and_range() -> None:
    assert block_token("system_metrics", "agent.raw", 3, 10, 14) == (
        "system_metrics:agent.raw:3:10-14"
    )
