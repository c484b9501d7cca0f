"""Facts to table rows: the column lists of every raw table and the tuples that fill them.

Pure. Every row of every table starts with ``vm_id, ts`` and ends with
``kafka_partition, kafka_offset`` (the record it came from), which is what
the worker's per-table watermarks rely on for exactly-once storage. The DDL
lives in ``sql/*.sql``; a test checks that these lists match the tables.

Layout choice (docs/PROTOCOL_VALIDATION.md, Storage): per-core CPU figures are
an ``Array(Float32)`` column of ``system_metrics`` (read with the sample,
never on their own); per-mount disk and per-interface network figures are
narrow tables of their own (``disk_usage``, ``network_interfaces``), one row
per mount / interface and sample, because they are charted and filtered by
mount point and interface name.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from schemas.facts import (
    AgentEvent,
    AgentHello,
    ApplicationUsage,
    CommandResult,
    Fact,
    PortSnapshot,
    ProcessSnapshot,
    ScriptCompletion,
    SystemSample,
)

__all__ = ["TABLE_COLUMNS", "Row", "rows_for"]

Row = tuple[Any, ...]

_HEAD: Final = ("vm_id", "ts", "received_at", "agent_ts", "ts_source")
_TAIL: Final = ("kafka_partition", "kafka_offset")

TABLE_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "system_metrics": (
        *_HEAD,
        "dialect",
        "cpu_usage_percent",
        "cpu_cores_usage",
        "cpu_temperature",
        "memory_used_kb",
        "memory_total_kb",
        "memory_available_kb",
        "swap_total_kb",
        "swap_used_kb",
        "disk_read_bytes_per_sec",
        "disk_write_bytes_per_sec",
        "disk_read_ops_per_sec",
        "disk_write_ops_per_sec",
        "uptime_seconds",
        "load_1min",
        "load_5min",
        "load_15min",
        *_TAIL,
    ),
    "disk_usage": (
        *_HEAD,
        "mount_point",
        "filesystem",
        "total_gb",
        "used_gb",
        "available_gb",
        *_TAIL,
    ),
    "network_interfaces": (
        *_HEAD,
        "interface",
        "bytes_received",
        "bytes_sent",
        "packets_received",
        "packets_sent",
        "errors_in",
        "errors_out",
        "is_up",
        "ip_addresses",
        *_TAIL,
    ),
    "process_snapshots": (
        *_HEAD,
        "pid",
        "parent_pid",
        "name",
        "executable_path",
        "command_line",
        "cpu_usage_percent",
        "memory_usage_kb",
        "status",
        "user",
        "start_time",
        *_TAIL,
    ),
    "port_usage": (
        *_HEAD,
        "port",
        "protocol",
        "state",
        "process_id",
        "process_name",
        "is_listening",
        *_TAIL,
    ),
    "application_usage": (
        *_HEAD,
        "name",
        "executable_path",
        "version",
        "publisher",
        "is_running",
        "usage_count",
        "usage_minutes",
        "last_used",
        *_TAIL,
    ),
    "agent_events": (
        *_HEAD,
        "kind",
        "message_type",
        "severity",
        "state",
        "source",
        "message",
        "execution_id",
        "command_id",
        "success",
        "exit_code",
        "stdout",
        "stderr",
        "execution_time_ms",
        "command_type",
        "details",
        "hostname",
        "os",
        "agent_version",
        "platform",
        "capabilities",
        *_TAIL,
    ),
}
"""Table name -> insert columns, in the order :func:`rows_for` fills them."""


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _event(
    f: Fact,
    kind: str,
    partition: int,
    offset: int,
    *,
    severity: str = "info",
    state: str | None = None,
    source: str | None = None,
    message: str = "",
    execution_id: str | None = None,
    command_id: str | None = None,
    success: bool | None = None,
    exit_code: int | None = None,
    stdout: str | None = None,
    stderr: str | None = None,
    execution_time_ms: int | None = None,
    command_type: str | None = None,
    details: str | None = None,
    hostname: str | None = None,
    os: str | None = None,
    agent_version: str | None = None,
    platform: str | None = None,
    capabilities: tuple[str, ...] | None = None,
) -> Row:
    return (
        f.vm_id,
        f.ts,
        f.received_at,
        f.agent_ts,
        f.ts_source,
        kind,
        f.message_type,
        severity,
        state,
        source,
        message,
        execution_id,
        command_id,
        success,
        exit_code,
        stdout,
        stderr,
        execution_time_ms,
        command_type,
        details,
        hostname,
        os,
        agent_version,
        platform,
        capabilities or (),
        partition,
        offset,
    )


def rows_for(fact: Fact, partition: int, offset: int, out: dict[str, list[Row]]) -> None:
    """Append the rows ``fact`` stores to ``out[table]``. Keep-alives store nothing."""
    head = (fact.vm_id, fact.ts, fact.received_at, fact.agent_ts, fact.ts_source)
    if isinstance(fact, SystemSample):
        out["system_metrics"].append(
            (
                *head,
                fact.dialect,
                fact.cpu_usage_percent,
                fact.cpu_cores_usage,
                fact.cpu_temperature,
                fact.memory_used_kb,
                fact.memory_total_kb,
                fact.memory_available_kb,
                fact.swap_total_kb,
                fact.swap_used_kb,
                fact.disk_read_bytes_per_sec,
                fact.disk_write_bytes_per_sec,
                fact.disk_read_ops_per_sec,
                fact.disk_write_ops_per_sec,
                fact.uptime_seconds,
                fact.load_1min,
                fact.load_5min,
                fact.load_15min,
                partition,
                offset,
            )
        )
        disks = out["disk_usage"]
        for d in fact.disks:
            disks.append(
                (
                    *head,
                    d.mount_point,
                    d.filesystem,
                    d.total_gb,
                    d.used_gb,
                    d.available_gb,
                    partition,
                    offset,
                )
            )
        nets = out["network_interfaces"]
        for n in fact.interfaces:
            nets.append(
                (
                    *head,
                    n.name,
                    n.bytes_received,
                    n.bytes_sent,
                    n.packets_received,
                    n.packets_sent,
                    n.errors_in,
                    n.errors_out,
                    n.is_up,
                    n.ip_addresses,
                    partition,
                    offset,
                )
            )
    elif isinstance(fact, ProcessSnapshot):
        procs = out["process_snapshots"]
        for p in fact.processes:
            procs.append(
                (
                    *head,
                    p.pid,
                    p.parent_pid,
                    p.name,
                    p.executable_path,
                    p.command_line,
                    p.cpu_usage_percent,
                    p.memory_usage_kb,
                    p.status,
                    p.user,
                    p.start_time,
                    partition,
                    offset,
                )
            )
    elif isinstance(fact, PortSnapshot):
        ports = out["port_usage"]
        for q in fact.ports:
            ports.append(
                (
                    *head,
                    q.port,
                    q.protocol,
                    q.state,
                    q.process_id,
                    q.process_name,
                    q.is_listening,
                    partition,
                    offset,
                )
            )
    elif isinstance(fact, ApplicationUsage):
        apps = out["application_usage"]
        for a in fact.applications:
            apps.append(
                (
                    *head,
                    a.name,
                    a.executable_path,
                    a.version,
                    a.publisher,
                    a.is_running,
                    a.usage_count,
                    a.usage_minutes,
                    a.last_used,
                    partition,
                    offset,
                )
            )
    elif isinstance(fact, AgentHello):
        out["agent_events"].append(
            _event(
                fact,
                "hello",
                partition,
                offset,
                message="agent connected",
                hostname=fact.hostname,
                os=fact.os,
                agent_version=fact.agent_version,
                platform=fact.platform,
                capabilities=fact.capabilities,
            )
        )
    elif isinstance(fact, AgentEvent):
        out["agent_events"].append(
            _event(
                fact,
                fact.event_type,
                partition,
                offset,
                severity=fact.severity,
                state=fact.state,
                source=fact.source,
                message=fact.message,
                execution_id=fact.execution_id,
                details=fact.details,
            )
        )
    elif isinstance(fact, CommandResult):
        out["agent_events"].append(
            _event(
                fact,
                "command_result",
                partition,
                offset,
                severity="info" if fact.success else "error",
                command_id=fact.command_id,
                success=fact.success,
                exit_code=fact.exit_code,
                stdout=fact.stdout,
                stderr=fact.stderr,
                execution_time_ms=fact.execution_time_ms,
                command_type=fact.command_type,
                details=fact.data,
            )
        )
    elif isinstance(fact, ScriptCompletion):
        out["agent_events"].append(
            _event(
                fact,
                "script_completion",
                partition,
                offset,
                severity="info" if fact.exit_code in (0, None) else "error",
                execution_id=fact.execution_id,
                exit_code=fact.exit_code,
                stdout=fact.stdout,
                stderr=fact.stderr,
                details=_json({"log_file": fact.log_file}) if fact.log_file else None,
            )
        )
