"""Caps and ranges every agent message is held to (docs/PROTOCOL_VALIDATION.md).

The limits are written as msgspec ``Meta`` constraints on annotated types, so
the C decoder enforces them while it parses: validation costs no Python loop
per field, and a violation names its JSON path. Change a limit here and the
JSON Schema export (``python -m schemas.export``) picks it up.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final

import msgspec

__all__ = [
    "BLOB_MAX",
    "CAPPED",
    "COUNTER_MAX",
    "FREE_FORM_MAX_DEPTH",
    "MAX_ITEMS",
    "NAME_MAX",
    "TEXT_MAX",
    "TS_TOLERANCE",
    "Blob",
    "Count",
    "Counter",
    "Gigabytes",
    "Load",
    "Name",
    "Percent",
    "Port",
    "ProcessPercent",
    "Seconds",
    "Temperature",
    "Text",
    "VmId",
]

MAX_ITEMS: Final = 1000
"""Arrays (processes, ports, cores, mounts, interfaces, applications) hold at most this many."""

NAME_MAX: Final = 256
"""Identifiers and names: VM ids, process names, interfaces, mount points, versions."""

TEXT_MAX: Final = 8192
"""Free text: command lines, paths, messages, error details."""

BLOB_MAX: Final = 1024 * 1024
"""Command output (stdout / stderr): the 4 MiB line limit applies anyway."""

COUNTER_MAX: Final = 2**63 - 1
"""Counters and sizes fit ClickHouse UInt64 and signed arithmetic; beyond is an agent bug."""

FREE_FORM_MAX_DEPTH: Final = 16
"""Nesting allowed inside free-form fields (``context``, ``data``) that are stored as JSON."""

TS_TOLERANCE: Final = dt.timedelta(minutes=5)
"""An agent clock further than this from the receive time is not trusted for the series."""

Name = Annotated[str, msgspec.Meta(max_length=NAME_MAX)]
Text = Annotated[str, msgspec.Meta(max_length=TEXT_MAX)]
Blob = Annotated[str, msgspec.Meta(max_length=BLOB_MAX)]
VmId = Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX)]

Counter = Annotated[int, msgspec.Meta(ge=0, le=COUNTER_MAX)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]

# Floats get both bounds: JSON has no NaN, and a bound turns 1e400 (which
# parses as infinity) into "Number out of range" instead of a stored inf.
Percent = Annotated[float, msgspec.Meta(ge=0.0, le=100.0)]
ProcessPercent = Annotated[float, msgspec.Meta(ge=0.0, le=100.0 * 4096)]
"""A process may use every core: sysinfo reports up to 100 % per core."""
Temperature = Annotated[float, msgspec.Meta(ge=-273.15, le=1000.0)]
Gigabytes = Annotated[float, msgspec.Meta(ge=0.0, le=1e12)]
Load = Annotated[float, msgspec.Meta(ge=0.0, le=1e6)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=1e12)]


CAPPED = msgspec.Meta(max_length=MAX_ITEMS)
"""Use as ``Annotated[list[X], CAPPED]``: an array of at most 1,000 items."""
