import base64
import json

import msgspec

from schemas.events import decode_outbound, encode_outbound
from streams.pipeline import SYSTEM_METRICS_COLUMNS, RawRecord, live_event, process_batch


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
