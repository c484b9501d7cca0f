"""Per-VM budgets for warnings about a guest's input, so a hostile guest cannot flood the log.

Every refused line already has its durable account (one DLQ record, counted by
reason); the warning in the log is for a human watching, so it may be
sampled. A token bucket per key (a VM id): ``burst`` warnings at once, then
``per_s`` a second; what is held back is counted, and the next warning that
passes says how many were suppressed. One guest writing a million bad lines
gets a handful of log lines; the other VMs keep their own budgets.

Pure: the caller passes the clock. The number of keys is bounded (the key
seen least recently is forgotten), so many VMs cost bounded memory.
"""

from __future__ import annotations

from typing import Final

__all__ = ["WarningBudget", "suppressed_note"]


class _Bucket:
    __slots__ = ("last", "suppressed", "tokens")

    def __init__(self, tokens: float, last: float) -> None:
        self.tokens = tokens
        self.last = last
        self.suppressed = 0


class WarningBudget:
    """How many warnings each key may still write: ``burst`` at once, ``per_s`` refilled."""

    DEFAULT_BURST: Final = 5
    DEFAULT_PER_S: Final = 0.1  # after the burst, one warning per VM every 10 s

    def __init__(
        self, burst: int = DEFAULT_BURST, per_s: float = DEFAULT_PER_S, max_keys: int = 10_000
    ) -> None:
        if burst < 1 or per_s <= 0 or max_keys < 1:
            raise ValueError("burst and max_keys must be >= 1 and per_s > 0")
        self.burst = burst
        self.per_s = per_s
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self.suppressed_total = 0
        """Warnings held back so far, over every key."""

    def take(self, key: str, now: float) -> int | None:
        """None: stay silent. Otherwise write the warning: the number returned is how many
        warnings of ``key`` were suppressed since its last one (usually 0)."""
        buckets = self._buckets
        bucket = buckets.pop(key, None)  # re-inserted last: the dict stays in LRU order
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            if len(buckets) >= self.max_keys:
                del buckets[next(iter(buckets))]
        else:
            elapsed = max(0.0, now - bucket.last)  # a clock that went back refills nothing
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.per_s)
            bucket.last = max(bucket.last, now)
        buckets[key] = bucket
        if bucket.tokens < 1.0:
            bucket.suppressed += 1
            self.suppressed_total += 1
            return None
        bucket.tokens -= 1.0
        held, bucket.suppressed = bucket.suppressed, 0
        return held

    def __len__(self) -> int:
        return len(self._buckets)


def suppressed_note(held: int) -> str:
    """What to append to a warning that follows ``held`` suppressed ones."""
    return f" ({held} similar warnings suppressed before this one)" if held else ""
