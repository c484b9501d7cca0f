"""The AsyncAPI 3.0 document of vmpulse's Kafka topics and Socket.IO events, from the Structs.

``python -m schemas.asyncapi`` writes ``schemas/asyncapi.json``; ``--check``
exits 1 when the file is stale. Every payload, key and header schema comes from
the msgspec Structs the stages encode and decode with (msgspec's JSON Schema,
put into AsyncAPI's Schema form), so the document cannot say what the code
does not do. Tests hold it there (tests/unit/schemas/test_asyncapi.py,
tests/integration/schemas/test_contract_traffic.py): the committed file is the
rendered one, it validates against the official AsyncAPI 3.0.0 JSON Schema
(npm ``@asyncapi/specs``), and the records and events of a running pipeline
validate against its payloads.

The document describes vmpulse as one application: ``send`` operations are
what a vmpulse stage writes, ``receive`` what one reads. Topic names are shown
without the optional prefix (``VMPULSE_TOPIC_PREFIX``). The HTTP API has its
own document, schemas/openapi.json (gateway/openapi.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

import msgspec

from schemas.agent import AgentMessage, Envelope
from schemas.dialect1 import DIALECT1
from schemas.dialect2 import DIALECT2
from schemas.directory import Department, User, Vm
from schemas.dlq import DlqRecord, Reason
from schemas.events import METRICS_EVENT, OutboundEvent, ResourceEvent
from schemas.hypervisor import STATES, HypervisorEvent
from schemas.live import LiveData
from schemas.socketio import (
    CLIENT_EVENTS,
    Ack,
    ConnectAuth,
    Connected,
    ConnectRefusal,
    MetricsUpdate,
    RecentAck,
    RecentRequest,
    ResourcePayload,
    Resumed,
    Resync,
    SessionEnded,
    VmRequest,
)
from schemas.topics import Topics
from schemas.worker_state import VmSnapshot

__all__ = ["DOCUMENT_PATH", "EVENT_PATTERN", "document", "render", "stale", "write"]

DOCUMENT_PATH: Final = Path(__file__).resolve().parent / "asyncapi.json"
EVENT_PATTERN: Final = "x-event-pattern"
"""Extension on a Socket.IO message whose event name varies: the regular expression of it."""

_SCHEMA_REF = "#/components/schemas/{name}"
_KAFKA_BINDING = "0.5.0"
_TOPICS = Topics()


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/{kind}/{name}"}


def _asyncapi_schema(node: Any) -> Any:
    """msgspec's JSON Schema (2020-12 flavoured) in AsyncAPI's Schema form (draft-07).

    Two keywords differ: a tagged union's ``discriminator`` is an object in
    OpenAPI but the property name in AsyncAPI; a fixed tuple's ``prefixItems``
    is draft-07's array form of ``items``.
    """
    if isinstance(node, list):
        return [_asyncapi_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _asyncapi_schema(v) for k, v in node.items()}
    disc = out.get("discriminator")
    if isinstance(disc, dict):
        out["discriminator"] = disc["propertyName"]
    if "prefixItems" in out:
        out["items"] = out.pop("prefixItems")
        out["additionalItems"] = False
    return out


def _schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(named entry schemas, every component schema) from the Structs."""
    entries: dict[str, Any] = {
        "AgentMessage": AgentMessage,
        "Envelope": Envelope,
        "OutboundEvent": OutboundEvent,
        "ResourceEvent": ResourceEvent,
        "User": User,
        "Vm": Vm,
        "Department": Department,
        "DlqRecord": DlqRecord,
        "HypervisorEvent": HypervisorEvent,
        "VmSnapshot": VmSnapshot,
        "LiveData": LiveData,
        "ConnectAuth": ConnectAuth,
        "ConnectRefusal": ConnectRefusal,
        "Connected": Connected,
        "ResourcePayload": ResourcePayload,
        "MetricsUpdate": MetricsUpdate,
        "Resumed": Resumed,
        "Resync": Resync,
        "SessionEnded": SessionEnded,
        "VmRequest": VmRequest,
        "RecentRequest": RecentRequest,
        "Ack": Ack,
        "RecentAck": RecentAck,
    }
    tops, components = msgspec.json.schema_components(
        tuple(entries.values()), ref_template=_SCHEMA_REF
    )
    named = dict(zip(entries, tops, strict=True))
    return named, components


