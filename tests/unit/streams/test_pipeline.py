import base64
import json

import msgspec

from schemas.events import decode_outbound, encode_outbound
from streams.pipeline import (
    SYSTEM_METRICS_COLUMNS,
    TABLE_COLUMNS,
    RawRecord,
    live_event,
    process_batch,
)
from tests.support import examples as ex


def _line(vm: str, cpu: float = 12.5, used: int = 1000, total: int = 4000) -> bytes:
    return json.dumps(
        {
            "type": "system_metrics",
            "vmId": vm,
            "timestamp": "2025-11-25T10:00:00Z",
            "metrics": {
                "cpu": {"usage_percent": cpu},
                "memory": {"total_kb": total, "used_kb": used},
            },
        }
    ).encode()


def _rec(value: bytes, key: bytes | None = b"vm-a", offset: int = 0) -> RawRecord:
    return RawRecord(
        topic="agent.raw",
        partition=1,
        offset=offset,
        key=key,
        value=value,
        headers={"received_at": b"1764064800000", "transport": b"unix"},
    )


def test_valid_line_becomes_a_row_with_its_kafka_position() -> None:
    result = process_batch([_rec(_line("vm-a"), offset=7)])
    assert result.rejects == []
    (row,) = result.rows["system_metrics"]
    stored = dict(zip(SYSTEM_METRICS_COLUMNS, row, strict=True))
    assert stored["vm_id"] == "vm-a"
    assert (stored["cpu_usage_percent"], stored["memory_used_kb"], stored["memory_total_kb"]) == (
        12.5,
        1000,
        4000,
    )
    assert (stored["kafka_partition"], stored["kafka_offset"]) == (1, 7)


def test_a_record_without_the_bridges_receive_time_is_timed_by_kafka_on_every_replay() -> None:
    """A line produced by something other than the bridge has no ``received_at`` header:
    its receive time is the record's Kafka timestamp, never the worker's clock, so a
    replay rebuilds the same rows (the rollups' repair depends on it)."""
    stamped = 1_764_064_800_000 + 3 * 3_600_000  # 13:00, three hours after the agent's 10:00
    record = RawRecord("agent.raw", 1, 7, b"vm-a", _line("vm-a"), {}, timestamp_ms=stamped)
    first, replayed = process_batch([record]), process_batch([record])
    assert first.rows == replayed.rows
    stored = dict(zip(SYSTEM_METRICS_COLUMNS, first.rows["system_metrics"][0], strict=True))
    # the agent's 10:00 is outside the tolerance of a 13:00 receipt: ts is the receipt
    assert stored["ts_source"] == "received"
    assert stored["ts"] == stored["received_at"]
    assert stored["received_at"].isoformat() == "2025-11-25T13:00:00+00:00"


def test_bad_line_goes_to_dlq_and_next_line_is_kept() -> None:
    result = process_batch([_rec(b"{not json", offset=1), _rec(_line("vm-a"), offset=2)])
    assert [r[-1] for r in result.rows["system_metrics"]] == [2]
    ((vm, payload),) = result.rejects
    record = json.loads(payload)
    assert vm == "vm-a"
    assert record["reason"] == "invalid_json"
    assert record["raw"] == "{not json"
    assert record["origin"] == {
        "topic": "agent.raw",
        "partition": 1,
        "offset": 1,
        "vm_id": "vm-a",
        "transport": "unix",
        "received_at": "2025-11-25T10:00:00+00:00",
    }


def test_non_utf8_line_is_kept_as_base64() -> None:
    raw = b"\xff\xfe\x00garbage"
    result = process_batch([_rec(raw)])
    record = json.loads(result.rejects[0][1])
    assert record["raw_encoding"] == "base64"
    assert base64.b64decode(record["raw"]) == raw


def test_line_claiming_another_vm_is_rejected() -> None:
    result = process_batch([_rec(_line("vm-b"), key=b"vm-a")])
    assert result.rows["system_metrics"] == []
    assert json.loads(result.rejects[0][1])["reason"] == "vm_mismatch"


def test_out_of_range_cpu_is_rejected() -> None:
    result = process_batch([_rec(_line("vm-a", cpu=250.0))])
    assert json.loads(result.rejects[0][1])["reason"] == "out_of_range"


def test_live_event_targets_the_vm_room_with_the_contract_payload() -> None:
    (sample,) = process_batch([_rec(_line("vm-a"))]).samples
    event = decode_outbound(encode_outbound(live_event(sample)))
    assert event.rooms == ["vm:vm-a"]
    assert event.users == [] and event.admins is False
    assert set(event.data) == {"vmId", "metrics", "timestamp"}
    assert event.data["vmId"] == "vm-a"
    assert event.data["metrics"]["cpu"]["usage_percent"] == 12.5
    assert msgspec.json.decode(encode_outbound(live_event(sample)))["resource"] == "metrics"


