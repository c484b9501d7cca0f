"""Deadlines of one fixed delay, for thousands of sockets, without a timer each.

Pure, no clock of its own: the caller passes ``now``. Because every deadline of
a :class:`Deadlines` is set with the same delay, deadlines set later are also
due later, so a plain FIFO keeps them in due order: setting one and taking the
due ones cost O(1) each, where a timer per socket (engine.io's ping task, a
``call_later`` handle) costs a task or a heap entry per socket and memory
with it.

A deadline that no longer matters (the socket answered, closed, or a newer
deadline replaced it) is not removed; the caller recognises it when it falls
due, by the ``stamp`` it carries, and ignores it.
"""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

K = TypeVar("K")


class Deadlines(Generic[K]):
    __slots__ = ("_queue", "delay")

    def __init__(self, delay: float) -> None:
        if delay < 0:
            raise ValueError("delay must not be negative")
        self.delay = delay
        self._queue: collections.deque[tuple[float, K, float]] = collections.deque()

    def __len__(self) -> int:
        return len(self._queue)

    def set(self, key: K, now: float) -> float:
        """A deadline ``delay`` after ``now`` for ``key``; returns its stamp (``now``)."""
        self._queue.append((now + self.delay, key, now))
        return now

    def due(self, now: float) -> list[tuple[K, float]]:
        """Take every deadline due at ``now``: (key, stamp), in the order they were set."""
        queue = self._queue
        out: list[tuple[K, float]] = []
        while queue and queue[0][0] <= now:
            _, key, stamp = queue.popleft()
            out.append((key, stamp))
        return out

    def clear(self) -> None:
        self._queue.clear()
