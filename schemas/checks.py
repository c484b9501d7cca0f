"""The checks every normalizer applies (:mod:`schemas.normalize`): pure, no I/O.

That a message speaks for the VM of its connection (anything else is an
impersonation attempt, ``vm_mismatch``), that its timestamp names a real
instant (and how far the agent's clock is trusted: :class:`Clock`), and that
free-form JSON fields stay small and shallow. A normalizer raises
:class:`Refused`; :func:`schemas.normalize.normalize` turns it into the
line's :class:`~schemas.dlq.Rejection`.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from typing import Any, Final

import msgspec

from schemas.dlq import Reason, Rejection
from schemas.facts import Fact
from schemas.limits import FREE_FORM_MAX_DEPTH, TEXT_MAX
from schemas.timestamps import parse_timestamp

__all__ = [
    "Clock",
    "Normalizer",
    "Refused",
    "check_vm",
    "free_form",
    "json_depth",
    "lenient_ts",
    "same_vm",
]

Normalizer = Callable[[Any, str, dt.datetime, dt.timedelta], list[Fact]]
"""(message, the connection's VM, receive time, clock tolerance) -> facts; raises Refused."""


class Refused(Exception):
    """Carries a Rejection out of a normalizer."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET: Final = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(data: bytes) -> int:
    """Deepest nesting of arrays and objects in a JSON text (strings ignored)."""
    depth = best = 0
    for c in _STRING.sub(b"", data).translate(None, _NOT_BRACKET):
        if c == 0x5B or c == 0x7B:
            depth += 1
            if depth > best:
                best = depth
        else:
            depth -= 1
    return best


def same_vm(claimed: str, conn_vm: str) -> bool:
    """True when a message's VM id names the connection's VM (UUIDs in any case)."""
    if claimed == conn_vm:
        return True
    try:
        return uuid.UUID(claimed) == uuid.UUID(conn_vm)
    except ValueError:
        return False


def check_vm(claimed: str | None, conn_vm: str) -> None:
    if claimed is not None and not same_vm(claimed, conn_vm):
        raise Refused(
            Reason.VM_MISMATCH,
            f"message names VM {claimed[:80]!r}, its connection belongs to VM {conn_vm!r}",
        )


def free_form(raw: msgspec.Raw, field: str, max_bytes: int = TEXT_MAX * 8) -> str | None:
    """A free-form JSON field as its JSON text, bounded in size and nesting."""
    data = bytes(raw)
    if data == b"null":
        return None
    if len(data) > max_bytes:
        raise Refused(Reason.TOO_LARGE, f"`{field}` is {len(data)} bytes, limit {max_bytes}")
    depth = json_depth(data)
    if depth > FREE_FORM_MAX_DEPTH:
        raise Refused(
            Reason.TOO_DEEP, f"`{field}` nests {depth} levels, limit {FREE_FORM_MAX_DEPTH}"
        )
    return data.decode("utf-8")


_ITEM_TS_CACHE: dict[str | float, dt.datetime | None] = {}
_ITEM_TS_CACHE_MAX: Final = 65_536


def lenient_ts(value: str | float | None) -> dt.datetime | None:
    """Timestamps inside items (process start, last use): unknown rather than refused.

    Memoized: a process's start time comes back unchanged in every snapshot
    (profiling showed this parse as the largest cost of a metrics line with
    many processes); the cache is bounded and simply dropped when full.
    """
    if value is None:
        return None
    try:
        return _ITEM_TS_CACHE[value]
    except KeyError:
        pass
    try:
        parsed: dt.datetime | None = parse_timestamp(value)
    except (ValueError, OverflowError, OSError):
        parsed = None
    if len(_ITEM_TS_CACHE) >= _ITEM_TS_CACHE_MAX:
        _ITEM_TS_CACHE.clear()
    _ITEM_TS_CACHE[value] = parsed
    return parsed


class Clock:
    """The three clocks of a fact (see :mod:`schemas.facts`)."""

    __slots__ = ("agent_ts", "received_at", "ts", "ts_source")

    def __init__(
        self, value: str | float | None, received_at: dt.datetime, tolerance: dt.timedelta
    ) -> None:
        self.received_at = received_at
        if value is None:
            self.agent_ts: dt.datetime | None = None
            self.ts, self.ts_source = received_at, "received"
            return
        try:
            agent_ts = parse_timestamp(value)
        except (ValueError, OverflowError, OSError) as exc:
            raise Refused(Reason.BAD_TIMESTAMP, f"timestamp: {exc}") from None
        self.agent_ts = agent_ts
        if abs(agent_ts - received_at) > tolerance:
            self.ts, self.ts_source = received_at, "received"
        else:
            self.ts, self.ts_source = agent_ts, "agent"

    def fields(self, vm_id: str, dialect: int, message_type: str) -> dict[str, Any]:
        return {
            "vm_id": vm_id,
            "ts": self.ts,
            "received_at": self.received_at,
            "agent_ts": self.agent_ts,
            "ts_source": self.ts_source,
            "dialect": dialect,
            "message_type": message_type,
        }