# --- both dialects, control records, presence signals (issue 3) ---

T = 1_764_064_800.0


def _msg_rec(msg: dict[str, object], offset: int, key: bytes = b"vm-a") -> RawRecord:
    return _rec(ex.line(msg), key=key, offset=offset)


def _named(table: str, row: tuple[object, ...]) -> dict[str, object]:
    return dict(zip(TABLE_COLUMNS[table], row, strict=True))


def test_a_dialect2_metrics_message_fills_system_disk_network_process_and_port_rows() -> None:
    result = process_batch([_msg_rec(ex.d2_metrics("vm-a", T, processes=3, ports=2), 5)])
    assert result.rejects == []
    counts = {table: len(rows) for table, rows in result.rows.items()}
    assert counts == {
        "system_metrics": 1,
        "disk_usage": 1,
        "network_interfaces": 1,
        "process_snapshots": 3,
        "port_usage": 2,
        "application_usage": 0,
        "agent_events": 0,
    }
    system = _named("system_metrics", result.rows["system_metrics"][0])
    assert system["cpu_usage_percent"] == 23.25 and system["load_1min"] == 1.25
    assert system["dialect"] == 2 and system["ts_source"] == "agent"
    procs = [_named("process_snapshots", r) for r in result.rows["process_snapshots"]]
    assert [p["pid"] for p in procs] == [1, 2, 3]
    assert {p["kafka_offset"] for p in procs} == {5}
    for table, rows in result.rows.items():
        for row in rows:
            named = _named(table, row)
            assert named["vm_id"] == "vm-a" and named["ts"] is not None


def test_events_hellos_results_and_completions_go_to_agent_events() -> None:
    msgs = [
        ex.d2_handshake("vm-a", T),
        ex.d2_error(T),
        ex.d2_error_report("vm-a", T),
        ex.d2_agent_event(T),
        ex.d2_response(),
        ex.d2_script_completion(T),
        ex.d2_request_pending_scripts("vm-a", T),
        ex.d1_vm_identification("vm-a"),
    ]
    result = process_batch([_msg_rec(m, i) for i, m in enumerate(msgs)])
    kinds = [_named("agent_events", r)["kind"] for r in result.rows["agent_events"]]
    assert kinds == [
        "hello",
        "error",
        "error_report",
        "agent_event",
        "command_result",
        "script_completion",
        "request_pending_scripts",
        "hello",
    ]


def test_control_records_are_connection_events_not_rows_nor_rejects() -> None:
    def control(state: bytes, offset: int) -> RawRecord:
        return RawRecord(
            topic="agent.raw",
            partition=1,
            offset=offset,
            key=b"vm-a",
            value=b"",
            headers={"control": state, "received_at": b"1764064800000", "conn_id": b"c1"},
        )

    result = process_batch(
        [control(b"connected", 1), _msg_rec(ex.d2_keep_alive(1, T), 2), control(b"disconnected", 3)]
    )
    assert result.rejects == []
    assert [(c.vm_id, c.state, c.conn_id, c.offset) for c in result.connections] == [
        ("vm-a", "connected", "c1", 1),
        ("vm-a", "disconnected", "c1", 3),
    ]
    assert [(a.vm_id, a.kind) for a in result.activity] == [("vm-a", "keep_alive")]
    assert all(not rows for rows in result.rows.values())


def test_rejects_are_counted_by_reason_and_good_lines_around_them_stay() -> None:
    result = process_batch(
        [
            _msg_rec(ex.d1_system_metrics("vm-a", T, cpu=1.0), 1),
            _msg_rec(ex.d1_system_metrics("vm-b", T), 2),
            _rec(b'{"type":"keep_alive","sequence_number":"7","timestamp":1}', offset=3),
            _msg_rec(ex.d1_system_metrics("vm-a", T, cpu=2.0), 4),
        ]
    )
    cpus = [_named("system_metrics", r)["cpu_usage_percent"] for r in result.rows["system_metrics"]]
    assert cpus == [1.0, 2.0]
    assert result.reject_reasons == {"vm_mismatch": 1, "schema_violation": 1}
    offsets = [json.loads(p)["origin"]["offset"] for _, p in result.rejects]
    assert offsets == [2, 3]


# --- what the real agent also sends, and types this version does not know (issue 10) ---


