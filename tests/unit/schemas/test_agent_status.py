"""What the InfiniService agent sends besides metrics (connection_status, ping,
circuit_breaker_state), byte for byte as it writes them, and messages of types this
version does not know (issue 10).

The agent builds these three with ``serde_json::json!`` (communication.rs): a
BTreeMap, so the keys come in alphabetical order and ``type`` is not first;
timestamps are chrono's ``Utc::now().to_rfc3339()`` (nanoseconds, ``+00:00``) or
epoch seconds, ``sequence`` is the clock in epoch milliseconds. The byte shapes
below were confirmed by compiling the agent's three ``json!`` constructions with
serde_json 1.0 and chrono 0.4 (the agent's own versions) and comparing the output.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.agent import Unrecognized, decode_line
from schemas.dialect1 import DIALECT1
from schemas.dialect2 import DIALECT2
from schemas.dlq import Reason, Rejection
from schemas.facts import AgentEvent, Fact, KeepAlive
from schemas.normalize import UNRECOGNIZED_KEPT_MAX, normalize_line
from tests.support import examples as ex

VM = "3f0c9a52-6d7e-4b1a-9c1e-2b7f4e8d9a01"
T = 1_764_064_800.0  # 2025-11-25T10:00:00Z
RX = dt.datetime.fromtimestamp(T + 2, dt.UTC)
AGENT_TS = dt.datetime(2025, 11, 25, 10, 0, 0, 123456, tzinfo=dt.UTC)
KNOWN = {t.__struct_config__.tag for t in (*DIALECT1, *DIALECT2)}

CONNECTION_STATUS = (
    b'{"details":"VirtIO connection established with IP data successfully",'
    b'"state":"connected","timestamp":"2025-11-25T10:00:00.123456789+00:00",'
    b'"type":"connection_status","vm_id":"3f0c9a52-6d7e-4b1a-9c1e-2b7f4e8d9a01"}'
)
PING = b'{"sequence":1764064800123,"timestamp":"2025-11-25T10:00:00.123456789+00:00",' + (
    b'"type":"ping"}'
)
BREAKER_OPEN = (
    b'{"failure_count":5,"last_failure_time":1764064798,"recovery_eta_seconds":30,'
    b'"state":"Open","timestamp":1764064800,"type":"circuit_breaker_state"}'
)
BREAKER_HALF_OPEN = (
    b'{"failure_count":5,"last_failure_time":1764064798,"recovery_eta_seconds":null,'
    b'"state":"HalfOpen","timestamp":1764064830,"type":"circuit_breaker_state"}'
)
BREAKER_CLOSED = (
    b'{"failure_count":0,"last_failure_time":null,"recovery_eta_seconds":null,'
    b'"state":"Closed","timestamp":1764064800,"type":"circuit_breaker_state"}'
)


def accept(raw: bytes, vm: str = VM) -> list[Fact]:
    result = normalize_line(raw, vm, RX)
    assert not isinstance(result, Rejection), result
    return result


def reject(raw: bytes, vm: str = VM) -> Rejection:
    result = normalize_line(raw, vm, RX)
    assert isinstance(result, Rejection), result
    return result


# --- the three messages, exactly as the agent writes them ---


def test_connection_status_is_an_agent_event_with_its_state() -> None:
    (event,) = accept(CONNECTION_STATUS)
    assert isinstance(event, AgentEvent)
    assert (event.event_type, event.message_type, event.dialect) == (
        "connection_status",
        "connection_status",
        2,
    )
    assert event.state == "connected" and event.severity == "info"
    assert event.message == "VirtIO connection established with IP data successfully"
    # chrono writes nanoseconds; the series keeps microseconds
    assert event.agent_ts == AGENT_TS and event.ts == AGENT_TS and event.ts_source == "agent"
    assert event.vm_id == VM and event.details is None


@pytest.mark.parametrize(
    ("state", "severity"),
    [
        ("connected", "info"),
        ("connected_pending_ips", "info"),
        ("monitoring", "info"),
        ("disconnected", "warn"),
        ("retrying", "warn"),
        ("circuit_breaker_open", "warn"),
        ("degraded", "warn"),
        ("keep_alive_timeout", "warn"),
        ("a_state_of_a_newer_agent", "info"),
    ],
)
def test_every_connection_state_of_the_agent_is_kept(state: str, severity: str) -> None:
    (event,) = accept(ex.line(ex.d2_connection_status(VM, T, state=state)))
    assert isinstance(event, AgentEvent)
    assert (event.state, event.severity) == (state, severity)


def test_ping_is_presence_with_the_agents_millisecond_clock() -> None:
    (ping,) = accept(PING)
    assert isinstance(ping, KeepAlive)
    assert ping.message_type == "ping" and ping.dialect == 2
    assert ping.sequence_number == 1_764_064_800_123
    assert ping.agent_ts == AGENT_TS


@pytest.mark.parametrize(
    ("raw", "state", "severity", "details", "message"),
    [
        (
            BREAKER_OPEN,
            "Open",
            "error",
            {"failure_count": 5, "last_failure_time": 1764064798, "recovery_eta_seconds": 30},
            "send circuit breaker Open after 5 failures, next try in 30 s",
        ),
        (
            BREAKER_HALF_OPEN,
            "HalfOpen",
            "warn",
            {"failure_count": 5, "last_failure_time": 1764064798, "recovery_eta_seconds": None},
            "send circuit breaker HalfOpen after 5 failures",
        ),
        (
            BREAKER_CLOSED,
            "Closed",
            "info",
            {"failure_count": 0, "last_failure_time": None, "recovery_eta_seconds": None},
            "send circuit breaker Closed",
        ),
    ],
)
def test_circuit_breaker_state_is_an_agent_event(
    raw: bytes, state: str, severity: str, details: dict[str, Any], message: str
) -> None:
    (event,) = accept(raw)
    assert isinstance(event, AgentEvent)
    assert (event.event_type, event.state, event.severity) == (
        "circuit_breaker_state",
        state,
        severity,
    )
    assert json.loads(event.details or "") == details
    assert event.message == message
    assert event.agent_ts is not None and event.agent_ts.timestamp() == json.loads(raw)["timestamp"]


def test_the_examples_write_what_the_agent_writes() -> None:
    assert ex.line(ex.d2_connection_status(VM, T)) == CONNECTION_STATUS
    assert ex.line(ex.d2_ping(T)) == PING
    assert ex.line(ex.d2_circuit_breaker_state(T)) == BREAKER_OPEN
    for make in (ex.d2_connection_status(VM, T), ex.d2_ping(T), ex.d2_circuit_breaker_state(T)):
        assert list(make) == sorted(make), "serde_json::json! writes keys in order"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        # invalid messages of a known type stay in the DLQ
        (b'{"state":"Broken","type":"circuit_breaker_state"}', Reason.SCHEMA_VIOLATION),
        (
            b'{"failure_count":-1,"state":"Open","type":"circuit_breaker_state"}',
            Reason.OUT_OF_RANGE,
        ),
        (b'{"type":"circuit_breaker_state"}', Reason.SCHEMA_VIOLATION),
        (b'{"sequence":-5,"type":"ping"}', Reason.OUT_OF_RANGE),
        (b'{"sequence":"12","type":"ping"}', Reason.SCHEMA_VIOLATION),
        (b'{"timestamp":"2999-01-01T00:00:00Z","type":"ping"}', Reason.BAD_TIMESTAMP),
        (b'{"details":"x","type":"connection_status"}', Reason.SCHEMA_VIOLATION),
        (b'{"state":"' + b"s" * 300 + b'","type":"connection_status"}', Reason.TOO_LARGE),
        (CONNECTION_STATUS.replace(VM.encode(), b"0000-other-vm"), Reason.VM_MISMATCH),
        (CONNECTION_STATUS[:-5], Reason.INVALID_JSON),
    ],
)
def test_invalid_or_forged_status_lines_are_refused(raw: bytes, reason: Reason) -> None:
    assert reject(raw).reason == reason


def test_the_vm_of_a_connection_status_compares_as_a_uuid() -> None:
    (event,) = accept(CONNECTION_STATUS.replace(VM.encode(), VM.upper().encode()))
    assert event.vm_id == VM


def test_ping_and_circuit_breaker_need_nothing_but_their_type() -> None:
    (ping,) = accept(b'{"type":"ping"}')
    assert isinstance(ping, KeepAlive) and ping.agent_ts is None and ping.ts == RX
    (breaker,) = accept(b'{"type":"circuit_breaker_state","state":"HalfOpen"}')
    assert isinstance(breaker, AgentEvent) and breaker.state == "HalfOpen"


# --- messages of a type this version does not know ---


def test_an_unknown_type_is_an_unrecognized_event_with_the_whole_line() -> None:
    line = (
        b'{"payload":{"gpu":[{"id":0,"util":41.5}]},"timestamp":"2025-11-25T10:00:00Z",'
        b'"type":"gpu_metrics","vm_id":"' + VM.encode() + b'"}'
    )
    assert isinstance(decode_line(line), Unrecognized)
    (event,) = accept(line)
    assert isinstance(event, AgentEvent)
    assert (event.event_type, event.message_type, event.severity) == (
        "unrecognized",
        "gpu_metrics",
        "warn",
    )
    assert event.details == line.decode()
    assert event.message == "message of unrecognized type 'gpu_metrics'"
    assert event.agent_ts == dt.datetime.fromtimestamp(T, dt.UTC) and event.ts_source == "agent"


@pytest.mark.parametrize("stamp", [b'"yesterday"', b"12", b'{"at":1}', b"null", b'"2999-01-01"'])
def test_an_unknown_types_timestamp_that_names_no_instant_is_ignored(stamp: bytes) -> None:
    (event,) = accept(b'{"type":"gpu_metrics","timestamp":' + stamp + b"}")
    assert event.agent_ts is None and event.ts == RX and event.ts_source == "received"


def test_a_large_or_deep_unknown_message_is_counted_without_its_body() -> None:
    big = b'{"type":"inventory","blob":"' + b"x" * UNRECOGNIZED_KEPT_MAX + b'"}'
    (event,) = accept(big)
    assert isinstance(event, AgentEvent) and event.details is None
    assert f"{len(big)} bytes" in event.message and "not kept" in event.message
    deep = b'{"type":"tree","t":' + b"[" * 40 + b"]" * 40 + b"}"
    (event,) = accept(deep)
    assert isinstance(event, AgentEvent) and event.details is None
    assert "nested over 16 levels" in event.message


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"type":"gpu_metrics","vm_id":"another-vm"}', Reason.VM_MISMATCH),
        (b'{"type":"gpu_metrics","vmId":"another-vm"}', Reason.VM_MISMATCH),
        (b'{"type":"gpu_metrics","vm_id":""}', Reason.SCHEMA_VIOLATION),
        (b'{"type":"gpu_metrics","vm_id":["' + VM.encode() + b'"]}', Reason.SCHEMA_VIOLATION),
        (b'{"type":"' + b"t" * 257 + b'"}', Reason.TOO_LARGE),
        (b'{"type":""}', Reason.MISSING_TYPE),
        (b'{"type":["gpu_metrics"]}', Reason.MISSING_TYPE),
        (b'{"type":"gpu_metrics","x":[1,2}', Reason.INVALID_JSON),
        (b'{"type":"gpu_metrics","x":NaN}', Reason.NON_FINITE_NUMBER),
        (b'{"type":"gpu_metrics","x":"\xff"}', Reason.INVALID_UTF8),
        (b'{"type":"gpu_metrics","x":"\\ud800"}', Reason.INVALID_JSON),  # lone surrogate
        (b'{"type":"gpu_metrics","x":' + b"[" * 50_000 + b"]" * 50_000 + b"}", Reason.TOO_DEEP),
        (b'[{"type":"gpu_metrics"}]', Reason.NOT_AN_OBJECT),
        (b'{"type":"gpu_metrics"} {"type":"x"}', Reason.INVALID_JSON),
    ],
)
def test_malformed_or_forged_unknown_messages_stay_in_the_dlq(raw: bytes, reason: Reason) -> None:
    assert reject(raw).reason == reason


# --- properties ---

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
RESERVED = {"type", "vm_id", "vmId", "timestamp"}
instants = st.datetimes(
    min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2099, 1, 1), timezones=st.just(dt.UTC)
)


@FAST
@given(
    st.text(min_size=1, max_size=256).filter(lambda t: t not in KNOWN),
    st.dictionaries(st.text(max_size=8).filter(lambda k: k not in RESERVED), json_values),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_any_well_formed_object_of_an_unknown_type_is_kept(
    type_name: str, fields: dict[str, Any], own_vm: bool, rnd: Any
) -> None:
    msg = {"type": type_name, **fields}
    if own_vm:
        msg["vm_id"] = VM
    items = list(msg.items())
    rnd.shuffle(items)  # wherever `type` stands
    line = json.dumps(dict(items), ensure_ascii=rnd.random() < 0.5).encode()
    (event,) = accept(line)
    assert isinstance(event, AgentEvent) and event.event_type == "unrecognized"
    assert event.message_type == type_name and event.vm_id == VM
    assert len(line) < UNRECOGNIZED_KEPT_MAX  # small and shallow: kept whole
    assert event.details is not None and json.loads(event.details) == json.loads(line)


@FAST
@given(st.text(min_size=1, max_size=256), st.text(max_size=300), instants)
def test_connection_status_keeps_state_details_and_time(
    state: str, details: str, when: dt.datetime
) -> None:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}789+00:00"
    msg = {"details": details, "state": state, "timestamp": stamp, "type": "connection_status"}
    (event,) = accept(json.dumps({**msg, "vm_id": VM}).encode())
    assert isinstance(event, AgentEvent) and event.state == state
    assert event.message == (details or state) and event.agent_ts == when


@FAST
@given(st.integers(0, 2**63 - 1), st.one_of(st.none(), instants))
def test_ping_keeps_its_sequence(sequence: int, when: dt.datetime | None) -> None:
    msg: dict[str, Any] = {"sequence": sequence, "type": "ping"}
    if when is not None:
        msg["timestamp"] = when.isoformat()
    (ping,) = accept(json.dumps(msg).encode())
    assert isinstance(ping, KeepAlive) and ping.sequence_number == sequence
    assert ping.agent_ts == when


@FAST
@given(
    st.sampled_from(["Closed", "Open", "HalfOpen"]),
    st.integers(0, 2**32 - 1),
    st.one_of(st.none(), st.integers(946_684_800, 4_102_444_799)),
    st.one_of(st.none(), st.integers(0, 2**63 - 1)),
)
def test_circuit_breaker_keeps_its_figures(
    state: str, failures: int, last_failure: int | None, eta: int | None
) -> None:
    msg = {
        "failure_count": failures,
        "last_failure_time": last_failure,
        "recovery_eta_seconds": eta,
        "state": state,
        "timestamp": int(T),
        "type": "circuit_breaker_state",
    }
    (event,) = accept(json.dumps(msg).encode())
    assert isinstance(event, AgentEvent) and event.state == state
    assert json.loads(event.details or "") == {
        "failure_count": failures,
        "last_failure_time": last_failure,
        "recovery_eta_seconds": eta,
    }
