"""Live metrics throttle: at most one update per VM per interval, the latest wins.

A browser cannot use more than about one chart update a second, and a burst
of replayed samples must not turn into a burst of socket traffic. Pure: the
caller passes the clock in.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["LiveThrottle"]

T = TypeVar("T")


class LiveThrottle(Generic[T]):
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last_sent: dict[str, float] = {}
        self._pending: dict[str, T] = {}

    def offer(self, key: str, item: T, now: float) -> T | None:
        """Return ``item`` if it may go out now; otherwise keep it as the VM's pending update."""
        last = self._last_sent.get(key)
        if last is None or now - last >= self.interval_s:
            self._last_sent[key] = now
            self._pending.pop(key, None)
            return item
        self._pending[key] = item
        return None

    def due(self, now: float) -> list[tuple[str, T]]:
        """Pending updates whose interval has passed; each is handed out once."""
        ready = [
            (key, item)
            for key, item in self._pending.items()
            if now - self._last_sent.get(key, 0.0) >= self.interval_s
        ]
        for key, _ in ready:
            del self._pending[key]
            self._last_sent[key] = now
        return ready
