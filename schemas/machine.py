"""The machine figures both agent dialects write alike, as msgspec Structs.

CPU, memory, disk usage and disk IO, and a port entry, have the same field
names, types and bounds in dialect 1 (PROTOCOL.md) and dialect 2 (the
InfiniService agent's serde structs), so each is declared once here and both
dialects nest it; what really differs (network interfaces, the load average's
field names, system info, processes) stays in :mod:`schemas.dialect1` and
:mod:`schemas.dialect2`. Unknown fields are ignored, optional fields default
to ``None`` (agents send ``null`` for what they could not measure).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.limits import CAPPED, Count, Counter, Gigabytes, Name, Percent, Port, Temperature

__all__ = ["Cpu", "Disk", "DiskIo", "DiskUsage", "Memory", "OpenPort"]


class Cpu(msgspec.Struct, kw_only=True):
    usage_percent: Percent | None = None
    cores_usage: Annotated[tuple[Percent, ...], CAPPED] | None = None
    temperature: Temperature | None = None


class Memory(msgspec.Struct, kw_only=True):
    total_kb: Counter | None = None
    used_kb: Counter | None = None
    available_kb: Counter | None = None
    swap_total_kb: Counter | None = None
    swap_used_kb: Counter | None = None


class DiskUsage(msgspec.Struct, kw_only=True):
    mount_point: Name
    total_gb: Gigabytes | None = None
    used_gb: Gigabytes | None = None
    available_gb: Gigabytes | None = None
    filesystem: Name | None = None


class DiskIo(msgspec.Struct, kw_only=True):
    read_bytes_per_sec: Counter | None = None
    write_bytes_per_sec: Counter | None = None
    read_ops_per_sec: Counter | None = None
    write_ops_per_sec: Counter | None = None


class Disk(msgspec.Struct, kw_only=True):
    usage_stats: Annotated[list[DiskUsage], CAPPED] | None = None
    io_stats: DiskIo | None = None


class OpenPort(msgspec.Struct, kw_only=True):
    """One entry of a port report (dialect 1 ``port_usage``, dialect 2 ``data.system.ports``)."""

    port: Port
    protocol: Name
    state: Name | None = None
    process_id: Count | None = None
    process_name: Name | None = None
    is_listening: bool | None = None
