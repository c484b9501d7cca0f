"""LineFramer: whole input, byte by byte, split chunks, \\r\\n, partial tails, oversize lines,
lines past the receive-buffer limit."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.exceptions import FramingError
from agents.framing import (
    DEFAULT_MAX_BUFFER,
    HEAD_SIZE,
    Frame,
    LineFramer,
    Overflow,
    Oversize,
    Truncated,
)


def drive(
    chunks: Iterable[bytes],
    *,
    max_line: int = 1 << 20,
    max_buffer: int = DEFAULT_MAX_BUFFER,
    eof: bool = True,
) -> tuple[list[Frame], int]:
    """Drive a framer the way the bridge does: feed, drain, repeat; then EOF and drain.

    Like the bridge, stop reading once the framer ended the stream (an Overflow).
    Returns the frames and how many bytes were fed.
    """
    framer = LineFramer(max_line, max_buffer)
    out: list[Frame] = []
    fed = 0
    for chunk in chunks:
        if framer.at_eof:
            break
        framer.feed(chunk)
        fed += len(chunk)
        while (frame := framer.next_frame()) is not None:
            out.append(frame)
        assert framer.buffered <= max_line + 1 + len(chunk)
    if eof and not framer.at_eof:
        framer.feed_eof()
        while (frame := framer.next_frame()) is not None:
            out.append(frame)
    return out, fed


def frames_of(
    chunks: Iterable[bytes],
    *,
    max_line: int = 1 << 20,
    max_buffer: int = DEFAULT_MAX_BUFFER,
    eof: bool = True,
) -> list[Frame]:
    return drive(chunks, max_line=max_line, max_buffer=max_buffer, eof=eof)[0]


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


DATA = b'{"a":1}\n{"b":2}\n\n{"c":3}\n'
EXPECTED: list[Frame] = [b'{"a":1}', b'{"b":2}', b"", b'{"c":3}']


def test_whole_input() -> None:
    assert frames_of([DATA]) == EXPECTED


def test_one_byte_at_a_time() -> None:
    assert frames_of(one_byte_at_a_time(DATA)) == EXPECTED


def test_lines_split_across_chunks() -> None:
    assert frames_of([b'{"a"', b':1}\n{"b":', b"2}\n\n", b'{"c":3}', b"\n"]) == EXPECTED


def test_need_more_data_until_newline() -> None:
    framer = LineFramer()
    framer.feed(b"partial")
    assert framer.next_frame() is None
    framer.feed(b" line\nnext")
    assert framer.next_frame() == b"partial line"
    assert framer.next_frame() is None
    assert framer.buffered == 4


def test_crlf_is_stripped_once() -> None:
    assert frames_of([b"a\r\nb\r\r\nc\n"]) == [b"a", b"b\r", b"c"]
    assert frames_of(one_byte_at_a_time(b"a\r\nb\r\n")) == [b"a", b"b"]


def test_lone_cr_inside_a_line_is_kept() -> None:
    assert frames_of([b"a\rb\n"]) == [b"a\rb"]


def test_trailing_partial_line_is_reported_truncated_at_eof() -> None:
    assert frames_of([b"ok\nhalf a li", b"ne"]) == [b"ok", Truncated(11, b"half a line")]


def test_no_trailing_partial_without_eof() -> None:
    assert frames_of([b"ok\nhalf"], eof=False) == [b"ok"]


def test_empty_stream() -> None:
    assert frames_of([]) == []
    assert frames_of([b""]) == []


def test_oversize_line_is_skipped_and_the_next_line_follows() -> None:
    big = b"x" * 100
    frames = frames_of([b"first\n" + big + b"\nsecond\n"], max_line=10)
    assert frames == [b"first", Oversize(100, big), b"second"]


def test_oversize_line_streamed_in_chunks_keeps_memory_bounded() -> None:
    framer = LineFramer(max_line=64)
    framer.feed(b"ok\n")
    assert framer.next_frame() == b"ok"
    assert framer.next_frame() is None
    total = 0
    for _ in range(1000):
        chunk = b"y" * 50
        framer.feed(chunk)
        total += len(chunk)
        assert framer.next_frame() is None
        assert framer.buffered <= 64 + 1 + 50
    framer.feed(b"\r\nafter\n")
    frame = framer.next_frame()
    assert isinstance(frame, Oversize)
    assert frame.length == total
    assert frame.head == b"y" * HEAD_SIZE
    assert framer.next_frame() == b"after"
    assert framer.next_frame() is None


def test_line_exactly_at_the_limit_passes_with_or_without_cr() -> None:
    line = b"z" * 16
    assert frames_of(one_byte_at_a_time(line + b"\r\n"), max_line=16) == [line]
    assert frames_of([line + b"\n"], max_line=16) == [line]
    assert frames_of([line + b"z\n"], max_line=16) == [Oversize(17, line + b"z")]


def test_oversize_crlf_split_from_its_line_is_not_in_the_head() -> None:
    assert frames_of([b"w" * 20, b"\r", b"\nok\n"], max_line=8) == [Oversize(20, b"w" * 20), b"ok"]


def test_oversize_then_eof_is_truncated() -> None:
    assert frames_of([b"w" * 40], max_line=8) == [Truncated(40, b"w" * 40)]


def test_line_between_the_line_and_buffer_limits_is_skipped_and_the_stream_goes_on() -> None:
    frames, fed = drive([b"a\n" + b"x" * 16 + b"\r\nb\n"], max_line=8, max_buffer=16)
    assert frames == [b"a", Oversize(16, b"x" * 16), b"b"]
    assert fed == 22


def test_complete_line_past_the_buffer_limit_ends_the_stream_after_what_was_read() -> None:
    framer = LineFramer(max_line=8, max_buffer=16)
    framer.feed(b"a\n" + b"x" * 17 + b"\nb\nhalf")
    assert framer.frames() == [b"a", Overflow(17, b"x" * 17), b"b", Truncated(4, b"half")]
    assert framer.at_eof
    with pytest.raises(FramingError):
        framer.feed(b"more\n")


def test_endless_line_ends_the_stream_once_past_the_buffer_limit() -> None:
    framer = LineFramer(max_line=4, max_buffer=16)
    framer.feed(b"ok\n")
    assert framer.next_frame() == b"ok"
    assert framer.next_frame() is None
    fed = 0
    while not framer.at_eof:
        framer.feed(b"y")
        fed += 1
        frame = framer.next_frame()
        if frame is not None:
            assert frame == Overflow(18, b"y" * 18)
            assert framer.next_frame() is None
        assert framer.buffered <= 4 + 1 + 1
    # 17 bytes could still be 16 and the \r of a \r\n; the 18th is past the limit.
    assert fed == 18


def test_line_exactly_at_the_buffer_limit_keeps_the_stream_with_or_without_cr() -> None:
    line = b"z" * 16
    for end in (b"\r\n", b"\n"):
        frames = frames_of([*one_byte_at_a_time(line + end), b"next\n"], max_line=4, max_buffer=16)
        assert frames == [Oversize(16, line), b"next"]
    frames = frames_of([*one_byte_at_a_time(line + b"z\n"), b"next\n"], max_line=4, max_buffer=16)
    assert frames == [Overflow(17, line + b"z")]


def test_overflow_keeps_a_head_from_a_line_streamed_in_chunks() -> None:
    frames, fed = drive([b"h" * 600, b"i" * 600, b"j" * 600, b"k\n"], max_line=10, max_buffer=1000)
    assert frames == [Overflow(1200, (b"h" * 600 + b"i" * 600)[:HEAD_SIZE])]
    assert fed == 1200


def test_buffer_limit_under_the_line_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_buffer"):
        LineFramer(max_line=100, max_buffer=99)


def test_trailing_garbage_after_lines() -> None:
    assert frames_of([b"good\n\xff\xfe\x00garbage"]) == [
        b"good",
        Truncated(10, b"\xff\xfe\x00garbage"),
    ]


def test_feed_without_draining_is_a_caller_bug() -> None:
    framer = LineFramer()
    framer.feed(b"a\n")
    with pytest.raises(FramingError):
        framer.feed(b"b\n")


def test_default_limits_are_the_protocols() -> None:
    framer = LineFramer()
    assert (framer.max_line, framer.max_buffer) == (4 * 1024 * 1024, 8 * 1024 * 1024)


def test_feed_after_eof_is_a_caller_bug() -> None:
    framer = LineFramer()
    framer.feed_eof()
    assert framer.next_frame() is None
    with pytest.raises(FramingError):
        framer.feed(b"late\n")


def expected_frames(data: bytes, max_line: int, max_buffer: int | None = None) -> list[Frame]:
    """The reference model: split on \\n, strip one \\r, classify by length.

    With ``max_buffer``, ``data`` is what was fed before the stream ended: a line
    past it is an Overflow; an unfinished tail past ``max_buffer + 1`` too, unless
    an Overflow before it already ended the stream (then it is Truncated).
    """
    *lines, tail = data.split(b"\n")
    out: list[Frame] = []
    for raw in lines:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if len(line) <= max_line:
            out.append(line)
        elif max_buffer is None or len(line) <= max_buffer:
            out.append(Oversize(len(line), line[:HEAD_SIZE]))
        else:
            out.append(Overflow(len(line), line[:HEAD_SIZE]))
    ended = any(isinstance(f, Overflow) for f in out)
    if max_buffer is not None and not ended and len(tail) > max_buffer + 1:
        out.append(Overflow(len(tail), tail[:HEAD_SIZE]))
    elif tail:
        out.append(Truncated(len(tail), tail[:HEAD_SIZE]))
    return out


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


lines_alphabet = st.sampled_from([b"a", b"b", b"\n", b"\r", b"{", b"\xff"])


@given(
    data=st.lists(lines_alphabet, max_size=300).map(b"".join) | st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=40),
)
def test_any_chunking_matches_splitting_on_newline(data: bytes, cuts: list[int]) -> None:
    assert frames_of(chunked(data, cuts)) == expected_frames(data, 1 << 20)


@given(
    data=st.lists(lines_alphabet, max_size=300).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=40),
    max_line=st.integers(min_value=0, max_value=12),
)
@settings(max_examples=500)
def test_any_chunking_with_a_small_limit(data: bytes, cuts: list[int], max_line: int) -> None:
    assert frames_of(chunked(data, cuts), max_line=max_line) == expected_frames(data, max_line)


@given(
    data=st.lists(lines_alphabet, max_size=300).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=40),
    max_line=st.integers(min_value=0, max_value=12),
    extra=st.integers(min_value=0, max_value=12),
)
@settings(max_examples=500)
def test_any_chunking_with_a_small_buffer_limit(
    data: bytes, cuts: list[int], max_line: int, extra: int
) -> None:
    max_buffer = max_line + extra
    frames, fed = drive(chunked(data, cuts), max_line=max_line, max_buffer=max_buffer)
    assert frames == expected_frames(data[:fed], max_line, max_buffer)
    if fed < len(data):  # reading stopped only because a line ran past the limit
        assert any(isinstance(f, Overflow) for f in frames)


def _feed_then_frames(framer: LineFramer, chunk: bytes) -> list[Frame]:
    framer.feed(chunk)
    return framer.frames()


@pytest.mark.parametrize(
    "take",
    [_feed_then_frames, LineFramer.feed_frames],
    ids=["feed+frames", "feed_frames (the bridge's, zero-copy)"],
)
@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(
        st.sampled_from([b"a", b"bb", b"\n", b"\r", b"\r\n", b"x" * 40, b"{}", b"\n\n"]),
        max_size=60,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    max_line=st.sampled_from([0, 1, 3, 16, 45, 1 << 20]),
    extra=st.sampled_from([0, 2, 30, DEFAULT_MAX_BUFFER]),
)
def test_bulk_frames_equal_one_at_a_time(
    take: Callable[[LineFramer, bytes], list[Frame]],
    pieces: list[bytes],
    cuts: list[int],
    max_line: int,
    extra: int,
) -> None:
    """Framing a whole read at once, as the bridge does, cuts every stream as the
    byte-by-byte reference does: limits, ``\\r`` and the end of the stream included."""
    data = b"".join(pieces)
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    framer = LineFramer(max_line, max_line + extra)
    bulk: list[Frame] = []
    for chunk in chunks:
        if framer.at_eof:
            break
        bulk.extend(take(framer, chunk))
        assert framer.buffered <= max_line + 1 + len(chunk)
    if not framer.at_eof:
        framer.feed_eof()
        bulk.extend(framer.frames())
    assert bulk == frames_of(chunks, max_line=max_line, max_buffer=max_line + extra)


def test_feed_frames_joins_a_line_split_across_reads() -> None:
    framer = LineFramer()
    assert framer.feed_frames(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert framer.buffered == 4
    assert framer.feed_frames(b':2}\n{"c":3}\n') == [b'{"b":2}', b'{"c":3}']
    assert framer.buffered == 0
    assert framer.feed_frames(b"x\r") == []  # a \r: the general path keeps it for the \n
    assert framer.feed_frames(b"\n") == [b"x"]
