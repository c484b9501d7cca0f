"""The replay log: positions, what a returning client missed, and when it must resync."""

from __future__ import annotations

import gc

from gateway.resume import ReplayLog, ResumeStatus, decode_position, encode_position
from schemas.events import OutboundEvent, encode_outbound


def _event(n: int) -> OutboundEvent:
    return OutboundEvent(resource="vms", action="update", data={"n": n})


def _append(log: ReplayLog, partition: int, offset: int, ts: int, event: OutboundEvent) -> str:
    return log.append(partition, offset, ts, event, encode_outbound(event))


def _numbers(log: ReplayLog, position: str) -> list[int]:
    result = log.since(position)
    assert result.status is ResumeStatus.OK
    return [entry.event.data["n"] for entry in result.entries]


def test_position_round_trip_and_rejects() -> None:
    assert encode_position([3, 0, 12]) == "3.0.12"
    assert decode_position("3.0.12", 3) == (3, 0, 12)
    for bad in (None, 12, "", "3.0", "3.0.x", "3.-1.0", "1." * 3000, "3.0.12.4"):
        assert decode_position(bad, 3) is None


def test_missed_events_come_back_in_handling_order_from_any_cut() -> None:
    log = ReplayLog([10, 20], window_ms=60_000, max_events=100)
    handled = [(0, 10), (1, 20), (1, 21), (0, 11), (0, 12), (1, 22)]
    positions = [_append(log, p, o, 1000, _event(i)) for i, (p, o) in enumerate(handled)]
    assert positions[0] == "11.20" and positions[-1] == "13.23" == log.position
    assert _numbers(log, "10.20") == [0, 1, 2, 3, 4, 5]
    for i, position in enumerate(positions):
        assert _numbers(log, position) == list(range(i + 1, len(handled)))
    # A cut from another instance that interleaved differently: partition 0 done, 1 not.
    assert _numbers(log, "13.21") == [2, 5]


def test_ahead_gap_and_invalid() -> None:
    log = ReplayLog([5, 5], window_ms=60_000, max_events=2)
    for o in range(5, 9):
        _append(log, 0, o, 1000, _event(o))
    assert log.since("9.5").status is ResumeStatus.OK
    assert log.since("10.5").status is ResumeStatus.AHEAD
    assert log.since("5.5").status is ResumeStatus.GAP  # 5 and 6 were evicted
    assert _numbers(log, "7.5") == [7, 8]
    assert log.since("7").status is ResumeStatus.INVALID


def test_window_expiry_and_skipped_records() -> None:
    log = ReplayLog([0], window_ms=1000, max_events=100)
    _append(log, 0, 0, 1_000, _event(0))
    _append(log, 0, 1, 5_000, _event(1))
    log.skip(0, 2)  # undecodable: nobody needs it, the position moves on
    log.expire(now_ms=5_500)
    assert len(log) == 1 and log.position == "3"
    assert log.since("0").status is ResumeStatus.GAP
    assert _numbers(log, "1") == [1]
    assert _numbers(log, "2") == []


def test_disabled_log_only_tracks_positions() -> None:
    log = ReplayLog([0], window_ms=1000, max_events=0)
    assert _append(log, 0, 0, 1, _event(0)) == "1"
    assert len(log) == 0
    assert log.since("0").status is ResumeStatus.GAP
    assert log.since("1").status is ResumeStatus.OK


def test_a_replay_in_chunks_is_the_whole_replay_and_sees_what_came_meanwhile() -> None:
    log = ReplayLog([0, 0, 0], window_ms=60_000, max_events=1000)
    n = 0
    for offset in range(20):
        for partition in (0, 1, 2):
            if (offset + partition) % 4:  # partitions fill unevenly
                _append(log, partition, offset, 1000, _event(n))
                n += 1
    whole = _numbers(log, "0.0.0")
    chunks: list[list[int]] = []
    result = log.since("0.0.0", limit=7)
    while True:
        assert result.status is ResumeStatus.OK
        assert len(result.entries) <= 7
        chunks.append([e.event.data["n"] for e in result.entries])
        if len(chunks) == 3:  # events handled between two chunks come after the cursor
            for partition in (0, 1, 2):
                _append(log, partition, 20, 1000, _event(n))
                n += 1
        if not result.more:
            break
        result = log.since_offsets(result.cursor, limit=7)
    assert [x for chunk in chunks for x in chunk] == [*whole, n - 3, n - 2, n - 1]
    assert all(len(c) == 7 for c in chunks[:-1])


def test_a_chunk_cursor_that_fell_out_of_the_log_is_a_gap() -> None:
    log = ReplayLog([0], window_ms=60_000, max_events=10)
    for offset in range(10):
        _append(log, 0, offset, 1000, _event(offset))
    first = log.since("0", limit=3)
    assert first.more and first.cursor == (3,)
    for offset in range(10, 15):  # evicts offsets 0..4
        _append(log, 0, offset, 1000, _event(offset))
    assert log.since_offsets(first.cursor, limit=3).status is ResumeStatus.GAP
    assert log.since_offsets((1, 2), limit=3).status is ResumeStatus.INVALID


def test_the_log_holds_bytes_the_collector_never_walks() -> None:
    # a full log is 100,000 events; decoded, each was a tree of dicts that every full
    # collection walked (issue 11). Entries keep the record's bytes and are untracked.
    log = ReplayLog([0], window_ms=60_000, max_events=100)
    live = OutboundEvent(
        resource="metrics", action="update", data={"cpu": {"usage": 1.5}}, rooms=["vm:a"]
    )
    _append(log, 0, 0, 1000, live)
    (entry,) = log.since("0").entries
    assert not gc.is_tracked(entry)
    assert entry.event == live  # decoded again when a replay sends it


def test_a_replay_skips_undecoded_what_cannot_reach_the_rooms() -> None:
    log = ReplayLog([0], window_ms=60_000, max_events=100)
    other = OutboundEvent(resource="metrics", action="update", data={}, rooms=["vm:b"])
    mine = OutboundEvent(resource="metrics", action="update", data={}, rooms=["vm:a"])
    to_user = OutboundEvent(resource="vms", action="update", data={}, users=["u1"])
    to_admins = OutboundEvent(resource="vms", action="delete", data={}, admins=True)
    for offset, event in enumerate((other, mine, to_user, to_admins)):
        _append(log, 0, offset, 1000, event)
    reach = [e.may_reach({"vm:a", "ns-u1"}) for e in log.since("0").entries]
    # users and admins are found through the directory at replay: never skipped
    assert reach == [False, True, True, True]
