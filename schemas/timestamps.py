"""Agent timestamps: ISO 8601 strings, epoch seconds or epoch milliseconds.

Agents in the field disagree on the clock format: dialect 1 sends ISO 8601,
the InfiniService agent sends integer epoch seconds, and some builds send
milliseconds. A number above :data:`EPOCH_MS_THRESHOLD` is read as
milliseconds (1e11 s would be the year 5138). Anything outside
:data:`EARLIEST` .. :data:`LATEST` is a broken clock, not a measurement.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final

import msgspec

__all__ = ["EARLIEST", "EPOCH_MS_THRESHOLD", "LATEST", "Timestamp", "parse_timestamp"]

EPOCH_MS_THRESHOLD: Final = 100_000_000_000
EARLIEST: Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST: Final = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
_EARLIEST_S: Final = EARLIEST.timestamp()
_LATEST_S: Final = LATEST.timestamp()

Timestamp = (
    Annotated[str, msgspec.Meta(max_length=64)]
    | Annotated[int, msgspec.Meta(ge=0, le=10**15)]
    | Annotated[float, msgspec.Meta(ge=0.0, le=1e15)]
)
"""A timestamp field on the wire: ISO 8601 text or a non-negative epoch number."""


def parse_timestamp(value: str | float) -> dt.datetime:
    """The UTC instant ``value`` names; raises ValueError when it names none in range.

    Naive ISO strings are taken as UTC (agents write UTC without a zone).
    """
    if isinstance(value, str):
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        parsed = dt.datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        elif parsed.utcoffset() != dt.timedelta(0):
            parsed = parsed.astimezone(dt.UTC)
        if not EARLIEST <= parsed < LATEST:
            raise ValueError(f"timestamp {value!r} outside 2000..2100")
        return parsed
    seconds = value / 1000.0 if value >= EPOCH_MS_THRESHOLD else float(value)
    if not _EARLIEST_S <= seconds < _LATEST_S:
        raise ValueError(f"epoch timestamp {value!r} outside 2000..2100")
    return dt.datetime.fromtimestamp(seconds, dt.UTC)