def _components_schemas() -> dict[str, Any]:
    named, components = _schemas()
    known = sorted(str(t.__struct_config__.tag) for t in (*DIALECT1, *DIALECT2))
    union = dict(named["AgentMessage"])
    union["title"] = "AgentMessage"
    union["description"] = "A message of a known `type`, either dialect (PROTOCOL.md)."
    components["AgentMessage"] = union
    envelope = json.loads(json.dumps(components["Envelope"]))
    envelope["title"] = "Unrecognized"
    envelope["description"] = (
        "A well-formed object of another `type` (1..256 characters; `vm_id` / `vmId`, if "
        "present, naming the connection's VM): stored and counted as an `unrecognized` "
        "agent event, never dead-lettered (docs/PROTOCOL_VALIDATION.md)."
    )
    envelope["properties"]["type"]["not"] = {"enum": known}
    components["Unrecognized"] = envelope
    components["AgentLine"] = {
        "title": "AgentLine",
        "description": "One line an agent wrote, byte for byte, without its newline: what the "
        "worker accepts (anything else goes to agent.dlq with a reason).",
        "anyOf": [
            _ref("components/schemas", "AgentMessage"),
            _ref("components/schemas", "Unrecognized"),
        ],
    }
    components["DlqRecord"]["properties"]["reason"]["enum"] = sorted(r.value for r in Reason)
    components["HypervisorEvent"]["properties"]["state"]["description"] = (
        "Power state after the change; a reader keeps one it does not know as `unknown`."
    )
    components["HypervisorEvent"]["properties"]["state"]["examples"] = sorted(STATES)
    return {name: _asyncapi_schema(components[name]) for name in sorted(components)}


