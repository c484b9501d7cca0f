"""Retry delays that grow: a dependency that is down is asked less and less often.

Used where a stage waits out something outside it: an agent socket that refuses (the
bridge's socket watcher), libvirt gone (the hypervisor watcher), the store refusing
inserts (the worker's ingest). Pure: the caller sleeps.
"""

from __future__ import annotations

__all__ = ["Backoff"]


class Backoff:
    """Delays ``base * factor**attempt``, capped; :meth:`reset` after a success."""

    __slots__ = ("_attempt", "base_s", "cap_s", "factor")

    def __init__(self, base_s: float = 3.0, factor: float = 1.5, cap_s: float = 120.0) -> None:
        if base_s < 0 or factor < 1 or cap_s < base_s:
            raise ValueError("need 0 <= base_s <= cap_s and factor >= 1")
        self.base_s = base_s
        self.factor = factor
        self.cap_s = cap_s
        self._attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call grows the following one."""
        delay = min(self.cap_s, self.base_s * self.factor**self._attempt)
        if delay < self.cap_s:
            self._attempt += 1
        return delay

    def reset(self) -> None:
        self._attempt = 0
