"""Live metrics throttle: about one update per VM per interval, without holding samples back.

A browser cannot use more than about one chart update a second, and a burst of
replayed samples must not turn into a burst of socket traffic. But an agent that
reports once a second does not report exactly once a second: with a few hundred
milliseconds of jitter one sample comes 0.7 s after the previous, the next 1.3 s
after it. A fixed "one per interval" gate held the early one back until the
interval was over, so a steady 1/s fleet saw half its samples late (issue 11).

So the gate is a token bucket per VM: about a token every ``interval_s``, at
most ``burst`` tokens saved. A sample goes out at once while its VM has a token;
a VM's average stays at about one update per interval, jitter costs nothing, and only
samples that really come faster than the interval are merged (the latest wins)
and go out as soon as the next token is there (:meth:`due`). Pure: the caller
passes the clock in.

The bucket refills :data:`HEADROOM` times faster than one token an interval. At
exactly the agent's rate it could never refill: once a VM's samples were held
(a replayed backlog at start spends its tokens), each later sample came just
before its token and waited for it, and release ``k`` stayed at ``release 0 + k``
intervals forever (measured: a steady 1/s fleet 0.4 to 0.9 s late for good after
the worker read its backlog, every VM released in the same instant). With the
headroom each held sample waits a fifth of an interval less than the one
before, and the bucket then fills up again to absorb jitter. A VM that floods
gets 1.25 updates an interval.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

__all__ = ["HEADROOM", "LiveThrottle"]

T = TypeVar("T")

HEADROOM = 1.25
"""Tokens a VM earns per interval (see the module docstring: the bucket must outrun the
agent's own rate, or a delay once taken is never made up)."""


class LiveThrottle(Generic[T]):
    def __init__(self, interval_s: float, burst: float = 2.0, headroom: float = HEADROOM) -> None:
        self.interval_s = interval_s
        self.burst = burst
        # seconds per token
        self._refill_s = interval_s / headroom
        # per VM: (tokens, when they were counted)
        self._tokens: dict[str, tuple[float, float]] = {}
        self._pending: dict[str, T] = {}
        # (when the VM has a token again, VM) for pending VMs, so that :meth:`due` looks
        # only at those whose time has come, not at every pending VM on every tick
        self._due: list[tuple[float, str]] = []

    def _take(self, key: str, now: float) -> bool:
        """Spend a token of ``key`` if it has one (refilled up to ``now``)."""
        if self.interval_s <= 0:
            return True
        tokens, at = self._tokens.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) / self._refill_s)
        if tokens >= 1.0:
            self._tokens[key] = (tokens - 1.0, now)
            return True
        self._tokens[key] = (tokens, now)
        return False

    def offer(self, key: str, item: T, now: float) -> T | None:
        """Return ``item`` if it may go out now; otherwise keep it as the VM's pending update."""
        if self._take(key, now):
            self._pending.pop(key, None)
            return item
        if key not in self._pending:
            tokens, at = self._tokens[key]
            heapq.heappush(self._due, (at + (1.0 - tokens) * self._refill_s, key))
        self._pending[key] = item
        return None

    def due(self, now: float) -> list[tuple[str, T]]:
        """Pending updates whose VM has a token again; each is handed out once."""
        ready: list[tuple[str, T]] = []
        heap = self._due
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            if key not in self._pending:
                continue  # went out with a later offer meanwhile
            if self._take(key, now):
                ready.append((key, self._pending.pop(key)))
            else:  # float rounding left it a hair short: look again a moment later
                tokens, at = self._tokens[key]
                again = max(at + (1.0 - tokens) * self._refill_s, now + 0.001)
                heapq.heappush(heap, (again, key))
        return ready

    @property
    def pending(self) -> int:
        return len(self._pending)