def _text(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


_VM_KEY = _text("The VM id (UTF-8): one VM's records stay in order.", minLength=1)
_BRIDGE_HEADERS: Final = {
    "transport": _text("How the line arrived: `unix`, `vsock` or `tcp`."),
    "peer": _text("The peer: the socket path, the vsock CID or the TCP address."),
    "received_at": _text("When the bridge read the line, epoch milliseconds.", pattern="^[0-9]+$"),
    "conn_id": _text("The connection, 32 hex digits.", pattern="^[0-9a-f]{32}$"),
    "line_no": _text("The line's number in its connection, from 1.", pattern="^[0-9]+$"),
}


def _headers(required: bool, **more: Any) -> dict[str, Any]:
    props = {**_BRIDGE_HEADERS, **more}
    return {
        "type": "object",
        "description": "Kafka record headers; values are UTF-8 bytes.",
        "properties": props,
        "required": sorted(props) if required else [],
    }


def _kafka_message(
    name: str,
    title: str,
    payload: Any,
    key: dict[str, Any],
    *,
    summary: str,
    headers: dict[str, Any] | None = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": content_type,
        "payload": payload,
        "bindings": {"kafka": {"key": key, "bindingVersion": _KAFKA_BINDING}},
    }
    if headers is not None:
        msg["headers"] = headers
    return msg


def _schema(name: str) -> dict[str, str]:
    return _ref("components/schemas", name)


def _kafka_messages() -> dict[str, Any]:
    directory_key = "Kafka key `{kind}:<id>`, the id being the record's `id`."
    return {
        "agentLine": _kafka_message(
            "agentLine",
            "Agent line",
            _schema("AgentLine"),
            _VM_KEY,
            summary="One line of a guest agent, byte for byte (the bridge parses nothing).",
            headers=_headers(True),
        ),
        "agentConnection": _kafka_message(
            "agentConnection",
            "Agent connection opened or closed",
            _text("Empty: the record is its headers.", maxLength=0),
            _VM_KEY,
            summary="A bridge control record for presence; never stored.",
            headers=_headers(
                True, control={"type": "string", "enum": ["connected", "disconnected"]}
            ),
            content_type="application/octet-stream",
        ),
        "outboundEvent": _kafka_message(
            "outboundEvent",
            "Outbound event",
            _schema("OutboundEvent"),
            _text("The id of the resource the event is about (a VM's for metrics)."),
            summary="An event with its recipients spelled out; every gateway reads them all.",
        ),
        **{
            f"directory{kind.title()}": _kafka_message(
                f"directory{kind.title()}",
                f"Directory {kind}",
                _schema(struct),
                _text(directory_key.format(kind=kind), pattern=f"^{kind}:.+$"),
                summary=f"The current record of one {kind} (the topic is compacted).",
            )
            for kind, struct in (("user", "User"), ("vm", "Vm"), ("department", "Department"))
        },
        "directoryTombstone": _kafka_message(
            "directoryTombstone",
            "Directory deletion",
            {"type": "null", "description": "A null value (tombstone) deletes the key."},
            _text("The key deleted.", pattern="^(user|vm|department):.+$"),
            summary="Deletes a user, VM or department.",
        ),
        "resourceEvent": _kafka_message(
            "resourceEvent",
            "Resource event",
            _schema("ResourceEvent"),
            _text("The resource's id."),
            summary="A change the platform made (create, update, power_on, ...).",
        ),
        "dlqRecord": _kafka_message(
            "dlqRecord",
            "Dead letter",
            _schema("DlqRecord"),
            _VM_KEY,
            summary="A refused line: stable reason code, detail, the raw bytes and their origin.",
            headers=_headers(False),
        ),
        "hypervisorEvent": _kafka_message(
            "hypervisorEvent",
            "VM lifecycle change",
            _schema("HypervisorEvent"),
            _VM_KEY,
            summary="A VM's power state after a libvirt event, or a reconciliation record.",
        ),
        "workerState": _kafka_message(
            "workerState",
            "Worker state of a VM",
            _schema("VmSnapshot"),
            _VM_KEY,
            summary="Presence and open alert breaches of one VM, for the next owner.",
        ),
    }


def _sio_message(
    name: str, payload: str, summary: str, *, pattern: str | None = None
) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "name": name,
        "summary": summary,
        "contentType": "application/json",
        "payload": _schema(payload),
    }
    if pattern is not None:
        msg[EVENT_PATTERN] = pattern
    return msg


def _sio_messages() -> dict[str, Any]:
    return {
        "connectAuth": _sio_message(
            "CONNECT", "ConnectAuth", "The `auth` of the client's CONNECT packet."
        ),
        "connectRefusal": _sio_message(
            "CONNECT_ERROR", "ConnectRefusal", "Why the connection was refused."
        ),
        "connected": _sio_message("connected", "Connected", "The first event of every socket."),
        "userResourceEvent": _sio_message(
            "<namespace>:<resource>:<action>",
            "ResourcePayload",
            "A resource event addressed to the user (or to every admin).",
            pattern="^user_[0-9a-f]{20}:[^:]+:.+$",
        ),
        "vmResourceEvent": _sio_message(
            "vm:<vmId>:<resource>:<action>",
            "ResourcePayload",
            "A resource event addressed to a VM's room (its subscribers).",
            pattern="^vm:.+:[^:]+:[^:]+$",
        ),
        "metricsUpdate": _sio_message(
            METRICS_EVENT, "MetricsUpdate", "A VM's latest sample, to its subscribers."
        ),
        "resumed": _sio_message("resumed", "Resumed", "A resume was served."),
        "resync": _sio_message("resync", "Resync", "A resume cannot be served: reload."),
        "sessionEnded": _sio_message(
            "session:ended", "SessionEnded", "The server is about to disconnect the socket."
        ),
        "subscribe": _sio_message("subscribe", "VmRequest", "Watch a VM's live metrics."),
        "subscribeAck": _sio_message("subscribe (ack)", "Ack", "The answer to `subscribe`."),
        "unsubscribe": _sio_message("unsubscribe", "VmRequest", "Stop watching a VM."),
        "unsubscribeAck": _sio_message("unsubscribe (ack)", "Ack", "The answer to `unsubscribe`."),
        "metricsRecent": _sio_message(
            "metrics:recent", "RecentRequest", "The latest samples of a VM."
        ),
        "metricsRecentAck": _sio_message(
            "metrics:recent (ack)", "RecentAck", "The answer to `metrics:recent`."
        ),
        "otherClientEvent": {
            "name": "<any other event>",
            "summary": "Any other client event: refused, never handled.",
            "payload": {},
            EVENT_PATTERN: "^(?!(" + "|".join(CLIENT_EVENTS) + ")$).*$",
        },
        "refusedAck": _sio_message(
            "(ack of a refused event)",
            "Ack",
            "`{ok: false, error}`: `Reserved event name` or `Unknown event`, if an ack was asked.",
        ),
    }


