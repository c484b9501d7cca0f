"""From a decoded wire message to internal facts (:mod:`schemas.facts`): pure, no I/O.

What the decoder cannot check is checked here (:mod:`schemas.checks`): that
the message speaks for the VM of its connection (``vmId`` / ``vm_id``; anything
else is an impersonation attempt, ``vm_mismatch``), that its timestamp names a
real instant, and that free-form JSON fields stay small and shallow. The
agent's clock is kept but not trusted beyond the tolerance (see
:mod:`schemas.facts`). Samples and snapshots are normalized here; what the
agent reports about itself, and messages of a type this version does not know
(``unrecognized`` agent events), in :mod:`schemas.agent_reports`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from schemas.agent import AgentMessage, Unrecognized, decode_line
from schemas.agent_reports import REPORT_NORMALIZERS, UNRECOGNIZED_KEPT_MAX
from schemas.checks import Clock, Normalizer, Refused, check_vm, json_depth, lenient_ts, same_vm
from schemas.dialect1 import (
    D1ApplicationUsage,
    D1PortUsage,
    D1ProcessSnapshot,
    D1SystemMetrics,
    D1VmIdentification,
)
from schemas.dialect2 import D2Handshake, D2KeepAlive, D2Metrics
from schemas.dlq import Reason, Rejection
from schemas.facts import (
    AgentHello,
    ApplicationRow,
    ApplicationUsage,
    DiskFigure,
    Fact,
    InterfaceFigure,
    KeepAlive,
    PortRow,
    PortSnapshot,
    ProcessRow,
    ProcessSnapshot,
    SystemSample,
)
from schemas.limits import TS_TOLERANCE
from schemas.machine import Cpu, Disk, Memory, OpenPort

__all__ = ["UNRECOGNIZED_KEPT_MAX", "json_depth", "normalize", "normalize_line", "same_vm"]


def _d1_identification(
    m: D1VmIdentification, vm: str, rx: dt.datetime, tol: dt.timedelta
) -> list[Fact]:
    check_vm(m.vmId, vm)
    c = Clock(m.timestamp, rx, tol)
    return [
        AgentHello(
            **c.fields(vm, 1, "vm_identification"),
            hostname=m.hostname,
            os=m.os,
            agent_version=m.agent_version or m.version,
        )
    ]


def _system_sample(
    fields: dict[str, Any],
    cpu: Cpu | None,
    mem: Memory | None,
    disk: Disk | None,
    uptime: float | None,
    load_1: float | None,
    load_5: float | None,
    load_15: float | None,
    hostname: str | None,
    interfaces: list[InterfaceFigure],
) -> SystemSample:
    """The sample of either dialect: CPU, memory and disk are the same Structs in both
    (:mod:`schemas.machine`); the caller maps what differs (uptime, load, interfaces).

    Positional arguments: this runs for every sample, and keywords cost a few percent
    of the whole normalization (decode benchmark).
    """
    io = disk.io_stats if disk is not None else None
    return SystemSample(
        **fields,
        cpu_usage_percent=cpu.usage_percent if cpu else None,
        cpu_cores_usage=(cpu.cores_usage or ()) if cpu else (),
        cpu_temperature=cpu.temperature if cpu else None,
        memory_total_kb=mem.total_kb if mem else None,
        memory_used_kb=mem.used_kb if mem else None,
        memory_available_kb=mem.available_kb if mem else None,
        swap_total_kb=mem.swap_total_kb if mem else None,
        swap_used_kb=mem.swap_used_kb if mem else None,
        disk_read_bytes_per_sec=io.read_bytes_per_sec if io else None,
        disk_write_bytes_per_sec=io.write_bytes_per_sec if io else None,
        disk_read_ops_per_sec=io.read_ops_per_sec if io else None,
        disk_write_ops_per_sec=io.write_ops_per_sec if io else None,
        uptime_seconds=uptime,
        load_1min=load_1,
        load_5min=load_5,
        load_15min=load_15,
        hostname=hostname,
        disks=tuple(
            [
                DiskFigure(
                    mount_point=d.mount_point,
                    filesystem=d.filesystem,
                    total_gb=d.total_gb,
                    used_gb=d.used_gb,
                    available_gb=d.available_gb,
                )
                for d in (disk.usage_stats or [] if disk else [])
            ]
        ),
        interfaces=tuple(interfaces),
    )


def _d1_system(m: D1SystemMetrics, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    check_vm(m.vmId, vm)
    c = Clock(m.timestamp, rx, tol)
    x = m.metrics
    net, sysinfo = x.network, x.system
    load = sysinfo.load_average if sysinfo is not None else None
    return [
        _system_sample(
            c.fields(vm, 1, "system_metrics"),
            x.cpu,
            x.memory,
            x.disk,
            sysinfo.uptime if sysinfo else None,
            load.load1min if load else None,
            load.load5min if load else None,
            load.load15min if load else None,
            None,
            [
                InterfaceFigure(
                    name=n.interface,
                    bytes_received=n.bytes_received,
                    bytes_sent=n.bytes_sent,
                    packets_received=n.packets_received,
                    packets_sent=n.packets_sent,
                    errors_in=n.errors_in,
                    errors_out=n.errors_out,
                )
                for n in (net.stats or [] if net else [])
            ],
        )
    ]


def _d1_processes(m: D1ProcessSnapshot, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    check_vm(m.vmId, vm)
    c = Clock(m.timestamp, rx, tol)
    rows = [
        ProcessRow(
            pid=p.pid,
            name=p.name,
            parent_pid=p.parent_pid,
            executable_path=p.executable_path,
            command_line=p.command_line,
            cpu_usage_percent=p.cpu_usage_percent,
            memory_usage_kb=p.memory_usage_kb,
            status=p.status,
            user=p.user,
            start_time=lenient_ts(p.start_time),
        )
        for p in m.processes
    ]
    return [ProcessSnapshot(**c.fields(vm, 1, "process_snapshot"), processes=tuple(rows))]


def _d1_applications(
    m: D1ApplicationUsage, vm: str, rx: dt.datetime, tol: dt.timedelta
) -> list[Fact]:
    check_vm(m.vmId, vm)
    c = Clock(m.timestamp, rx, tol)
    rows = [
        ApplicationRow(
            name=a.name,
            executable_path=a.executable_path,
            version=a.version,
            publisher=a.publisher,
            is_running=a.is_running,
            usage_count=a.usage_count,
            usage_minutes=a.usage_minutes,
            last_used=lenient_ts(a.last_used),
        )
        for a in m.applications
    ]
    return [ApplicationUsage(**c.fields(vm, 1, "application_usage"), applications=tuple(rows))]


def _port_rows(ports: list[OpenPort]) -> tuple[PortRow, ...]:
    return tuple(
        [
            PortRow(
                port=p.port,
                protocol=p.protocol,
                state=p.state,
                process_id=p.process_id,
                process_name=p.process_name,
                is_listening=p.is_listening,
            )
            for p in ports
        ]
    )


def _d1_ports(m: D1PortUsage, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    check_vm(m.vmId, vm)
    c = Clock(m.timestamp, rx, tol)
    return [PortSnapshot(**c.fields(vm, 1, "port_usage"), ports=_port_rows(m.ports))]


def _d2_handshake(m: D2Handshake, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    check_vm(m.vm_id, vm)
    c = Clock(m.timestamp, rx, tol)
    return [
        AgentHello(
            **c.fields(vm, 2, "handshake"),
            agent_version=m.version,
            platform=m.platform,
            capabilities=m.capabilities or (),
        )
    ]


def _d2_metrics(m: D2Metrics, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    c = Clock(m.timestamp, rx, tol)
    s = m.data.system
    # windows_services is carried but not stored: the decoder already checked it
    # is JSON and bounded its nesting; a depth scan here would cost more than
    # the rest of the message (profiled).
    net, info = s.network, s.system
    load = info.load_average if info is not None else None
    base = c.fields(vm, 2, "metrics")
    facts: list[Fact] = [
        _system_sample(
            base,
            s.cpu,
            s.memory,
            s.disk,
            info.uptime_seconds if info else None,
            load.load_1min if load else None,
            load.load_5min if load else None,
            load.load_15min if load else None,
            info.hostname if info else None,
            [
                InterfaceFigure(
                    name=n.name,
                    bytes_received=n.bytes_received,
                    bytes_sent=n.bytes_sent,
                    packets_received=n.packets_received,
                    packets_sent=n.packets_sent,
                    errors_in=n.errors_in,
                    errors_out=n.errors_out,
                    is_up=n.is_up,
                    ip_addresses=n.ip_addresses or (),
                )
                for n in (net.interfaces or [] if net else [])
            ],
        )
    ]
    if s.processes:
        facts.append(
            ProcessSnapshot(
                **base,
                processes=tuple(
                    [
                        ProcessRow(
                            pid=p.id,
                            name=p.name,
                            parent_pid=p.parent_id,
                            executable_path=p.executable_path,
                            command_line=p.command_line,
                            cpu_usage_percent=p.cpu_usage_percent,
                            memory_usage_kb=p.memory_usage_kb,
                            status=p.status,
                            start_time=lenient_ts(p.start_time),
                        )
                        for p in s.processes
                    ]
                ),
            )
        )
    if s.ports:
        facts.append(PortSnapshot(**base, ports=_port_rows(s.ports)))
    return facts


def _d2_keep_alive(m: D2KeepAlive, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    c = Clock(m.timestamp, rx, tol)
    return [KeepAlive(**c.fields(vm, 2, "keep_alive"), sequence_number=m.sequence_number)]


_NORMALIZERS: Final[dict[type, Normalizer]] = {
    D1VmIdentification: _d1_identification,
    D1SystemMetrics: _d1_system,
    D1ProcessSnapshot: _d1_processes,
    D1ApplicationUsage: _d1_applications,
    D1PortUsage: _d1_ports,
    D2Handshake: _d2_handshake,
    D2Metrics: _d2_metrics,
    D2KeepAlive: _d2_keep_alive,
    **REPORT_NORMALIZERS,
}


def normalize(
    msg: AgentMessage | Unrecognized,
    conn_vm: str,
    received_at: dt.datetime,
    *,
    tolerance: dt.timedelta = TS_TOLERANCE,
) -> list[Fact] | Rejection:
    """The facts one message states about the VM of its connection, or why it is refused."""
    try:
        return _NORMALIZERS[type(msg)](msg, conn_vm, received_at, tolerance)
    except Refused as refused:
        return refused.rejection
    except RecursionError:
        return Rejection(Reason.TOO_DEEP, "nesting deeper than the decoder allows")
    except Exception as exc:  # a bug must cost one line, not the stream
        return Rejection(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")


def normalize_line(
    raw: bytes,
    conn_vm: str,
    received_at: dt.datetime,
    *,
    tolerance: dt.timedelta = TS_TOLERANCE,
) -> list[Fact] | Rejection:
    """Decode, validate and normalize one agent line; never raises on input."""
    msg = decode_line(raw)
    if isinstance(msg, Rejection):
        return msg
    return normalize(msg, conn_vm, received_at, tolerance=tolerance)
