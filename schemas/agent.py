"""Guest agent messages, decoded once at the edge (PROTOCOL.md).

Skeleton scope: dialect 1 ``system_metrics``. Every decode failure becomes a
:class:`Rejection` with a stable reason code; nothing here raises on input.
"""

from __future__ import annotations

import datetime as dt
import math

import msgspec

__all__ = ["Rejection", "SystemSample", "normalize_line"]


class Rejection(msgspec.Struct, frozen=True):
    """Why a line was refused: ``reason`` is a stable code, ``detail`` is for humans."""

    reason: str
    detail: str


class _Cpu(msgspec.Struct, forbid_unknown_fields=False):
    usage_percent: float | None = None


class _Memory(msgspec.Struct, forbid_unknown_fields=False):
    total_kb: int | None = None
    used_kb: int | None = None


class _Metrics(msgspec.Struct, forbid_unknown_fields=False):
    cpu: _Cpu | None = None
    memory: _Memory | None = None


class _SystemMetrics(
    msgspec.Struct, tag="system_metrics", tag_field="type", forbid_unknown_fields=False
):
    vmId: str
    timestamp: str | float
    metrics: _Metrics


_decoder = msgspec.json.Decoder(_SystemMetrics)


class SystemSample(msgspec.Struct, frozen=True):
    """One normalized system sample of one VM."""

    vm_id: str
    ts: dt.datetime
    received_at: dt.datetime
    cpu_usage_percent: float
    memory_used_kb: int
    memory_total_kb: int


def _parse_ts(value: str | float) -> dt.datetime:
    if isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(value, dt.UTC)


def normalize_line(raw: bytes, conn_vm: str, received_at: dt.datetime) -> SystemSample | Rejection:
    try:
        msg = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        return Rejection("schema_violation", str(exc))
    except msgspec.DecodeError as exc:
        return Rejection("invalid_json", str(exc))
    if msg.vmId != conn_vm:
        return Rejection("vm_mismatch", f"message names VM {msg.vmId!r}, connection is {conn_vm!r}")
    try:
        ts = _parse_ts(msg.timestamp)
    except (ValueError, OverflowError, OSError) as exc:
        return Rejection("bad_timestamp", str(exc))
    cpu = (msg.metrics.cpu.usage_percent if msg.metrics.cpu else None) or 0.0
    if not math.isfinite(cpu) or not 0 <= cpu <= 100:
        return Rejection("out_of_range", f"cpu.usage_percent {cpu!r} not in [0, 100]")
    mem = msg.metrics.memory or _Memory()
    return SystemSample(
        vm_id=conn_vm,
        ts=ts,
        received_at=received_at,
        cpu_usage_percent=float(cpu),
        memory_used_kb=max(0, mem.used_kb or 0),
        memory_total_kb=max(0, mem.total_kb or 0),
    )