# channel id -> (topic, title, description, message ids, send summary, receive summary)
_KAFKA_CHANNELS: Final = (
    (
        "agentRaw",
        _TOPICS.agent_raw,
        "Agent lines",
        ["agentLine", "agentConnection"],
        "The bridge writes each agent line, keyed by the VM it authenticated.",
        "The worker validates, stores, aggregates and routes them.",
    ),
    (
        "hypervisorEvents",
        _TOPICS.hypervisor_events,
        "VM lifecycle",
        ["hypervisorEvent"],
        "The hypervisor watcher writes libvirt lifecycle changes.",
        "The worker turns them into `vms` events.",
    ),
    (
        "controlEvents",
        _TOPICS.control_events,
        "Platform events",
        ["resourceEvent"],
        "The platform backend (or `vmpulse emit`) writes resource changes.",
        "The worker routes them to the people they concern.",
    ),
    (
        "directory",
        _TOPICS.directory,
        "Who owns what (compacted)",
        ["directoryUser", "directoryVm", "directoryDepartment", "directoryTombstone"],
        "The platform backend (or `vmpulse directory put`) writes users, VMs, departments.",
        "The worker (routing) and every gateway (authorization) read the whole topic.",
    ),
    (
        "agentDlq",
        _TOPICS.agent_dlq,
        "Dead letters",
        ["dlqRecord"],
        "The bridge and the worker write every refused line with its reason.",
        "Operators read them (`vmpulse dlq`, the admin overview).",
    ),
    (
        "eventsOutbound",
        _TOPICS.events_outbound,
        "Events to deliver",
        ["outboundEvent"],
        "The worker writes every event with its recipients.",
        "Every gateway instance reads all partitions and emits to Socket.IO rooms.",
    ),
    (
        "workerState",
        _TOPICS.worker_state,
        "Worker state per VM (compacted)",
        ["workerState"],
        "A worker writes a VM's presence and alert state when it changes.",
        "The worker that takes a partition over reads it back first.",
    ),
)

# operation id -> (action, message ids, reply message ids or None, summary)
_SIO_OPERATIONS: Final = (
    ("receiveConnect", "receive", ["connectAuth"], None, "A client connects with its token."),
    ("sendConnectRefusal", "send", ["connectRefusal"], None, "A connection is refused."),
    ("sendConnected", "send", ["connected"], None, "Greets every accepted socket."),
    (
        "sendResourceEvents",
        "send",
        ["userResourceEvent", "vmResourceEvent"],
        None,
        "Delivers the resource events the worker addressed to the socket.",
    ),
    ("sendMetricsUpdate", "send", ["metricsUpdate"], None, "Live metrics of subscribed VMs."),
    ("sendResumeOutcome", "send", ["resumed", "resync"], None, "Ends a resume."),
    ("sendSessionEnded", "send", ["sessionEnded"], None, "Ends a session."),
    ("receiveSubscribe", "receive", ["subscribe"], ["subscribeAck"], "Subscribe to a VM."),
    ("receiveUnsubscribe", "receive", ["unsubscribe"], ["unsubscribeAck"], "Unsubscribe."),
    (
        "receiveMetricsRecent",
        "receive",
        ["metricsRecent"],
        ["metricsRecentAck"],
        "Latest samples of a VM.",
    ),
    (
        "receiveOtherEvent",
        "receive",
        ["otherClientEvent"],
        ["refusedAck"],
        "Any other client event is refused.",
    ),
)


