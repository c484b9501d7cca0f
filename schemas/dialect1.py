"""Dialect 1: the documented agent protocol (PROTOCOL.md), as msgspec Structs.

Every message carries ``type`` (the tag) and ``vmId``. Field names are the
wire names; optional fields default to ``None`` because agents send ``null``
for what they could not measure. Unknown fields are ignored (msgspec's
default), so a newer agent with extra fields still gets through. Caps and
ranges come from :mod:`schemas.limits` and are enforced while decoding.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.limits import (
    CAPPED,
    Count,
    Counter,
    Load,
    Name,
    ProcessPercent,
    Seconds,
    Text,
    VmId,
)
from schemas.machine import Cpu, Disk, Memory, OpenPort
from schemas.timestamps import Timestamp

__all__ = [
    "DIALECT1",
    "D1Application",
    "D1ApplicationUsage",
    "D1LoadAverage",
    "D1Metrics",
    "D1Network",
    "D1NetworkStat",
    "D1PortUsage",
    "D1Process",
    "D1ProcessSnapshot",
    "D1System",
    "D1SystemMetrics",
    "D1VmIdentification",
]


class _Msg(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of dialect 1 messages: the tag is ``type``."""


class D1VmIdentification(_Msg, tag="vm_identification"):
    vmId: VmId
    hostname: Name | None = None
    os: Name | None = None
    version: Name | None = None
    agent_version: Name | None = None
    timestamp: Timestamp | None = None


class D1NetworkStat(msgspec.Struct, kw_only=True):
    interface: Name
    bytes_received: Counter | None = None
    bytes_sent: Counter | None = None
    packets_received: Counter | None = None
    packets_sent: Counter | None = None
    errors_in: Counter | None = None
    errors_out: Counter | None = None


class D1Network(msgspec.Struct, kw_only=True):
    stats: Annotated[list[D1NetworkStat], CAPPED] | None = None


class D1LoadAverage(msgspec.Struct, kw_only=True):
    load1min: Load | None = None
    load5min: Load | None = None
    load15min: Load | None = None


class D1System(msgspec.Struct, kw_only=True):
    uptime: Seconds | None = None
    load_average: D1LoadAverage | None = None


class D1Metrics(msgspec.Struct, kw_only=True):
    cpu: Cpu | None = None
    memory: Memory | None = None
    disk: Disk | None = None
    network: D1Network | None = None
    system: D1System | None = None


class D1SystemMetrics(_Msg, tag="system_metrics"):
    vmId: VmId
    timestamp: Timestamp
    metrics: D1Metrics


class D1Process(msgspec.Struct, kw_only=True):
    pid: Count
    name: Name
    parent_pid: Count | None = None
    executable_path: Text | None = None
    command_line: Text | None = None
    cpu_usage_percent: ProcessPercent | None = None
    memory_usage_kb: Counter | None = None
    status: Name | None = None
    user: Name | None = None
    start_time: Timestamp | None = None


class D1ProcessSnapshot(_Msg, tag="process_snapshot"):
    vmId: VmId
    timestamp: Timestamp
    processes: Annotated[list[D1Process], CAPPED]


class D1Application(msgspec.Struct, kw_only=True):
    name: Name
    executable_path: Text | None = None
    version: Name | None = None
    publisher: Name | None = None
    is_running: bool | None = None
    usage_count: Count | None = None
    usage_minutes: Seconds | None = None
    last_used: Timestamp | None = None


class D1ApplicationUsage(_Msg, tag="application_usage"):
    vmId: VmId
    timestamp: Timestamp
    applications: Annotated[list[D1Application], CAPPED]


class D1PortUsage(_Msg, tag="port_usage"):
    vmId: VmId
    timestamp: Timestamp
    ports: Annotated[list[OpenPort], CAPPED]


DIALECT1 = (
    D1VmIdentification,
    D1SystemMetrics,
    D1ProcessSnapshot,
    D1ApplicationUsage,
    D1PortUsage,
)
"""Every dialect 1 message type, in PROTOCOL.md order."""
