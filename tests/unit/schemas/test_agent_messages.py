"""Every message type of both dialects, as Linux and Windows agents write them, and every
reason a line is refused."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from schemas.dlq import Reason, Rejection
from schemas.facts import (
    AgentEvent,
    AgentHello,
    ApplicationUsage,
    CommandResult,
    Fact,
    KeepAlive,
    PortSnapshot,
    ProcessSnapshot,
    ScriptCompletion,
    SystemSample,
)
from schemas.normalize import json_depth, normalize_line
from tests.support import examples as ex

VM = "3f0c9a52-6d7e-4b1a-9c1e-2b7f4e8d9a01"
T = 1_764_064_800.0  # 2025-11-25T10:00:00Z
RX = dt.datetime.fromtimestamp(T + 2, dt.UTC)

EXPECTED_KINDS = {
    "vm_identification": [AgentHello],
    "system_metrics": [SystemSample],
    "process_snapshot": [ProcessSnapshot],
    "application_usage": [ApplicationUsage],
    "port_usage": [PortSnapshot],
    "handshake": [AgentHello],
    "metrics": [SystemSample, ProcessSnapshot, PortSnapshot],
    "keep_alive": [KeepAlive],
    "response": [CommandResult],
    "error": [AgentEvent],
    "error_report": [AgentEvent],
    "agent_event": [AgentEvent],
    "script_completion": [ScriptCompletion],
    "request_pending_scripts": [AgentEvent],
    "connection_status": [AgentEvent],
    "ping": [KeepAlive],
    "circuit_breaker_state": [AgentEvent],
}


def accept(msg: dict[str, Any] | bytes, vm: str = VM) -> list[Fact]:
    raw = msg if isinstance(msg, bytes) else ex.line(msg)
    result = normalize_line(raw, vm, RX)
    assert not isinstance(result, Rejection), result
    return result


def reject(msg: dict[str, Any] | bytes, vm: str = VM) -> Rejection:
    raw = msg if isinstance(msg, bytes) else ex.line(msg)
    result = normalize_line(raw, vm, RX)
    assert isinstance(result, Rejection), result
    return result


@pytest.mark.parametrize(("name", "msg"), ex.all_examples(VM, T), ids=lambda v: str(v)[:40])
def test_every_type_of_both_dialects_is_accepted(name: str, msg: dict[str, Any]) -> None:
    facts = accept(msg)
    assert [type(f) for f in facts] == EXPECTED_KINDS[msg["type"]]
    assert all(f.vm_id == VM and f.message_type == msg["type"] for f in facts)
    assert all(f.dialect == (1 if name.startswith("d1") else 2) for f in facts)


def test_covers_all_seventeen_types() -> None:
    assert {m["type"] for _, m in ex.all_examples(VM, T)} == set(EXPECTED_KINDS)


@pytest.mark.parametrize("windows", [False, True])
def test_dialect1_system_metrics_keeps_every_figure(windows: bool) -> None:
    (s,) = accept(ex.d1_system_metrics(VM, T, windows=windows, cpu=37.5))
    assert isinstance(s, SystemSample)
    assert s.cpu_usage_percent == 37.5 and s.cpu_cores_usage == (37.5, 12.0, 99.5, 0.0)
    assert s.cpu_temperature == (None if windows else 48.5)
    assert (s.memory_total_kb, s.memory_used_kb, s.memory_available_kb) == (
        8_388_608,
        4_194_304,
        4_194_304,
    )
    assert s.swap_total_kb == 2_097_152 and s.swap_used_kb == (None if windows else 1024)
    assert [d.mount_point for d in s.disks] == ["C:\\" if windows else "/"]
    assert s.disks[0].used_gb == 64.25
    assert s.disk_read_bytes_per_sec == 409_600 and s.disk_write_ops_per_sec is None
    assert [(n.name, n.bytes_received) for n in s.interfaces] == [
        ("Ethernet" if windows else "eth0", 123_456_789)
    ]
    assert s.uptime_seconds == 86_400
    loads = (s.load_1min, s.load_5min, s.load_15min)
    assert loads == ((None, None, None) if windows else (0.52, 0.61, 0.7))
    assert s.ts == dt.datetime.fromtimestamp(T, dt.UTC) and s.ts_source == "agent"


@pytest.mark.parametrize("windows", [False, True])
def test_dialect2_metrics_fills_system_processes_and_ports(windows: bool) -> None:
    system, procs, ports = accept(ex.d2_metrics(VM, T, windows=windows, processes=7, ports=5))
    assert isinstance(system, SystemSample)
    assert isinstance(procs, ProcessSnapshot) and isinstance(ports, PortSnapshot)
    assert system.cpu_usage_percent == 23.25 and system.memory_used_kb == 6_291_456
    assert system.uptime_seconds == 123_456 and system.hostname is not None
    assert system.load_1min == (None if windows else 1.25)
    assert system.swap_total_kb == (None if windows else 4_194_304)
    assert system.disks[0].filesystem == ("NTFS" if windows else "ext4")
    assert system.interfaces[0].ip_addresses == ("192.168.122.45", "fe80::5054:ff:fe12:3456")
    assert len(procs.processes) == 7 and len(ports.ports) == 5
    first = procs.processes[0]
    assert first.parent_pid is None and first.start_time is not None
    if windows:
        assert first.executable_path is None and first.name == "System"
    assert ports.ports[0].is_listening is True and ports.ports[1].is_listening is False
    assert system.ts == procs.ts == ports.ts == dt.datetime.fromtimestamp(int(T), dt.UTC)


def test_a_metrics_line_with_1000_processes_is_accepted_and_1001_is_too_large() -> None:
    msg = ex.d2_metrics(VM, T, processes=1000, ports=1000)
    assert len(ex.line(msg)) > 200_000
    _, procs, ports = accept(msg)
    assert isinstance(procs, ProcessSnapshot) and len(procs.processes) == 1000
    assert isinstance(ports, PortSnapshot) and len(ports.ports) == 1000
    too_many = ex.d2_metrics(VM, T, processes=1001)
    rejection = reject(too_many)
    assert rejection.reason == Reason.TOO_LARGE and "processes" in rejection.detail


def test_nulls_where_agents_send_null_are_accepted() -> None:
    msg = ex.d2_metrics(VM, T, windows=True)
    system = msg["data"]["system"]
    system["cpu"]["temperature"] = None
    system["system"]["load_average"] = None
    system["memory"]["swap_used_kb"] = None
    system["processes"][1]["command_line"] = None
    system["processes"][1]["start_time"] = None
    system["ports"][0]["process_name"] = None
    s, p, _ = accept(msg)
    assert isinstance(s, SystemSample) and isinstance(p, ProcessSnapshot)
    assert s.cpu_temperature is None and s.load_1min is None
    assert p.processes[1].command_line is None and p.processes[1].start_time is None


def test_unknown_fields_are_ignored() -> None:
    msg = ex.d2_keep_alive(3, T)
    msg["agent_build"] = {"nested": [1, 2, {"x": "y"}]}
    (fact,) = accept(msg)
    assert isinstance(fact, KeepAlive) and fact.sequence_number == 3


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2025-11-25T10:00:00Z", T),
        ("2025-11-25T10:00:00.250+00:00", T + 0.25),
        ("2025-11-25T11:00:00+01:00", T),
        ("2025-11-25T10:00:00", T),
        (int(T), T),
        (T + 0.5, T + 0.5),
        (int(T * 1000), T),
    ],
)
def test_timestamps_iso_epoch_seconds_and_milliseconds(stamp: object, expected: float) -> None:
    msg = ex.d2_keep_alive(1, T)
    msg["timestamp"] = stamp
    (fact,) = accept(msg)
    assert fact.agent_ts == dt.datetime.fromtimestamp(expected, dt.UTC)
    assert fact.ts == fact.agent_ts and fact.ts_source == "agent"


def test_a_clock_off_by_more_than_the_tolerance_gives_way_to_the_receive_time() -> None:
    restored = T - 3 * 86400  # a VM snapshot restored three days later
    (fact,) = accept(ex.d1_system_metrics(VM, restored))
    assert fact.ts == RX and fact.ts_source == "received"
    assert fact.agent_ts == dt.datetime.fromtimestamp(restored, dt.UTC)
    (near,) = accept(ex.d1_system_metrics(VM, T + 4 * 60))
    assert near.ts_source == "agent"


def test_a_message_without_timestamp_uses_the_receive_time() -> None:
    (hello,) = accept(ex.d1_vm_identification(VM, windows=True))
    assert isinstance(hello, AgentHello)
    assert hello.agent_ts is None and hello.ts == RX and hello.ts_source == "received"
    assert hello.os == "Windows 11 Pro" and hello.agent_version == "1.4.2"


def test_vm_ids_compare_as_uuids() -> None:
    (fact,) = accept(ex.d2_handshake(VM.upper(), T))
    assert fact.vm_id == VM


@pytest.mark.parametrize(
    "msg",
    [
        ex.d1_system_metrics("another-vm", T),
        ex.d1_vm_identification("another-vm"),
        ex.d1_process_snapshot("another-vm", T),
        ex.d1_port_usage("another-vm", T),
        ex.d1_application_usage("another-vm", T),
        ex.d2_handshake("another-vm", T),
        ex.d2_error_report("another-vm", T),
        ex.d2_request_pending_scripts("another-vm", T),
        ex.d2_connection_status("another-vm", T),
        {"type": "reboot_now", "vm_id": "another-vm"},
        {"type": "reboot_now", "vmId": "another-vm"},
    ],
    ids=lambda m: m["type"],
)
def test_a_message_naming_another_vm_is_an_impersonation_attempt(msg: dict[str, Any]) -> None:
    rejection = reject(msg)
    assert rejection.reason == Reason.VM_MISMATCH
    assert "another-vm" in rejection.detail and VM in rejection.detail


def _metrics_with(path: str, value: object) -> dict[str, Any]:
    msg = ex.d2_metrics(VM, T)
    node: Any = msg
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[keys[-1]] = value
    return msg


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", Reason.EMPTY_LINE),
        (b"   ", Reason.EMPTY_LINE),
        (b'{"type": "keep_alive", "sequence_number": ', Reason.INVALID_JSON),
        (b'{"type":"keep_alive","sequence_number":1,"timestamp":1}}', Reason.INVALID_JSON),
        (b"\xff\xfe{}", Reason.INVALID_UTF8),
        (b'{"type":"error","error":"caf\xc3","timestamp":1}', Reason.INVALID_UTF8),
        (b'{"type":"keep_alive","sequence_number":1,"timestamp":NaN}', Reason.NON_FINITE_NUMBER),
        (
            b'{"type":"keep_alive","sequence_number":1,"timestamp":-Infinity}',
            Reason.NON_FINITE_NUMBER,
        ),
        (b'[{"type":"keep_alive"}]', Reason.NOT_AN_OBJECT),
        (b'"keep_alive"', Reason.NOT_AN_OBJECT),
        (b'{"sequence_number":1,"timestamp":1}', Reason.MISSING_TYPE),
        (b'{"type":7,"sequence_number":1}', Reason.MISSING_TYPE),
        (b'{"type":"","vm_id":"x"}', Reason.MISSING_TYPE),
        (b'{"type":"reboot_now","vm_id":7}', Reason.SCHEMA_VIOLATION),
        (b'{"type":"reboot_now","now":tru}', Reason.INVALID_JSON),
        (b'{"type":"keep_alive","sequence_number":"1","timestamp":1}', Reason.SCHEMA_VIOLATION),
        (b'{"type":"keep_alive","timestamp":1764064800}', Reason.SCHEMA_VIOLATION),
        (b'{"type":"keep_alive","sequence_number":-1,"timestamp":1764064800}', Reason.OUT_OF_RANGE),
        (
            b'{"type":"keep_alive","sequence_number":4294967296,"timestamp":1764064800}',
            Reason.OUT_OF_RANGE,
        ),
        (b'{"type":"keep_alive","sequence_number":1,"timestamp":1e400}', Reason.OUT_OF_RANGE),
        (
            b'{"type":"keep_alive","sequence_number":1,"timestamp":"yesterday"}',
            Reason.BAD_TIMESTAMP,
        ),
        (b'{"type":"keep_alive","sequence_number":1,"timestamp":12}', Reason.BAD_TIMESTAMP),
        (
            b'{"type":"keep_alive","sequence_number":1,"timestamp":"2999-01-01T00:00:00Z"}',
            Reason.BAD_TIMESTAMP,
        ),
    ],
)
def test_refused_lines_get_their_reason(raw: bytes, reason: Reason) -> None:
    assert reject(raw).reason == reason


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("data.system.cpu.usage_percent", 100.5, Reason.OUT_OF_RANGE),
        ("data.system.cpu.usage_percent", -0.1, Reason.OUT_OF_RANGE),
        ("data.system.cpu.usage_percent", "12", Reason.SCHEMA_VIOLATION),
        ("data.system.cpu.cores_usage", [1.0, 250.0], Reason.OUT_OF_RANGE),
        ("data.system.memory.used_kb", -5, Reason.OUT_OF_RANGE),
        ("data.system.memory.used_kb", 10**30, Reason.OUT_OF_RANGE),
        ("data.system.memory.used_kb", 1.5, Reason.SCHEMA_VIOLATION),
        ("data.system.network.interfaces.0.bytes_sent", -1, Reason.OUT_OF_RANGE),
        ("data.system.ports.0.port", 70000, Reason.OUT_OF_RANGE),
        ("data.system.processes.0.name", "x" * 300, Reason.TOO_LARGE),
        ("data.system.processes.0.name", None, Reason.SCHEMA_VIOLATION),
        ("data.system.processes", {"not": "a list"}, Reason.SCHEMA_VIOLATION),
        ("data.system", None, Reason.SCHEMA_VIOLATION),
    ],
)
def test_wrong_types_ranges_and_caps_in_a_metrics_message(
    path: str, value: object, reason: Reason
) -> None:
    rejection = reject(_metrics_with(path, value))
    assert rejection.reason == reason, rejection
    assert path.split(".")[-1] in rejection.detail or reason == Reason.OUT_OF_RANGE


def test_absurd_nesting_is_too_deep() -> None:
    deep_context = ex.d2_agent_event(T)
    deep_context["context"] = json.loads("[" * 50 + "]" * 50)
    assert reject(deep_context).reason == Reason.TOO_DEEP
    bomb = b'{"type":"agent_event","severity":"info","message":"x","context":' + b"[" * 100_000
    assert reject(bomb + b"]" * 100_000 + b"}").reason == Reason.TOO_DEEP
    assert reject(b"[" * 100_000).reason == Reason.NOT_AN_OBJECT  # refused before descending
    unknown = b'{"type":"keep_alive","sequence_number":1,"timestamp":1764064800,"x":'
    assert reject(unknown + b"[" * 100_000 + b"]" * 100_000 + b"}").reason == Reason.TOO_DEEP


def test_free_form_fields_are_kept_as_json_text() -> None:
    (event,) = accept(ex.d2_agent_event(T))
    assert isinstance(event, AgentEvent)
    assert json.loads(event.details or "") == {"elapsed_ms": 31_000, "limit_ms": 30_000}
    assert event.severity == "warn" and event.execution_id == "exec-42"
    (result,) = accept(ex.d2_response(success=False))
    assert isinstance(result, CommandResult)
    assert result.success is False and result.data is None and result.stderr == "access denied"


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth(b'{"a":"[[[[{{{{","b":[1,[2]]}') == 3
    assert json_depth(b'"\\"[["') == 0
    assert json_depth(b"5") == 0
