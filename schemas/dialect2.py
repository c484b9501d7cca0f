"""Dialect 2: the InfiniService agent as it ships (PROTOCOL.md), as msgspec Structs.

Field names are exactly what the agent's serde structs write (snake_case,
except ``executionId`` in ``agent_event``); ``connection_status``, ``ping``
and ``circuit_breaker_state`` are built with ``serde_json::json!`` in the
agent's ``communication.rs``, so their keys arrive in alphabetical order
(``type`` is not first), which the tagged decoder does not mind. The agent serializes Rust
``Option`` as ``null`` and its collector substitutes zeros and empty lists
when a probe fails, so optional fields default to ``None`` here. Free-form
fields (``data``, ``details``, ``context``, ``windows_services``) are kept as
:class:`msgspec.Raw`: still checked to be JSON, never turned into Python
objects; the stored ones (``data``, ``details``, ``context``) are bounded in
size and nesting in :mod:`schemas.normalize`, ``windows_services`` is not
stored and only bounded by the decoder's own recursion limit.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from schemas.limits import (
    CAPPED,
    Blob,
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
    "DIALECT2",
    "NULL_RAW",
    "D2AgentEvent",
    "D2CircuitBreakerState",
    "D2ConnectionStatus",
    "D2Error",
    "D2ErrorReport",
    "D2Handshake",
    "D2Interface",
    "D2KeepAlive",
    "D2LoadAverage",
    "D2Metrics",
    "D2MetricsData",
    "D2Network",
    "D2Ping",
    "D2Process",
    "D2RequestPendingScripts",
    "D2Response",
    "D2ScriptCompletion",
    "D2System",
    "D2SystemInfo",
    "ExitCode",
]

NULL_RAW = msgspec.Raw(b"null")
"""Default of a free-form field the agent left out (``Raw | None`` is not a msgspec type)."""


def _null_raw() -> msgspec.Raw:
    # a factory, not a default value: JSON Schema export cannot encode a Raw default
    return NULL_RAW


ExitCode = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**32 - 1)]
"""Process exit codes: negative on Unix signals, up to u32 NTSTATUS values on Windows."""


class _Msg(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of dialect 2 messages: the tag is ``type``."""


class D2Handshake(_Msg, tag="handshake"):
    timestamp: Timestamp | None = None
    vm_id: VmId | None = None
    version: Name | None = None
    platform: Name | None = None
    capabilities: Annotated[tuple[Name, ...], CAPPED] | None = None


class D2Interface(msgspec.Struct, kw_only=True):
    name: Name
    bytes_received: Counter | None = None
    bytes_sent: Counter | None = None
    packets_received: Counter | None = None
    packets_sent: Counter | None = None
    errors_in: Counter | None = None
    errors_out: Counter | None = None
    ip_addresses: Annotated[tuple[Name, ...], CAPPED] | None = None
    is_up: bool | None = None


class D2Network(msgspec.Struct, kw_only=True):
    interfaces: Annotated[list[D2Interface], CAPPED] | None = None


class D2LoadAverage(msgspec.Struct, kw_only=True):
    load_1min: Load | None = None
    load_5min: Load | None = None
    load_15min: Load | None = None


class D2SystemInfo(msgspec.Struct, kw_only=True):
    uptime_seconds: Seconds | None = None
    name: Name | None = None
    os_version: Name | None = None
    kernel_version: Name | None = None
    hostname: Name | None = None
    load_average: D2LoadAverage | None = None


class D2Process(msgspec.Struct, kw_only=True):
    id: Count
    name: Name
    parent_id: Count | None = None
    executable_path: Text | None = None
    command_line: Text | None = None
    cpu_usage_percent: ProcessPercent | None = None
    memory_usage_kb: Counter | None = None
    status: Name | None = None
    start_time: Timestamp | None = None