def _channels_and_operations() -> tuple[dict[str, Any], dict[str, Any]]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    compacted = _TOPICS.compacted()
    for cid, topic, title, messages, sends, receives in _KAFKA_CHANNELS:
        config: dict[str, Any] = {"cleanup.policy": ["compact" if topic in compacted else "delete"]}
        channels[cid] = {
            "address": topic,
            "title": title,
            "description": f"Kafka topic `<prefix>{topic}`. {sends} {receives}",
            "servers": [_ref("servers", "kafka")],
            "messages": {m: _ref("components/messages", m) for m in messages},
            "bindings": {"kafka": {"topicConfiguration": config, "bindingVersion": _KAFKA_BINDING}},
        }
        refs = [_ref(f"channels/{cid}/messages", m) for m in messages]
        for action, summary in (("send", sends), ("receive", receives)):
            operations[f"{action}{cid[0].upper()}{cid[1:]}"] = {
                "action": action,
                "channel": _ref("channels", cid),
                "summary": summary,
                "messages": refs,
            }
    sio_messages = [m for op in _SIO_OPERATIONS for m in (*op[2], *(op[3] or ()))]
    channels["socketio"] = {
        "address": "/",
        "title": "Socket.IO, default namespace",
        "description": "Socket.IO v5 over Engine.IO v4 (websocket or polling) at `/socket.io/`. "
        "Event names and their first argument; client events are acknowledged (the `reply` of "
        "their operation). Prose: docs/SOCKETIO.md.",
        "servers": [_ref("servers", "gateway")],
        "messages": {m: _ref("components/messages", m) for m in dict.fromkeys(sio_messages)},
    }
    for oid, action, messages, reply, summary in _SIO_OPERATIONS:
        op: dict[str, Any] = {
            "action": action,
            "channel": _ref("channels", "socketio"),
            "summary": summary,
            "messages": [_ref("channels/socketio/messages", m) for m in messages],
        }
        if reply is not None:
            op["reply"] = {
                "channel": _ref("channels", "socketio"),
                "messages": [_ref("channels/socketio/messages", m) for m in reply],
            }
        operations[oid] = op
    return channels, operations


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document, as a JSON-ready dict."""
    channels, operations = _channels_and_operations()
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "vmpulse",
            "version": "0.1.0",
            "description": "Kafka topics and Socket.IO events of vmpulse, generated from the "
            "msgspec Structs (`python -m schemas.asyncapi`). The HTTP API: openapi.json beside "
            "this file. Overview: docs/CONTRACTS.md.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The Kafka cluster; topic names take `VMPULSE_TOPIC_PREFIX`.",
                "variables": {
                    "bootstrap": {
                        "default": "localhost:9092",
                        "description": "VMPULSE_KAFKA_BOOTSTRAP",
                    }
                },
            },
            "gateway": {
                "host": "{gateway}",
                "protocol": "ws",
                "pathname": "/socket.io/",
                "description": "A gateway instance (Socket.IO; authenticated with a JWT).",
                "variables": {
                    "gateway": {
                        "default": "127.0.0.1:8080",
                        "description": "VMPULSE_GATEWAY_ADDR",
                    }
                },
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": _components_schemas(),
            "messages": {**_kafka_messages(), **_sio_messages()},
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2) + "\n"


def stale(path: Path = DOCUMENT_PATH) -> bool:
    return not path.exists() or path.read_text() != render()


def write(path: Path = DOCUMENT_PATH) -> Path:
    path.write_text(render())
    return path


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if stale():
            print(f"{DOCUMENT_PATH} is stale; run python -m schemas.asyncapi")
            return 1
        return 0
    print(write())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
