"""The send bound and the websocket frame of a server message: pure, no sockets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.deadlines import Deadlines
from gateway.outbox import Outbox, encode_frame


def _decode(frame: bytes) -> tuple[int, bytes]:
    """RFC 6455 frame parsing as a client does it: (first byte, payload)."""
    first, second = frame[0], frame[1]
    assert second & 0x80 == 0, "a server's frames are never masked"
    size, offset = second & 0x7F, 2
    if size == 126:
        (size,) = struct.unpack("!H", frame[2:4])
        offset = 4
    elif size == 127:
        (size,) = struct.unpack("!Q", frame[2:10])
        offset = 10
    payload = frame[offset:]
    assert len(payload) == size
    return first, payload


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 70_000])
def test_frame_lengths_use_the_shortest_form(size: int) -> None:
    payload = b"a" * size
    frame = encode_frame(payload)
    header = len(frame) - size
    assert header == (2 if size < 126 else 4 if size < 65_536 else 10)
    assert _decode(frame) == (0x81, payload)
    assert _decode(encode_frame(payload, binary=True)) == (0x82, payload)


@given(st.binary(max_size=70_000))
def test_any_payload_round_trips(payload: bytes) -> None:
    assert _decode(encode_frame(payload))[1] == payload


def test_outbox_refuses_past_its_bound_and_counts_the_transport() -> None:
    box = Outbox(100)
    assert box.push("a", 60)
    assert box.push("b", 40)
    assert not box.push("c", 1)  # 101 > 100: refused, nothing queued
    assert len(box) == 2 and box.pending_bytes == 100
    assert box.take() == ["a", "b"]
    assert not box and box.pending_bytes == 0
    # Bytes still in the transport's buffer count against the same bound.
    assert not box.push("d", 10, extra=91)
    assert box.push("d", 10, extra=90)


def test_forced_packets_pass_the_bound_and_clear_drops_all() -> None:
    box = Outbox(10)
    assert box.push("x", 10)
    box.force("farewell", 50)
    assert box.pending_bytes == 60
    assert box.take() == ["x", "farewell"]
    box.force("y", 5)
    assert box.clear() == 1 and box.pending_bytes == 0 and not box


def test_outbox_needs_a_positive_bound() -> None:
    with pytest.raises(ValueError):
        Outbox(0)


def test_deadlines_fall_due_in_order_with_their_stamps() -> None:
    pings: Deadlines[str] = Deadlines(25.0)
    assert pings.set("a", 0.0) == 0.0
    pings.set("b", 1.0)
    pings.set("a", 2.0)  # a newer deadline for "a"; the old one still falls due
    assert pings.due(24.9) == []
    assert pings.due(26.0) == [("a", 0.0), ("b", 1.0)]
    assert len(pings) == 1
    assert pings.due(100.0) == [("a", 2.0)]
    pings.set("c", 0.0)
    pings.clear()
    assert pings.due(100.0) == []
    with pytest.raises(ValueError):
        Deadlines(-1.0)
