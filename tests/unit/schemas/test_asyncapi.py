"""schemas/asyncapi.json: current, valid AsyncAPI 3.0, and true of the messages the code makes.

The traffic of a running pipeline (bridge, worker, gateway, browsers) is checked
against the same document in tests/integration/schemas/test_contract_traffic.py;
here the pure code paths that make each record are checked one by one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from gateway.deliveries import route
from gateway.namespace import _RESYNC_REASONS, TOO_MANY_CONNECTIONS, TOO_MANY_USER_CONNECTIONS
from schemas import asyncapi
from schemas.directory import Department, Directory, User, Vm, directory_key, encode_record
from schemas.dlq import DlqOrigin, Rejection, encode_dlq_record, make_dlq_record
from schemas.events import ResourceEvent, encode_outbound, routing_key
from schemas.hypervisor import HypervisorEvent, encode_event
from schemas.socketio import REFUSALS, RESYNC_REASONS
from schemas.topics import Topics
from streams.alerts import AlertEngine, AlertSample
from streams.pipeline import RawRecord, live_event, process_batch
from streams.presence import Presence
from streams.recipients import route_event
from streams.state_log import snapshot
from tests.support.contracts import Contract, asyncapi_spec
from tests.support.examples import all_examples, d1_system_metrics, line

VM = "6f1c1a52-8d43-4d57-9f1e-0c2b7d5f9a10"
T = 1_764_064_800.0
HEADERS = {
    "transport": b"unix",
    "peer": f"/run/vmpulse/sockets/{VM}.socket".encode(),
    "received_at": b"1764064800123",
    "conn_id": b"0123456789abcdef0123456789abcdef",
    "line_no": b"1",
}


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_committed_document_is_the_rendered_one() -> None:
    assert not asyncapi.stale(), "schemas/asyncapi.json is stale: run `python -m schemas.asyncapi`"


def test_a_stale_document_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "asyncapi.json"
    assert asyncapi.stale(path)
    asyncapi.write(path)
    assert not asyncapi.stale(path)
    path.write_text(path.read_text().replace('"agent.raw"', '"agent.lines"'))
    assert asyncapi.stale(path)


def test_it_is_valid_asyncapi_3_by_the_official_json_schema(contract: Contract) -> None:
    spec = asyncapi_spec()
    assert spec["properties"]["asyncapi"]["const"] == "3.0.0"
    validator = jsonschema.Draft7Validator(spec)
    errors = [
        f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(contract.doc)
    ]
    assert errors == []
    broken = json.loads(json.dumps(contract.doc))
    broken["operations"]["sendAgentRaw"]["action"] = "publish"  # AsyncAPI 2's verb
    assert list(validator.iter_errors(broken)), "the validator must refuse a broken document"


def test_every_reference_resolves(contract: Contract) -> None:
    refs = set(_refs(contract.doc))
    assert len(refs) > 50
    for ref in refs:
        _resolve(contract.doc, ref)


def test_operations_send_and_receive_only_their_channels_messages(contract: Contract) -> None:
    """AsyncAPI 3: an operation's messages are references into its channel's messages."""
    for name, op in contract.doc["operations"].items():
        channel = op["channel"]["$ref"]
        for part in (op, op.get("reply", {})):
            for ref in part.get("messages", []):
                assert ref["$ref"].startswith(channel + "/messages/"), (name, ref)
                _resolve(contract.doc, ref["$ref"])


def test_every_topic_has_its_channel_with_both_directions(contract: Contract) -> None:
    topics = Topics()
    kafka = {
        c["address"]: (cid, c)
        for cid, c in contract.doc["channels"].items()
        if c["servers"] == [{"$ref": "#/servers/kafka"}]
    }
    assert set(kafka) == set(topics.all())
    for address, (cid, channel) in kafka.items():
        policy = channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"]
        assert policy == (["compact"] if address in topics.compacted() else ["delete"])
        actions = {
            op["action"]
            for op in contract.doc["operations"].values()
            if op["channel"]["$ref"] == f"#/channels/{cid}"
        }
        assert actions == {"send", "receive"}, address


def test_the_socketio_texts_are_the_gateways() -> None:
    assert set(RESYNC_REASONS) == set(_RESYNC_REASONS.values())
    assert {TOO_MANY_CONNECTIONS, TOO_MANY_USER_CONNECTIONS} <= set(REFUSALS)
    from gateway.exceptions import TokenInvalid, TokenMissing, UnknownUser

    assert {str(TokenMissing()), str(TokenInvalid()), str(UnknownUser())} <= set(REFUSALS)


def test_every_example_agent_line_is_an_agent_line(contract: Contract) -> None:
    examples = all_examples(VM, T)
    assert len(examples) == 34
    for name, msg in examples:
        assert contract.kafka_message("agentRaw", VM.encode(), line(msg), HEADERS) == (
            "agentLine"
        ), name
    newer = {"type": "telemetry_v9", "vm_id": VM, "anything": [1, 2]}
    assert contract.kafka_message("agentRaw", VM.encode(), line(newer), HEADERS) == "agentLine"


def test_lines_the_worker_refuses_match_no_agent_line(contract: Contract) -> None:
    broken = d1_system_metrics(VM, T)
    broken["metrics"]["cpu"]["usage_percent"] = "high"
    for bad in (
        line(broken),
        line({"vmId": VM}),
        b"[1, 2]",
        line({"type": "ping", "sequence": -1}),
    ):
        with pytest.raises(AssertionError, match="matches no message"):
            contract.kafka_message("agentRaw", VM.encode(), bad, HEADERS)
        assert process_batch([_raw(bad)]).rejects, bad  # and the worker agrees


def test_a_line_without_the_bridge_headers_is_not_an_agent_line(contract: Contract) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "conn_id"}
    with pytest.raises(AssertionError, match="conn_id"):
        contract.kafka_message("agentRaw", VM.encode(), line(d1_system_metrics(VM, T)), headers)


def test_a_connection_record_is_one(contract: Contract) -> None:
    headers = {**HEADERS, "control": b"connected"}
    assert contract.kafka_message("agentRaw", VM.encode(), b"", headers) == "agentConnection"


def _raw(value: bytes, offset: int = 0) -> RawRecord:
    return RawRecord(
        topic="agent.raw", partition=0, offset=offset, key=VM.encode(), value=value,
        headers=HEADERS,
    )  # fmt: skip


def test_the_workers_dead_letters_live_updates_and_routed_events(contract: Contract) -> None:
    lines = [line(m) for _, m in all_examples(VM, T)] + [b'{"type": "metrics", "x": ', b"\xff"]
    result = process_batch([_raw(v, i) for i, v in enumerate(lines)])
    assert len(result.rejects) == 2 and result.samples
    for vm_id, payload in result.rejects:
        assert contract.kafka_message("agentDlq", vm_id.encode(), payload) == "dlqRecord"
    for sample in result.samples:
        event = live_event(sample)
        outbound = encode_outbound(event)
        assert contract.kafka_message("eventsOutbound", VM.encode(), outbound) == "outboundEvent"
        for delivery in route(event, Directory(), lambda u: f"user_{'0' * 20}"):
            # as the client receives it: JSON (the payload's tuples are arrays there)
            wire = msgspec.json.decode(msgspec.json.encode(delivery.payload))
            sent = {**wire, "position": "5.0.0"}
            assert contract.socketio_event(delivery.event, sent) == "metricsUpdate"

    directory = Directory()
    for rec in _directory_records():
        directory.apply(directory_key(rec), encode_record(rec))
    for resource, action, data in (
        ("vms", "power_on", {"vmId": VM, "powerState": "running"}),
        ("users", "update", {"id": "alice"}),
        ("alerts", "create", {"vmId": VM, "rule": "cpu_high"}),
    ):
        src = ResourceEvent(resource=resource, action=action, data=data, triggered_by="cron")
        assert (
            contract.kafka_message(
                "controlEvents", routing_key(src).encode(), msgspec.json.encode(src)
            )
            == "resourceEvent"
        )
        out = route_event(src, directory)
        assert out.users or out.admins or out.rooms
        key = routing_key(src).encode()
        assert contract.kafka_message("eventsOutbound", key, encode_outbound(out)) == (
            "outboundEvent"
        )
        for delivery in route(out, directory, lambda u: f"user_{'a' * 20}"):
            sent = {**delivery.payload, "position": "7.1.0"}
            assert contract.socketio_event(delivery.event, sent) in {
                "userResourceEvent",
                "vmResourceEvent",
            }


def _directory_records() -> list[User | Vm | Department]:
    return [
        User(id="root", name="Root", role="admin"),
        User(id="alice", name="Alice", department="eng"),
        Vm(id=VM, name="alpha", owner="alice", department="eng"),
        Department(id="eng", name="Engineering"),
    ]


def test_directory_records_and_tombstones(contract: Contract) -> None:
    for rec in _directory_records():
        key = directory_key(rec).encode()
        kind = type(rec).__name__.lower()
        expected = "directory" + ("Vm" if kind == "vm" else kind.title())
        assert contract.kafka_message("directory", key, encode_record(rec)) == expected
    assert contract.kafka_message("directory", b"vm:" + VM.encode(), None) == "directoryTombstone"
    with pytest.raises(AssertionError, match="'id' is a required property"):
        contract.kafka_message("directory", b"user:alice", b'{"name": "Alice"}')
    with pytest.raises(AssertionError, match="does not match"):
        contract.kafka_message("directory", b"alice", encode_record(_directory_records()[1]))


def test_hypervisor_events_and_worker_state(contract: Contract) -> None:
    when = dt.datetime.fromtimestamp(T, dt.UTC)
    event = HypervisorEvent(vm_id=VM, state="running", reason="booted", time=when)
    assert contract.kafka_message("hypervisorEvents", VM.encode(), encode_event(event)) == (
        "hypervisorEvent"
    )
    presence, alerts = Presence(30.0), AlertEngine()
    presence.activity(VM, T)
    presence.power(VM, "running")
    for i in range(0, 330, 30):
        alerts.observe(AlertSample(vm_id=VM, ts=when + dt.timedelta(seconds=i), cpu_percent=97.0))
    value = snapshot(presence, alerts, VM)
    assert json.loads(value)["breaches"], "an open alert is part of the snapshot"
    assert contract.kafka_message("workerState", VM.encode(), value) == "workerState"


def test_bridge_dead_letters_carry_the_bridge_headers(contract: Contract) -> None:
    origin = DlqOrigin(
        topic=None, partition=None, offset=None, vm_id=VM, transport="unix",
        received_at="2025-11-25T10:00:00.123000+00:00", conn_id="0" * 32, line_no=3, length=9,
    )  # fmt: skip
    record = make_dlq_record(b"\xff" * 9, Rejection("line_too_long", "too long"), origin)
    value = encode_dlq_record(record)
    assert contract.kafka_message("agentDlq", VM.encode(), value, HEADERS) == "dlqRecord"
    forged = json.loads(value) | {"reason": "looked_odd"}  # reason codes are a closed list
    with pytest.raises(AssertionError, match="reason"):
        contract.kafka_message("agentDlq", VM.encode(), json.dumps(forged).encode())


def test_client_events_and_their_acks(contract: Contract) -> None:
    assert contract.client_event("subscribe", {"vmId": VM}) == "subscribe"
    assert contract.client_event("metrics:recent", {"vmId": VM, "count": 5}) == "metricsRecent"
    assert contract.client_event("disconnect", {}) == "otherClientEvent"
    assert contract.ack("subscribe", {"ok": False, "error": "Access denied"}) == "subscribeAck"
    assert contract.ack("connect", {"ok": False, "error": "Reserved event name"}) == "refusedAck"
    with pytest.raises(AssertionError):
        contract.ack("subscribe", {"ok": "yes"})
    with pytest.raises(AssertionError):
        contract.client_event("metrics:recent", {"vmId": VM, "count": 0})


@dataclasses.dataclass
class _Sent:
    event: str
    payload: Any


def test_server_events_that_break_the_contract_are_caught(contract: Contract) -> None:
    good = {
        "message": "Connected to vmpulse",
        "namespace": "user_" + "0" * 20,
        "user": {"id": "alice", "name": "Alice", "role": "user"},
        "timestamp": "2025-11-25T10:00:00.000Z",
    }
    assert contract.socketio_event("connected", good) == "connected"
    for bad in (
        _Sent("connected", good | {"namespace": "alice"}),
        _Sent("resumed", {}),
        _Sent("hello", {}),
    ):
        with pytest.raises(AssertionError):
            contract.socketio_event(bad.event, bad.payload)
