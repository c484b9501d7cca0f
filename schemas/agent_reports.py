"""Normalizers of what the agent reports about itself and its work: pure, no I/O.

Command results, script completions, errors and error reports, agent events,
requests for pending scripts, its channel (``connection_status``, ``ping``) and
its send circuit breaker, and messages of a type this version does not know
(``unrecognized``). Registered in :data:`REPORT_NORMALIZERS`, which
:mod:`schemas.normalize` dispatches to.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import msgspec

from schemas.agent import Unrecognized
from schemas.checks import Clock, Normalizer, check_vm, free_form, json_depth
from schemas.dialect2 import (
    D2AgentEvent,
    D2CircuitBreakerState,
    D2ConnectionStatus,
    D2Error,
    D2ErrorReport,
    D2Ping,
    D2RequestPendingScripts,
    D2Response,
    D2ScriptCompletion,
)
from schemas.facts import AgentEvent, CommandResult, Fact, KeepAlive, ScriptCompletion
from schemas.limits import BLOB_MAX, FREE_FORM_MAX_DEPTH, TEXT_MAX
from schemas.timestamps import Timestamp, parse_timestamp

__all__ = ["REPORT_NORMALIZERS", "UNRECOGNIZED_KEPT_MAX"]


def _d2_response(m: D2Response, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    c = Clock(m.timestamp, rx, tol)
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
            data=free_form(m.data, "data", max_bytes=BLOB_MAX),
        )
    ]


def _d2_error(m: D2Error, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    c = Clock(m.timestamp, rx, tol)
    return [
        AgentEvent(
            **c.fields(vm, 2, "error"),
            event_type="error",
            severity="error",
            message=m.error,
            details=free_form(m.details, "details"),
        )
    ]


def _d2_error_report(m: D2ErrorReport, vm: str, rx: dt.datetime, tol: dt.timedelta) -> list[Fact]:
    check_vm(m.vm_id, vm)
    c = Clock(m.timestamp, rx, tol)
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
    c = Clock(m.timestamp, rx, tol)
    return [
        AgentEvent(
            **c.fields(vm, 2, "agent_event"),
            event_type="agent_event",
            severity=m.severity,
            source=m.source,
            message=m.message,
            execution_id=m.executionId,
            details=free_form(m.context, "context"),
        )
    ]


def _d2_script_completion(
    m: D2ScriptCompletion, vm: str, rx: dt.datetime, tol: dt.timedelta
) -> list[Fact]:
    c = Clock(m.timestamp, rx, tol)
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
    check_vm(m.vm_id, vm)
    c = Clock(m.timestamp, rx, tol)
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
    check_vm(m.vm_id, vm)
    c = Clock(m.timestamp, rx, tol)
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
    c = Clock(m.timestamp, rx, tol)
    return [KeepAlive(**c.fields(vm, 2, "ping"), sequence_number=m.sequence or 0)]


_BREAKER_SEVERITY: Final = {"Closed": "info", "HalfOpen": "warn", "Open": "error"}
"""Open: the agent holds back everything it would send; half open: it is trying again."""


def _d2_circuit_breaker(
    m: D2CircuitBreakerState, vm: str, rx: dt.datetime, tol: dt.timedelta
) -> list[Fact]:
    c = Clock(m.timestamp, rx, tol)
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
    check_vm(env.vm_id, vm)
    check_vm(env.vmId, vm)
    c = Clock(_loose_ts(env.timestamp), rx, tol)
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


REPORT_NORMALIZERS: Final[dict[type, Normalizer]] = {
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
