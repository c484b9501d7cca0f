"""Resume: positions on delivered events and the log of recent events to replay from.

Pure, no I/O: the consumer appends every outbound record it handles, the
namespace asks the log what a reconnecting client missed.

A *position* is the consumer's cut after an event: for each partition of
``events.outbound``, the next offset to read, written ``"<o0>.<o1>...<oN-1>"``
(partition 0 first). Every record below the cut was handled before the event
that carries it, so a client that hands back the position of the last event it
received has seen everything below the cut that was addressed to it, and needs
exactly the records at or above it. This stays right across instances, whose
interleaving of partitions differs: a cut is per partition, not a global order.

The log keeps recent records per partition, bounded by age (the resume window)
and by count; what fell out of it cannot be replayed, and the client is told to
resync instead. ``floor[p]`` is the lowest offset from which partition ``p`` is
complete in the log.

A replay can be taken in chunks (``since(..., limit=n)``): each chunk says
whether more follows and the cursor (offsets) to continue from, so the caller
can hold the consumer's lock for one chunk at a time while live events go on
between chunks; what arrives meanwhile is in the log, after the cursor.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import enum
import heapq
import itertools
from collections.abc import Sequence, Set

import msgspec

from schemas.events import OutboundEvent, decode_outbound

__all__ = [
    "MAX_POSITION_LENGTH",
    "Logged",
    "ReplayLog",
    "Resume",
    "ResumeStatus",
    "advance",
    "decode_position",
    "encode_position",
]

# 1,024 partitions of 19 digits each would not fit; a real cursor is far shorter.
MAX_POSITION_LENGTH = 4096


def encode_position(offsets: Sequence[int]) -> str:
    return ".".join(map(str, offsets))


def decode_position(value: object, partitions: int) -> tuple[int, ...] | None:
    """The offsets of a client-supplied position, or None if it is not one of ours."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_POSITION_LENGTH:
        return None
    parts = value.split(".")
    if len(parts) != partitions or not all(p.isdigit() and len(p) <= 19 for p in parts):
        return None
    return tuple(int(p) for p in parts)


class Logged(msgspec.Struct, frozen=True, gc=False):
    """One handled record: where it was, when, its bytes, and the position after it.

    The log holds up to ``VMPULSE_GATEWAY_RESUME_MAX_EVENTS`` of these for minutes.
    Decoded events (``data`` is a tree of dicts) made millions of objects that every
    full collection of the cyclic GC walked: at 2,000 live updates a second that was
    a fifth of the gateway's process time and collections of hundreds of milliseconds
    (issue 11). So an entry keeps the record's bytes and is invisible to the
    collector (``gc=False``: its fields are numbers, strings and bytes, never a
    cycle); a replay decodes the entries it sends. ``rooms`` and ``direct`` (the
    event names users or the admins) let a replay skip the rest without decoding.
    """

    seq: int
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes
    position: str
    rooms: tuple[str, ...] = ()
    direct: bool = True

    @property
    def event(self) -> OutboundEvent:
        return decode_outbound(self.value)

    def may_reach(self, rooms: Set[str]) -> bool:
        """False when no delivery of the event can be for one of ``rooms`` (then skip it)."""
        return self.direct or not rooms.isdisjoint(self.rooms)


class ResumeStatus(enum.Enum):
    OK = "ok"
    GAP = "gap"  # the client missed records the log no longer holds
    AHEAD = "ahead"  # the client saw records this instance has not handled yet
    INVALID = "invalid"  # not a position of this topic
    RATE_LIMITED = "rate_limited"  # the user resumed too often; not looked up


@dataclasses.dataclass(frozen=True, slots=True)
class Resume:
    """What a client missed: ``entries`` in handling order; with a ``limit``,
    ``more`` says whether entries follow, from ``cursor`` on."""

    status: ResumeStatus
    entries: tuple[Logged, ...] = ()
    more: bool = False
    cursor: tuple[int, ...] = ()
    start: tuple[int, ...] = ()  # the cursor this chunk started from


