"""The normalized internal form: one Struct per kind of fact, whatever the dialect.

Both dialects, and every agent build, end up here; stages downstream of
:mod:`schemas.normalize` (storage, live updates, presence, aggregation) only
know these types. Every fact carries where it came from (``vm_id``, the
``dialect``) and three clocks:

- ``agent_ts``: what the agent said (``None`` when it said nothing);
- ``received_at``: when the bridge read the line;
- ``ts``: the time the series uses, the agent's unless it is further than the
  tolerance from ``received_at`` (a restored snapshot, a drifting clock), and
  then the receive time; ``ts_source`` says which one (``agent`` | ``received``).

Facts form a tagged union on ``kind`` so they can be encoded and their JSON
Schema exported like the wire formats.

Facts are trees of plain values, never part of a reference cycle, so they are
``gc=False`` and their sequences are tuples: the worker holds a second of them for
its storage batch, and while they were lists and tracked Structs (13 tracked
objects a line) each young collection of `vmpulse up` walked 50,000-90,000 of
them, a 40-65 ms pause of the thread that also carries the live path. Now a
line's rows are walked once (tuples of plain values drop out of tracking at
their first collection) and the facts never (docs/BENCHMARKS.md, session 7).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec

__all__ = [
    "FACT_TYPES",
    "Activity",
    "AgentEvent",
    "AgentHello",
    "ApplicationRow",
    "ApplicationUsage",
    "CommandResult",
    "ConnectionEvent",
    "DiskFigure",
    "Fact",
    "InterfaceFigure",
    "KeepAlive",
    "PortRow",
    "PortSnapshot",
    "ProcessRow",
    "ProcessSnapshot",
    "ScriptCompletion",
    "SystemSample",
]

TsSource = Literal["agent", "received"]


class _Fact(msgspec.Struct, kw_only=True, gc=False, tag_field="kind", frozen=True):
    vm_id: str
    ts: dt.datetime
    received_at: dt.datetime
    agent_ts: dt.datetime | None = None
    ts_source: TsSource = "agent"
    dialect: Literal[1, 2] = 1
    message_type: str = ""


class AgentHello(_Fact, tag="hello", frozen=True):
    """The agent introduced itself (``vm_identification`` / ``handshake``)."""

    hostname: str | None = None
    os: str | None = None
    agent_version: str | None = None
    platform: str | None = None
    capabilities: tuple[str, ...] = ()


class DiskFigure(msgspec.Struct, kw_only=True, gc=False, frozen=True):
    mount_point: str
    filesystem: str | None = None
    total_gb: float | None = None
    used_gb: float | None = None
    available_gb: float | None = None


class InterfaceFigure(msgspec.Struct, kw_only=True, gc=False, frozen=True):
    name: str
    bytes_received: int | None = None
    bytes_sent: int | None = None
    packets_received: int | None = None
    packets_sent: int | None = None
    errors_in: int | None = None
    errors_out: int | None = None
    is_up: bool | None = None
    ip_addresses: tuple[str, ...] = ()


class SystemSample(_Fact, tag="system", frozen=True):
    """Machine figures of one sample: CPU, memory, swap, disk, network, uptime, load."""

    cpu_usage_percent: float | None = None
    cpu_cores_usage: tuple[float, ...] = ()
    cpu_temperature: float | None = None
    memory_total_kb: int | None = None
    memory_used_kb: int | None = None
    memory_available_kb: int | None = None
    swap_total_kb: int | None = None
    swap_used_kb: int | None = None
    disk_read_bytes_per_sec: int | None = None
    disk_write_bytes_per_sec: int | None = None
    disk_read_ops_per_sec: int | None = None
    disk_write_ops_per_sec: int | None = None
    uptime_seconds: float | None = None
    load_1min: float | None = None
    load_5min: float | None = None
    load_15min: float | None = None
    hostname: str | None = None
    disks: tuple[DiskFigure, ...] = ()
    interfaces: tuple[InterfaceFigure, ...] = ()


class ProcessRow(msgspec.Struct, kw_only=True, gc=False, frozen=True):
    pid: int
    name: str
    parent_pid: int | None = None
    executable_path: str | None = None
    command_line: str | None = None
    cpu_usage_percent: float | None = None
    memory_usage_kb: int | None = None
    status: str | None = None
    user: str | None = None
    start_time: dt.datetime | None = None


class ProcessSnapshot(_Fact, tag="processes", frozen=True):
    processes: tuple[ProcessRow, ...] = ()


class PortRow(msgspec.Struct, kw_only=True, gc=False, frozen=True):
    port: int
    protocol: str
    state: str | None = None
    process_id: int | None = None
    process_name: str | None = None
    is_listening: bool | None = None


class PortSnapshot(_Fact, tag="ports", frozen=True):
    ports: tuple[PortRow, ...] = ()


class ApplicationRow(msgspec.Struct, kw_only=True, gc=False, frozen=True):
    name: str
    executable_path: str | None = None
    version: str | None = None
    publisher: str | None = None
    is_running: bool | None = None
    usage_count: int | None = None
    usage_minutes: float | None = None
    last_used: dt.datetime | None = None


class ApplicationUsage(_Fact, tag="applications", frozen=True):
    applications: tuple[ApplicationRow, ...] = ()


class KeepAlive(_Fact, tag="keep_alive", frozen=True):
    """The agent is there (``keep_alive``, ``ping``): presence only, never stored."""

    sequence_number: int = 0


class AgentEvent(_Fact, tag="event", frozen=True):
    """Something the agent reports about itself: ``error``, ``error_report``,
    ``agent_event``, ``request_pending_scripts``, ``connection_status`` and
    ``circuit_breaker_state`` (whose ``state`` it keeps), and messages of a type
    this version does not know (``event_type`` ``unrecognized``, the agent's
    type in ``message_type``, the line in ``details``); ``details`` is JSON text."""

    event_type: str
    severity: str = "info"
    source: str | None = None
    message: str = ""
    execution_id: str | None = None
    details: str | None = None
    state: str | None = None


class CommandResult(_Fact, tag="command_result", frozen=True):
    """The agent's ``response`` to a command the platform sent; ``data`` is JSON text."""

    command_id: str
    success: bool
    exit_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    execution_time_ms: int | None = None
    command_type: str | None = None
    data: str | None = None


class ScriptCompletion(_Fact, tag="script_completion", frozen=True):
    execution_id: str
    exit_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    log_file: str | None = None


Fact = (
    AgentHello
    | SystemSample
    | ProcessSnapshot
    | PortSnapshot
    | ApplicationUsage
    | KeepAlive
    | AgentEvent
    | CommandResult
    | ScriptCompletion
)

FACT_TYPES = (
    AgentHello,
    SystemSample,
    ProcessSnapshot,
    PortSnapshot,
    ApplicationUsage,
    KeepAlive,
    AgentEvent,
    CommandResult,
    ScriptCompletion,
)


class ConnectionEvent(msgspec.Struct, kw_only=True, gc=False, frozen=True):
    """A bridge control record: the agent's connection opened or closed (never stored)."""

    vm_id: str
    state: Literal["connected", "disconnected"]
    received_at: dt.datetime
    conn_id: str | None = None
    transport: str | None = None
    partition: int | None = None
    offset: int | None = None


class Activity(msgspec.Struct, kw_only=True, gc=False, frozen=True):
    """One accepted message, for presence: who, which kind of fact, and when."""

    vm_id: str
    kind: str
    ts: dt.datetime
    received_at: dt.datetime
