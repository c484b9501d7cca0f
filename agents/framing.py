"""Pure newline framing for agent streams: bytes in, lines out, no I/O.

Agents write one JSON object per ``\\n``-terminated line (PROTOCOL.md). A read
returns whatever the kernel had: a line may split across reads and one read may
carry many lines, so framing never assumes one message per ``recv``. The framer
is a plain object in the style of h11: the I/O loop calls :meth:`LineFramer.feed`
with each chunk, then :meth:`LineFramer.next_frame` until it returns ``None``
("need more data"). At end of stream it calls :meth:`LineFramer.feed_eof` and
drains once more.

Frames are:

- ``bytes``: one line, without its ``\\n`` and without one trailing ``\\r``;
- :class:`Oversize`: a line longer than ``max_line``; its bytes were skipped up to
  the next ``\\n`` and the stream goes on with the following line;
- :class:`Overflow`: a line that ran past ``max_buffer`` (the receive-buffer limit,
  PROTOCOL.md: "past that the connection is closed"). The framer then ends the
  stream itself, as if :meth:`LineFramer.feed_eof` had been called: complete lines
  already fed after it still follow, then a :class:`Truncated` for a partial one,
  and feeding more is a caller bug. The caller closes the connection;
- :class:`Truncated`: bytes after the last ``\\n`` when the stream ended.

Memory is bounded: a partial line is kept only while it can still be a valid
line (at most ``max_line + 1`` bytes, the extra byte being a possible ``\\r``);
past that the framer keeps a 1 KiB head for the dead letter and counts the rest.
So the buffer never holds more than ``max_line + 1`` plus the chunk just fed,
provided the caller drains before feeding again (enforced, see :meth:`feed`).
"""

from __future__ import annotations

import dataclasses
from typing import Final, cast

from agents.exceptions import FramingError

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_LINE",
    "HEAD_SIZE",
    "Frame",
    "LineFramer",
    "Overflow",
    "Oversize",
    "Truncated",
]

DEFAULT_MAX_LINE: Final = 4 * 1024 * 1024
"""PROTOCOL.md: one message at most 4 MiB."""

DEFAULT_MAX_BUFFER: Final = 8 * 1024 * 1024
"""PROTOCOL.md: the receive buffer at most 8 MiB; past that the connection is closed."""

HEAD_SIZE: Final = 1024
"""How much of a rejected line is kept for the dead-letter record."""

_LF: Final = 0x0A
_CR: Final = 0x0D


@dataclasses.dataclass(frozen=True, slots=True)
class Oversize:
    """A line longer than the limit; it was skipped, the stream continues after it.

    ``length`` counts the line's bytes without its ``\\n`` / ``\\r\\n`` terminator;
    ``head`` is its first :data:`HEAD_SIZE` bytes.
    """

    length: int
    head: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Overflow:
    """A line that ran past the receive-buffer limit: the stream ends here.

    ``length`` counts the line's bytes read so far: the whole line without its
    terminator when its ``\\n`` came in the same read, otherwise every byte of
    it fed until the limit was passed (the line may go on, unread). ``head`` is
    its first :data:`HEAD_SIZE` bytes.
    """

    length: int
    head: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Truncated:
    """Bytes after the last ``\\n`` at end of stream: a line the peer never finished.

    ``length`` is the number of bytes, ``head`` the first :data:`HEAD_SIZE` of them.
    """

    length: int
    head: bytes


Frame = bytes | Oversize | Overflow | Truncated
"""What :meth:`LineFramer.next_frame` returns when it has something."""