class ReplayLog:
    """Recent outbound records per partition, bounded by age and count."""

    def __init__(
        self,
        start: Sequence[int],
        *,
        window_ms: int,
        max_events: int,
    ) -> None:
        self._next = list(start)
        self._floor = list(start)
        self._parts: list[collections.deque[Logged]] = [collections.deque() for _ in start]
        self._order: collections.deque[int] = collections.deque()
        self._window_ms = window_ms
        self._max = max_events
        self._seq = itertools.count()
        self._position = encode_position(self._next)

    @property
    def partitions(self) -> int:
        return len(self._next)

    @property
    def position(self) -> str:
        """The cut after the last handled record."""
        return self._position

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(self._next)

    def __len__(self) -> int:
        return len(self._order)

    def skip(self, partition: int, offset: int) -> None:
        """Move past a record that is not replayable (undecodable): nobody needs it."""
        self._next[partition] = max(self._next[partition], offset + 1)
        self._position = encode_position(self._next)

    def append(
        self, partition: int, offset: int, timestamp_ms: int, event: OutboundEvent, value: bytes
    ) -> str:
        """Record a handled event (decoded from ``value``) and return its position."""
        self._next[partition] = max(self._next[partition], offset + 1)
        self._position = encode_position(self._next)
        if self._max <= 0:
            self._floor[partition] = self._next[partition]
            return self._position
        entry = Logged(
            next(self._seq),
            partition,
            offset,
            timestamp_ms,
            value,
            self._position,
            tuple(event.rooms),
            bool(event.users) or event.admins,
        )
        self._parts[partition].append(entry)
        self._order.append(partition)
        while len(self._order) > self._max:
            self._evict_one()
        return self._position

    def expire(self, now_ms: int) -> None:
        """Forget records older than the window (in handling order)."""
        cutoff = now_ms - self._window_ms
        while self._order:
            head = self._parts[self._order[0]][0]
            if head.timestamp_ms >= cutoff:
                return
            self._evict_one()

    def _evict_one(self) -> None:
        entry = self._parts[self._order.popleft()].popleft()
        self._floor[entry.partition] = entry.offset + 1

    def since(self, value: object, *, limit: int | None = None) -> Resume:
        """What a client whose last position is ``value`` missed, oldest handled first.

        With ``limit``, at most that many entries; continue with
        :meth:`since_offsets` from the returned ``cursor`` while ``more``.
        """
        cursor = decode_position(value, self.partitions)
        if cursor is None:
            return Resume(ResumeStatus.INVALID)
        return self.since_offsets(cursor, limit=limit)

    def since_offsets(self, cursor: Sequence[int], *, limit: int | None = None) -> Resume:
        """Like :meth:`since`, from a cursor of offsets (one per partition)."""
        if len(cursor) != self.partitions:
            return Resume(ResumeStatus.INVALID)
        if any(c > n for c, n in zip(cursor, self._next, strict=True)):
            return Resume(ResumeStatus.AHEAD)
        if any(c < f for c, f in zip(cursor, self._floor, strict=True)):
            return Resume(ResumeStatus.GAP)
        runs = []
        for part, want in zip(self._parts, cursor, strict=True):
            first = bisect.bisect_left(part, want, key=_offset)
            if first < len(part):
                runs.append(itertools.islice(part, first, None))
        merged = heapq.merge(*runs, key=_seq)
        if limit is None:
            entries = tuple(merged)
            more = False
        else:
            entries = tuple(itertools.islice(merged, limit + 1))
            more = len(entries) > limit
            entries = entries[:limit]
        start = tuple(cursor)
        return Resume(ResumeStatus.OK, entries, more, advance(start, entries), start)


def advance(cursor: Sequence[int], entries: Sequence[Logged]) -> tuple[int, ...]:
    """The cursor after ``entries`` (taken in order from the cursor): where to go on from."""
    after = list(cursor)
    for entry in entries:
        after[entry.partition] = entry.offset + 1
    return tuple(after)


def _offset(entry: Logged) -> int:
    return entry.offset


def _seq(entry: Logged) -> int:
    return entry.seq
