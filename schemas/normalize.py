"""From a decoded wire message to internal facts (:mod:`schemas.facts`): pure, no I/O.

What the decoder cannot check is checked here: that the message speaks for
the VM of its connection (``vmId`` / ``vm_id``; anything else is an
impersonation attempt, ``vm_mismatch``), that its timestamp names a real
instant, and that free-form JSON fields stay small and shallow. The agent's
clock is kept but not trusted beyond the tolerance (see :mod:`schemas.facts`).
A message of a type this version does not know (:class:`~schemas.agent.Unrecognized`)
becomes an ``unrecognized`` agent event, once it passed the same VM check.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from typing import Any, Final

import msgspec

from schemas.agent import AgentMessage, Unrecognized, decode_line
from schemas.dialect1 import (
    D1ApplicationUsage,
    D1PortUsage,
    D1ProcessSnapshot,
    D1SystemMetrics,
    D1VmIdentification,
)
from schemas.dialect2 import (
    D2AgentEvent,
    D2CircuitBreakerState,
    D2ConnectionStatus,
    D2Error,
    D2ErrorReport,
    D2Handshake,
    D2KeepAlive,
    D2Metrics,
    D2Ping,
    D2RequestPendingScripts,
    D2Response,
    D2ScriptCompletion,
)
from schemas.dlq import Reason, Rejection
from schemas.facts import (
    AgentEvent,
    AgentHello,
    ApplicationRow,
    ApplicationUsage,
    CommandResult,
    DiskFigure,
    Fact,
    InterfaceFigure,
    KeepAlive,
    PortRow,
    PortSnapshot,
    ProcessRow,
    ProcessSnapshot,
    ScriptCompletion,
    SystemSample,
)
from schemas.limits import BLOB_MAX, FREE_FORM_MAX_DEPTH, TEXT_MAX, TS_TOLERANCE
from schemas.timestamps import Timestamp, parse_timestamp

__all__ = ["UNRECOGNIZED_KEPT_MAX", "json_depth", "normalize", "normalize_line", "same_vm"]


class _Refused(Exception):
    """Internal: carries a Rejection out of a normalizer."""

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


def _check_vm(claimed: str | None, conn_vm: str) -> None:
    if claimed is not None and not same_vm(claimed, conn_vm):
        raise _Refused(
            Reason.VM_MISMATCH,
            f"message names VM {claimed[:80]!r}, its connection belongs to VM {conn_vm!r}",
        )


def _free_form(raw: msgspec.Raw, field: str, max_bytes: int = TEXT_MAX * 8) -> str | None:
    """A free-form JSON field as its JSON text, bounded in size and nesting."""
    data = bytes(raw)
    if data == b"null":
        return None
    if len(data) > max_bytes:
        raise _Refused(Reason.TOO_LARGE, f"`{field}` is {len(data)} bytes, limit {max_bytes}")
    depth = json_depth(data)
    if depth > FREE_FORM_MAX_DEPTH:
        raise _Refused(
            Reason.TOO_DEEP, f"`{field}` nests {depth} levels, limit {FREE_FORM_MAX_DEPTH}"
        )
    return data.decode("utf-8")


_ITEM_TS_CACHE: dict[str | float, dt.datetime | None] = {}
_ITEM_TS_CACHE_MAX: Final = 65_536


def _lenient_ts(value: str | float | None) -> dt.datetime | None:
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


class _Clock:
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
            raise _Refused(Reason.BAD_TIMESTAMP, f"timestamp: {exc}") from None
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


Normalizer = Callable[[Any, str, dt.datetime, dt.timedelta], list[Fact]]


def _d1_identification(
    m: D1VmIdentification, vm: str, rx: dt.datetime, tol: dt.timedelta
) -> list[Fact]:
    _check_vm(m.vmId, vm)
    c = _Clock(m.timestamp, rx, tol)
    return [
        AgentHello(
            **c.fields(vm, 1, "vm_identification"),
            hostname=m.hostname,
            os=m.os,
            agent_version=m.agent_version or m.version,
        )
    ]


def _d1_system(m: D1SystemMetrics, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    _check_vm(m.vmId, vm)
    c = _Clock(m.timestamp, rx, tol)
    x = m.metrics
    cpu, mem, disk, net, sysinfo = x.cpu, x.memory, x.disk, x.network, x.system
    io = disk.io_stats if disk is not None else None
    load = sysinfo.load_average if sysinfo is not None else None
    return [
        SystemSample(
            **c.fields(vm, 1, "system_metrics"),
            cpu_usage_percent=cpu.usage_percent if cpu else None,
            cpu_cores_usage=(cpu.cores_usage or []) if cpu else [],
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
            uptime_seconds=sysinfo.uptime if sysinfo else None,
            load_1min=load.load1min if load else None,
            load_5min=load.load5min if load else None,
            load_15min=load.load15min if load else None,
            disks=[
                DiskFigure(
                    mount_point=d.mount_point,
                    filesystem=d.filesystem,
                    total_gb=d.total_gb,
                    used_gb=d.used_gb,
                    available_gb=d.available_gb,
                )
                for d in (disk.usage_stats or [] if disk else [])
            ],
            interfaces=[
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
    _check_vm(m.vmId, vm)
    c = _Clock(m.timestamp, rx, tol)
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
            start_time=_lenient_ts(p.start_time),
        )
        for p in m.processes
    ]
    return [ProcessSnapshot(**c.fields(vm, 1, "process_snapshot"), processes=rows)]


def _d1_applications(
    m: D1ApplicationUsage, vm: str, rx: dt.datetime, tol: dt.timedelta
) -> list[Fact]:
    _check_vm(m.vmId, vm)
    c = _Clock(m.timestamp, rx, tol)
    rows = [
        ApplicationRow(
            name=a.name,
            executable_path=a.executable_path,
            version=a.version,
            publisher=a.publisher,
            is_running=a.is_running,
            usage_count=a.usage_count,
            usage_minutes=a.usage_minutes,
            last_used=_lenient_ts(a.last_used),
        )
        for a in m.applications
    ]
    return [ApplicationUsage(**c.fields(vm, 1, "application_usage"), applications=rows)]


def _port_rows(ports: list[Any]) -> list[PortRow]:
    return [
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


def _d1_ports(m: D1PortUsage, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    _check_vm(m.vmId, vm)
    c = _Clock(m.timestamp, rx, tol)
    return [PortSnapshot(**c.fields(vm, 1, "port_usage"), ports=_port_rows(m.ports))]


def _d2_handshake(m: D2Handshake, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    _check_vm(m.vm_id, vm)
    c = _Clock(m.timestamp, rx, tol)
    return [
        AgentHello(
            **c.fields(vm, 2, "handshake"),
            agent_version=m.version,
            platform=m.platform,
            capabilities=m.capabilities or [],
        )
    ]


def _d2_metrics(m: D2Metrics, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    c = _Clock(m.timestamp, rx, tol)
    s = m.data.system
    # windows_services is carried but not stored: the decoder already checked it
    # is JSON and bounded its nesting; a depth scan here would cost more than
    # the rest of the message (profiled).
    cpu, mem, disk, net, info = s.cpu, s.memory, s.disk, s.network, s.system
    io = disk.io_stats if disk is not None else None
    load = info.load_average if info is not None else None
    base = c.fields(vm, 2, "metrics")
    facts: list[Fact] = [
        SystemSample(
            **base,
            cpu_usage_percent=cpu.usage_percent if cpu else None,
            cpu_cores_usage=(cpu.cores_usage or []) if cpu else [],
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
            uptime_seconds=info.uptime_seconds if info else None,
            load_1min=load.load_1min if load else None,
            load_5min=load.load_5min if load else None,
            load_15min=load.load_15min if load else None,
            hostname=info.hostname if info else None,
            disks=[
                DiskFigure(
                    mount_point=d.mount_point,
                    filesystem=d.filesystem,
                    total_gb=d.total_gb,
                    used_gb=d.used_gb,
                    available_gb=d.available_gb,
                )
                for d in (disk.usage_stats or [] if disk else [])
            ],
            interfaces=[
                InterfaceFigure(
                    name=n.name,
                    bytes_received=n.bytes_received,
                    bytes_sent=n.bytes_sent,
                    packets_received=n.packets_received,
                    packets_sent=n.packets_sent,
                    errors_in=n.errors_in,
                    errors_out=n.errors_out,
                    is_up=n.is_up,
                    ip_addresses=n.ip_addresses or [],
                )
                for n in (net.interfaces or [] if net else [])
            ],
        )
    ]
    if s.processes:
        facts.append(
            ProcessSnapshot(
                **base,
                processes=[
                    ProcessRow(
                        pid=p.id,
                        name=p.name,
                        parent_pid=p.parent_id,
                        executable_path=p.executable_path,
                        command_line=p.command_line,
                        cpu_usage_percent=p.cpu_usage_percent,
                        memory_usage_kb=p.memory_usage_kb,
                        status=p.status,
                        start_time=_lenient_ts(p.start_time),
                    )
                    for p in s.processes
                ],
            )
        )
    if s.ports:
        facts.append(PortSnapshot(**base, ports=_port_rows(s.ports)))
    return facts


def _d2_keep_alive(m: D2KeepAlive, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    c = _Clock(m.timestamp, rx, tol)
    return [KeepAlive(**c.fields(vm, 2, "keep_alive"), sequence_number=m.sequence_number)]


def _d2_response(m: D2Response, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    c = _Clock(m.timestamp, rx, tol)
    return [
        CommandResult(
            **c.fields(vm, 2, "response"),
            command_id=m.id,
            success=m.success,
            exit_code=m.exit_code,
            stdout=m.stdout,
            stderr=m.stderr,
            execution_time_ms=m.execution_time_ms,
            command_type=m.command_type,
            data=_free_form(m.data, "data", max_bytes=BLOB_MAX),
        )
    ]


def _d2_error(m: D2Error, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    c = _Clock(m.timestamp, rx, tol)
    return [
        AgentEvent(
            **c.fields(vm, 2, "error"),
            event_type="error",
            severity="error",
            message=m.error,
            details=_free_form(m.details, "details"),
        )
    ]


def _d2_error_report(m: D2ErrorReport, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    _check_vm(m.vm_id, vm)
    c = _Clock(m.timestamp, rx, tol)
    details = msgspec.json.encode(
        {
            "error_type": m.error_type,
            "severity": m.severity,
            "windows_error_code": m.windows_error_code,
            "retry_attempt": m.retry_attempt,
            "max_retries": m.max_retries,
            "recovery_suggestion": m.recovery_suggestion,
        }
    ).decode()
    return [
        AgentEvent(
            **c.fields(vm, 2, "error_report"),
            event_type="error_report",
            severity=m.severity.lower(),
            source=m.error_type,
            message=m.recovery_suggestion or m.error_type,
            details=details,
        )
    ]


def _d2_agent_event(m: D2AgentEvent, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    c = _Clock(m.timestamp, rx, tol)
    return [
        AgentEvent(
            **c.fields(vm, 2, "agent_event"),
            event_type="agent_event",
            severity=m.severity,
            source=m.source,
            message=m.message,
            execution_id=m.executionId,
            details=_free_form(m.context, "context"),
        )
    ]


def _d2_script_completion(
    m: D2ScriptCompletion, vm: str, rx: dt.datetime, tol: dt.timedelta
) -> list[Fact]:
    c = _Clock(m.timestamp, rx, tol)
    return [
        ScriptCompletion(
            **c.fields(vm, 2, "script_completion"),
            execution_id=m.execution_id,
            exit_code=m.exit_code,
            stdout=m.stdout,
            stderr=m.stderr,
            log_file=m.log_file,
        )
    ]


def _d2_pending_scripts(
    m: D2RequestPendingScripts, vm: str, rx: dt.datetime, tol: dt.timedelta
) -> list[Fact]:
    _check_vm(m.vm_id, vm)
    c = _Clock(m.timestamp, rx, tol)
    return [
        AgentEvent(
            **c.fields(vm, 2, "request_pending_scripts"),
            event_type="request_pending_scripts",
            severity="info",
            message="agent asks for pending scripts",
        )
    ]


_TROUBLE_STATES: Final = frozenset(
    {"disconnected", "retrying", "circuit_breaker_open", "degraded", "keep_alive_timeout"}
)
"""``connection_status`` states in which the agent says it cannot report normally."""


def _d2_connection_status(
    m: D2ConnectionStatus, vm: str, rx: dt.datetime, tol: dt.timedelta
) -> list[Fact]:
    _check_vm(m.vm_id, vm)
    c = _Clock(m.timestamp, rx, tol)
    return [
        AgentEvent(
            **c.fields(vm, 2, "connection_status"),
            event_type="connection_status",
            severity="warn" if m.state in _TROUBLE_STATES else "info",
            state=m.state,
            message=m.details or m.state,
        )
    ]


def _d2_ping(m: D2Ping, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    c = _Clock(m.timestamp, rx, tol)
    return [KeepAlive(**c.fields(vm, 2, "ping"), sequence_number=m.sequence or 0)]


_BREAKER_SEVERITY: Final = {"Closed": "info", "HalfOpen": "warn", "Open": "error"}
"""Open: the agent holds back everything it would send; half open: it is trying again."""


def _d2_circuit_breaker(
    m: D2CircuitBreakerState, vm: str, rx: dt.datetime, tol: dt.timedelta
) -> list[Fact]:
    c = _Clock(m.timestamp, rx, tol)
    message = f"send circuit breaker {m.state}"
    if m.failure_count:
        message += f" after {m.failure_count} failures"
    if m.recovery_eta_seconds is not None:
        message += f", next try in {m.recovery_eta_seconds} s"
    details = msgspec.json.encode(
        {
            "failure_count": m.failure_count,
            "last_failure_time": m.last_failure_time,
            "recovery_eta_seconds": m.recovery_eta_seconds,
        }
    ).decode()
    return [
        AgentEvent(
            **c.fields(vm, 2, "circuit_breaker_state"),
            event_type="circuit_breaker_state",
            severity=_BREAKER_SEVERITY[m.state],
            state=m.state,
            message=message,
            details=details,
        )
    ]


_loose_ts_decoder: Final = msgspec.json.Decoder(Timestamp | None)

UNRECOGNIZED_KEPT_MAX: Final = TEXT_MAX * 8
"""An unrecognized line is kept (``details``) up to this size and the free-form nesting bound."""


def _loose_ts(raw: msgspec.Raw) -> str | float | None:
    """The timestamp of an unknown message, or None when it names no instant in range."""
    try:
        value: str | float | None = _loose_ts_decoder.decode(raw)
        if value is not None:
            parse_timestamp(value)
        return value
    except (msgspec.DecodeError, ValueError, OverflowError, OSError):
        return None


def _unrecognized(m: Unrecognized, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    env = m.envelope
    _check_vm(env.vm_id, vm)
    _check_vm(env.vmId, vm)
    c = _Clock(_loose_ts(env.timestamp), rx, tol)
    message = f"message of unrecognized type {env.type!r}"
    details: str | None = None
    if len(m.raw) > UNRECOGNIZED_KEPT_MAX:
        message += f" ({len(m.raw)} bytes, over {UNRECOGNIZED_KEPT_MAX}: not kept)"
    elif json_depth(m.raw) > FREE_FORM_MAX_DEPTH:
        message += f" (nested over {FREE_FORM_MAX_DEPTH} levels: not kept)"
    else:
        details = m.raw.decode("utf-8")
    return [
        AgentEvent(
            **c.fields(vm, 1 if env.vmId is not None else 2, env.type),
            event_type="unrecognized",
            severity="warn",
            message=message,
            details=details,
        )
    ]


_NORMALIZERS: Final[dict[type, Normalizer]] = {
    D1VmIdentification: _d1_identification,
    D1SystemMetrics: _d1_system,
    D1ProcessSnapshot: _d1_processes,
    D1ApplicationUsage: _d1_applications,
    D1PortUsage: _d1_ports,
    D2Handshake: _d2_handshake,
    D2Metrics: _d2_metrics,
    D2KeepAlive: _d2_keep_alive,
    D2Response: _d2_response,
    D2Error: _d2_error,
    D2ErrorReport: _d2_error_report,
    D2AgentEvent: _d2_agent_event,
    D2ScriptCompletion: _d2_script_completion,
    D2RequestPendingScripts: _d2_pending_scripts,
    D2ConnectionStatus: _d2_connection_status,
    D2Ping: _d2_ping,
    D2CircuitBreakerState: _d2_circuit_breaker,
    Unrecognized: _unrecognized,
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
    except _Refused as refused:
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