class D2System(msgspec.Struct, kw_only=True):
    """``data.system`` of a metrics message: machine facts, processes and ports together."""

    cpu: Cpu | None = None
    memory: Memory | None = None
    disk: Disk | None = None
    network: D2Network | None = None
    system: D2SystemInfo | None = None
    processes: Annotated[list[D2Process], CAPPED] | None = None
    ports: Annotated[list[OpenPort], CAPPED] | None = None
    windows_services: msgspec.Raw = msgspec.field(default_factory=_null_raw)


class D2MetricsData(msgspec.Struct, kw_only=True):
    system: D2System


class D2Metrics(_Msg, tag="metrics"):
    timestamp: Timestamp
    data: D2MetricsData


class D2KeepAlive(_Msg, tag="keep_alive"):
    sequence_number: Count
    timestamp: Timestamp


class D2Response(_Msg, tag="response"):
    id: Name
    success: bool
    exit_code: ExitCode | None = None
    stdout: Blob | None = None
    stderr: Blob | None = None
    execution_time_ms: Counter | None = None
    command_type: Name | None = None
    data: msgspec.Raw = msgspec.field(default_factory=_null_raw)
    timestamp: Timestamp | None = None


class D2Error(_Msg, tag="error"):
    error: Text
    timestamp: Timestamp | None = None
    details: msgspec.Raw = msgspec.field(default_factory=_null_raw)


class D2ErrorReport(_Msg, tag="error_report"):
    error_type: Name
    severity: Literal["Temporary", "Recoverable", "Fatal", "Unknown"]
    timestamp: Timestamp | None = None
    windows_error_code: ExitCode | None = None
    retry_attempt: Count | None = None
    max_retries: Count | None = None
    recovery_suggestion: Text | None = None
    vm_id: VmId | None = None


class D2AgentEvent(_Msg, tag="agent_event"):
    severity: Literal["debug", "info", "warn", "error"]
    message: Text
    timestamp: Timestamp | None = None
    source: Name | None = None
    executionId: Name | None = None
    context: msgspec.Raw = msgspec.field(default_factory=_null_raw)


class D2ScriptCompletion(_Msg, tag="script_completion"):
    execution_id: Name
    timestamp: Timestamp | None = None
    exit_code: ExitCode | None = None
    stdout: Blob | None = None
    stderr: Blob | None = None
    log_file: Text | None = None


class D2RequestPendingScripts(_Msg, tag="request_pending_scripts"):
    timestamp: Timestamp | None = None
    vm_id: VmId | None = None
    request_timestamp: Timestamp | None = None


class D2ConnectionStatus(_Msg, tag="connection_status"):
    """The agent's view of its channel, sent on every change of it (and so when it
    (re)connects): ``state`` is ``connected``, ``connected_pending_ips``,
    ``disconnected``, ``retrying``, ``monitoring``, ``circuit_breaker_open``,
    ``degraded`` or ``keep_alive_timeout`` in today's agent; kept as text, a
    newer agent may add states. ``details`` is a sentence for humans."""

    state: Name
    timestamp: Timestamp | None = None
    details: Text | None = None
    vm_id: VmId | None = None


class D2Ping(_Msg, tag="ping"):
    """The agent testing its send path (every ``ping_test_interval``, 60 s by default);
    ``sequence`` is the agent's clock in epoch milliseconds, not a counter."""

    timestamp: Timestamp | None = None
    sequence: Counter | None = None


class D2CircuitBreakerState(_Msg, tag="circuit_breaker_state"):
    """The agent's send circuit breaker changed state; ``last_failure_time`` is epoch
    seconds (or null), ``recovery_eta_seconds`` is set while the breaker is open."""

    state: Literal["Closed", "Open", "HalfOpen"]
    failure_count: Count | None = None
    last_failure_time: Timestamp | None = None
    recovery_eta_seconds: Counter | None = None
    timestamp: Timestamp | None = None


DIALECT2 = (
    D2Handshake,
    D2Metrics,
    D2KeepAlive,
    D2Response,
    D2Error,
    D2ErrorReport,
    D2AgentEvent,
    D2ScriptCompletion,
    D2RequestPendingScripts,
    D2ConnectionStatus,
    D2Ping,
    D2CircuitBreakerState,
)
"""Every dialect 2 message type, in PROTOCOL.md order."""