class LineFramer:
    """Splits a byte stream into lines; see the module docstring for the contract."""

    __slots__ = (
        "_buf",
        "_discard_head",
        "_discard_last",
        "_discarded",
        "_discarding",
        "_drained",
        "_eof",
        "_max_buffer",
        "_max_line",
        "_scan_from",
        "_start",
    )

    def __init__(
        self, max_line: int = DEFAULT_MAX_LINE, max_buffer: int = DEFAULT_MAX_BUFFER
    ) -> None:
        if max_line < 0:
            raise ValueError(f"max_line must be >= 0, got {max_line}")
        if max_buffer < max_line:
            raise ValueError(f"max_buffer must be >= max_line ({max_line}), got {max_buffer}")
        self._max_line = max_line
        self._max_buffer = max_buffer
        self._buf = bytearray()
        # Consumed lines are skipped with an offset and compacted on the next
        # feed, so many short lines in one chunk cost linear time, not quadratic.
        self._start = 0
        # Bytes in ``_buf[_start:_scan_from]`` are known to hold no ``\n``; a
        # line fed one byte at a time is thus scanned once, not once per byte.
        self._scan_from = 0
        self._discarding = False
        self._discarded = 0
        self._discard_head = b""
        self._discard_last = -1
        self._eof = False
        self._drained = True

    @property
    def max_line(self) -> int:
        return self._max_line

    @property
    def max_buffer(self) -> int:
        return self._max_buffer

    @property
    def buffered(self) -> int:
        """Bytes held right now (for metrics and the bounded-memory tests)."""
        return len(self._buf) - self._start

    @property
    def at_eof(self) -> bool:
        """True once :meth:`feed_eof` was called or an :class:`Overflow` ended the stream."""
        return self._eof

    def feed(self, data: bytes) -> None:
        """Add bytes read from the stream.

        The caller must have drained the framer (``next_frame()`` returned
        ``None``) first; otherwise a peer could make us buffer without limit by
        sending faster than we frame. Feeding after :meth:`feed_eof`, or after an
        :class:`Overflow` ended the stream, is a bug too.
        """
        if self._eof:
            raise FramingError("feed() after the stream ended (feed_eof() or an Overflow)")
        if not self._drained:
            raise FramingError("feed() before next_frame() returned None")
        if not data:
            return
        if self._start:
            del self._buf[: self._start]
            self._scan_from -= self._start
            self._start = 0
        self._buf += data
        self._drained = False

    def feed_frames(self, data: bytes) -> list[Frame]:
        """:meth:`feed` then :meth:`frames`, without copying ``data`` in the common case.

        The common case: whole lines with no ``\\r``, none too long, and at most the
        start of one more line after them. ``data`` is then split where it lies and
        only the unfinished line stays buffered. Through :meth:`feed` every read was
        copied three times (into the buffer, out of it, into bytes) and each
        connection kept a buffer of a read's size, page-faulted in afresh by the
        next burst (docs/BENCHMARKS.md, session 13).
        """
        lines = self._split_in_place(data)
        if lines is None:
            self.feed(data)
            return self.frames()
        return cast("list[Frame]", lines)

    def _split_in_place(self, data: bytes) -> list[bytes] | None:
        """The common case of :meth:`feed_frames`, or None (nothing changed) if it is not."""
        buf = self._buf
        pending = len(buf) - self._start
        if (
            self._discarding
            or self._eof
            or not self._drained
            or not data
            or len(data) > self._max_line
            or b"\r" in data
        ):
            return None
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last \n: the start of a line, or b""
        if not lines or (
            pending
            and (pending + len(lines[0]) > self._max_line or buf.find(_CR, self._start) >= 0)
        ):
            return None
        if pending:
            lines[0] = bytes(buf[self._start :]) + lines[0]
        buf.clear()
        buf += tail
        self._start = 0
        self._scan_from = len(tail)  # holds no \n
        self._drained = True
        return lines

    def feed_eof(self) -> None:
        """The stream ended; remaining complete lines, then any partial one, follow."""
        self._eof = True
        self._drained = False

    def next_frame(self) -> Frame | None:
        """The next frame, or ``None``: more data is needed (after EOF: nothing is left)."""
        frame = self._next_discarding() if self._discarding else self._next_line()
        if frame is None:
            self._drained = True
            if self._start == len(self._buf):
                self._buf.clear()
                self._start = self._scan_from = 0
        return frame

    def frames(self) -> list[Frame]:
        """Every frame available now, in order: the same as calling :meth:`next_frame`
        until ``None``, but complete lines are cut with one ``bytes.split`` (many
        lines a read; :meth:`feed_frames` takes the common case without the buffer)."""
        out: list[Frame] = []
        if not self._discarding:
            buf = self._buf
            last = buf.rfind(_LF, max(self._scan_from, self._start))
            if last >= 0:
                block = bytes(buf[self._start : last])
                self._start = self._scan_from = last + 1
                limit = self._max_line
                if len(block) <= limit and b"\r" not in block:
                    # The common case, all in C: no line can be too long, none
                    # ends in \r (a memchr over the block, not a test per line).
                    # (list[bytes] is a list[Frame]; split makes it without a copy.)
                    out = cast("list[Frame]", block.split(b"\n"))
                    if self._start == len(buf):
                        # Everything fed is framed: the same as next_frame() -> None.
                        buf.clear()
                        self._start = self._scan_from = 0
                        self._drained = True
                        return out
                    while (frame := self.next_frame()) is not None:
                        out.append(frame)
                    return out
                for line in block.split(b"\n"):
                    if line[-1:] == b"\r":
                        line = line[:-1]
                    if len(line) <= limit:
                        out.append(line)
                    elif len(line) <= self._max_buffer:
                        out.append(Oversize(len(line), line[:HEAD_SIZE]))
                    else:
                        # The lines after it were read already: they still follow.
                        out.append(Overflow(len(line), line[:HEAD_SIZE]))
                        self._eof = True
        while (frame := self.next_frame()) is not None:
            out.append(frame)
        return out

    def _next_line(self) -> Frame | None:
        buf = self._buf
        end = buf.find(_LF, max(self._scan_from, self._start))
        if end >= 0:
            line_end = end - 1 if end > self._start and buf[end - 1] == _CR else end
            start = self._start
            self._start = self._scan_from = end + 1
            length = line_end - start
            if length > self._max_line:
                head = bytes(buf[start : start + min(length, HEAD_SIZE)])
                if length > self._max_buffer:
                    self._eof = True
                    return Overflow(length, head)
                return Oversize(length, head)
            return bytes(buf[start:line_end])
        self._scan_from = len(buf)
        pending = len(buf) - self._start
        if self._eof:
            if pending == 0:
                return None
            head = bytes(buf[self._start : self._start + HEAD_SIZE])
            self._start = self._scan_from = len(buf)
            return Truncated(pending, head)
        if pending > self._max_line + 1:
            # Too long even if its last byte turns out to be the \r of a \r\n:
            # stop buffering, keep a head for the dead letter, count the rest.
            self._discarding = True
            self._discard_head = bytes(buf[self._start : self._start + HEAD_SIZE])
            self._discarded = pending
            self._discard_last = buf[-1]
            buf.clear()
            self._start = self._scan_from = 0
            return self._overflow_if_past()
        return None

    def _next_discarding(self) -> Frame | None:
        buf = self._buf
        end = buf.find(_LF, self._start)
        if len(self._discard_head) < HEAD_SIZE:
            # With a limit under HEAD_SIZE the head is completed from later chunks.
            stop = len(buf) if end < 0 else end
            room = HEAD_SIZE - len(self._discard_head)
            self._discard_head += bytes(buf[self._start : min(stop, self._start + room)])
        if end < 0:
            if len(buf) > self._start:
                self._discarded += len(buf) - self._start
                self._discard_last = buf[-1]
            buf.clear()
            self._start = self._scan_from = 0
            if (overflow := self._overflow_if_past()) is not None:
                return overflow
            if self._eof and self._discarded:
                return self._finish_discard(Truncated(self._discarded, self._discard_head))
            return None
        if end > self._start:
            self._discarded += end - self._start
            self._discard_last = buf[end - 1]
        length = self._discarded - (1 if self._discard_last == _CR else 0)
        self._start = self._scan_from = end + 1
        if length > self._max_buffer:
            self._eof = True
            return self._finish_discard(Overflow(length, self._discard_head[:length]))
        return self._finish_discard(Oversize(length, self._discard_head[:length]))

    def _overflow_if_past(self) -> Frame | None:
        """An unfinished line past the receive-buffer limit ends the stream.

        Past ``max_buffer + 1`` bytes it is too long even if its last byte is the
        ``\\r`` of a ``\\r\\n``; waiting for its newline would let a peer hold the
        connection with one endless line.
        """
        if self._discarded <= self._max_buffer + 1:
            return None
        self._eof = True
        return self._finish_discard(Overflow(self._discarded, self._discard_head))

    def _finish_discard(self, frame: Frame) -> Frame:
        self._discarding = False
        self._discarded = 0
        self._discard_head = b""
        self._discard_last = -1
        return frame
