"""Per-user rate limits for client events: a token bucket per (user, event).

Pure, with an injected clock, so the arithmetic is tested without time passing.
A bucket holds ``per_minute`` tokens and refills continuously; a burst up to the
full allowance is accepted, then one event per ``60 / per_minute`` seconds.
Buckets are dropped when a user's last socket closes, so the table is bounded
by the connected users times the handful of event names a client may send.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RATE_LIMITED", "RateLimiter"]

RATE_LIMITED = "Rate limit exceeded"


class RateLimiter:
    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def allow(self, user_id: str, event: str) -> bool:
        """Take one token from the user's bucket for ``event``; False when empty."""
        now = self._clock()
        key = (user_id, event)
        tokens, last = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def __len__(self) -> int:
        return len(self._buckets)

    def prune(self) -> int:
        """Drop the buckets that have refilled (they hold nothing a new one would not).

        For a limiter whose buckets outlive the user's sockets (the resume rate:
        forgetting a user at disconnect would hand a reconnect loop a full
        bucket every time); returns how many were dropped.
        """
        now = self._clock()
        full = [
            key
            for key, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self._rate >= self._capacity
        ]
        for key in full:
            del self._buckets[key]
        return len(full)

    def forget(self, user_id: str) -> None:
        for key in [k for k in self._buckets if k[0] == user_id]:
            del self._buckets[key]