def test_connection_status_and_circuit_breaker_are_stored_as_events_ping_is_presence() -> None:
    result = process_batch(
        [
            _msg_rec(ex.d2_connection_status("vm-a", T), 1),
            _msg_rec(ex.d2_ping(T), 2),
            _msg_rec(ex.d2_circuit_breaker_state(T, state="Open"), 3),
            _msg_rec(ex.d2_connection_status("vm-a", T, state="degraded"), 4),
        ]
    )
    assert result.rejects == [] and result.unrecognized == []
    events = [_named("agent_events", r) for r in result.rows["agent_events"]]
    assert [(e["kind"], e["state"], e["severity"], e["kafka_offset"]) for e in events] == [
        ("connection_status", "connected", "info", 1),
        ("circuit_breaker_state", "Open", "error", 3),
        ("connection_status", "degraded", "warn", 4),
    ]
    assert events[0]["message"] == "VirtIO connection established with IP data successfully"
    assert json.loads(str(events[1]["details"])) == {
        "failure_count": 5,
        "last_failure_time": int(T) - 2,
        "recovery_eta_seconds": 30,
    }
    # every one of them, the ping too, is the agent speaking: presence sees it
    assert [(a.vm_id, a.kind) for a in result.activity] == [
        ("vm-a", "connection_status"),
        ("vm-a", "ping"),
        ("vm-a", "circuit_breaker_state"),
        ("vm-a", "connection_status"),
    ]
    assert sum(len(rows) for rows in result.rows.values()) == 3  # the ping stores nothing


def test_a_message_of_an_unknown_type_is_a_counted_event_not_a_reject() -> None:
    line = b'{"type":"teleport","destination":{"x":1},"timestamp":1764064800}'
    result = process_batch([_rec(line, offset=3), _msg_rec(ex.d2_keep_alive(1, T), 4)])
    assert result.rejects == [] and result.reject_reasons == {}
    (event,) = result.unrecognized
    assert (event.vm_id, event.message_type, event.event_type) == (
        "vm-a",
        "teleport",
        "unrecognized",
    )
    (row,) = [_named("agent_events", r) for r in result.rows["agent_events"]]
    assert (row["kind"], row["message_type"], row["severity"]) == (
        "unrecognized",
        "teleport",
        "warn",
    )
    assert row["details"] == line.decode() and row["kafka_offset"] == 3
    assert [a.kind for a in result.activity] == ["teleport", "keep_alive"]


def test_an_unknown_type_naming_another_vm_is_still_a_forgery() -> None:
    result = process_batch([_rec(b'{"type":"teleport","vm_id":"vm-b"}', offset=1)])
    assert result.unrecognized == [] and result.reject_reasons == {"vm_mismatch": 1}
    assert all(not rows for rows in result.rows.values())


def test_live_event_carries_everything_the_sample_has() -> None:
    (sample,) = process_batch([_msg_rec(ex.d2_metrics("vm-a", T), 1)]).samples
    data = decode_outbound(encode_outbound(live_event(sample))).data
    assert set(data) == {"vmId", "metrics", "timestamp"}
    metrics = data["metrics"]
    assert metrics["cpu"]["cores_usage"] == [23.25, 5.5]
    assert metrics["memory"]["swap_total_kb"] == 4_194_304
    assert metrics["disk"]["usage_stats"][0]["mount_point"] == "/"
    assert metrics["network"]["interfaces"][0]["name"] == "ens3"
    assert metrics["system"]["load_average"]["load_1min"] == 1.25
    assert data["timestamp"] == "2025-11-25T10:00:00.000Z"
    # the keys a frontend reads (docs/SOCKETIO.md), level by level
    assert set(metrics) == {"cpu", "memory", "disk", "network", "system", "ts_source"}
    assert set(metrics["cpu"]) == {"usage_percent", "cores_usage", "temperature"}
    assert set(metrics["memory"]) == {
        "total_kb", "used_kb", "available_kb", "swap_total_kb", "swap_used_kb"
    }  # fmt: skip
    assert set(metrics["disk"]) == {"usage_stats", "io_stats"}
    assert set(metrics["disk"]["usage_stats"][0]) == {
        "mount_point", "filesystem", "total_gb", "used_gb", "available_gb"
    }  # fmt: skip
    assert set(metrics["disk"]["io_stats"]) == {
        "read_bytes_per_sec", "write_bytes_per_sec", "read_ops_per_sec", "write_ops_per_sec"
    }  # fmt: skip
    assert set(metrics["network"]["interfaces"][0]) == {
        "name", "bytes_received", "bytes_sent", "packets_received", "packets_sent"
    }  # fmt: skip
    assert set(metrics["system"]) == {"uptime_seconds", "load_average"}
    assert set(metrics["system"]["load_average"]) == {"load_1min", "load_5min", "load_15min"}
