"""Check real Kafka records and Socket.IO events against schemas/asyncapi.json.

The document's payload, key and header schemas are JSON Schema draft-07 (the
AsyncAPI Schema Object is a superset of it); python-jsonschema validates
against them in place, ``$ref`` resolved inside the document. The official
AsyncAPI 3.0.0 JSON Schema comes from npm ``@asyncapi/specs``, installed by
gateway/client's package.json (``make dashboard`` / ``npm ci``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import referencing
from referencing.jsonschema import DRAFT7

from schemas.asyncapi import DOCUMENT_PATH, EVENT_PATTERN

__all__ = ["ASYNCAPI_SPEC", "Contract", "asyncapi_spec"]

_ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_SPEC = _ROOT / "gateway/client/node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json"
_URI = "urn:vmpulse:asyncapi"


def asyncapi_spec() -> dict[str, Any]:
    """The official JSON Schema of AsyncAPI 3.0.0 (from npm @asyncapi/specs)."""
    if not ASYNCAPI_SPEC.exists():
        raise AssertionError(
            f"{ASYNCAPI_SPEC} is missing: install gateway/client's packages "
            "(`make dashboard`, or `npm ci` in gateway/client)"
        )
    data: dict[str, Any] = json.loads(ASYNCAPI_SPEC.read_text())
    return data


class Contract:
    """The committed AsyncAPI document, asked which of its messages a real one is."""

    def __init__(self, path: Path = DOCUMENT_PATH) -> None:
        self.doc: dict[str, Any] = json.loads(path.read_text())
        resource = referencing.Resource.from_contents(self.doc, default_specification=DRAFT7)
        self._registry: referencing.Registry[Any] = referencing.Registry().with_resource(
            _URI, resource
        )
        self._validators: dict[str, jsonschema.Draft7Validator] = {}

    def errors(self, pointer: str, instance: Any) -> list[str]:
        """Why ``instance`` does not validate against the schema at ``pointer`` (``/a/b``)."""
        validator = self._validators.get(pointer)
        if validator is None:
            validator = jsonschema.Draft7Validator(
                {"$ref": f"{_URI}#{pointer}"}, registry=self._registry
            )
            self._validators[pointer] = validator
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
            for e in validator.iter_errors(instance)
        ]

    def _message_ids(self, channel: str) -> list[str]:
        refs = self.doc["channels"][channel]["messages"].values()
        return [str(ref["$ref"]).rsplit("/", 1)[1] for ref in refs]

    def kafka_message(
        self,
        channel: str,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes] | None = None,
    ) -> str:
        """The id of the channel's message this record is; AssertionError says why none."""
        why: dict[str, list[str]] = {}
        text_headers = {k: v.decode() for k, v in (headers or {}).items()}
        for mid in self._message_ids(channel):
            msg = self.doc["components"]["messages"][mid]
            base = f"/components/messages/{mid}"
            problems = self.errors(f"{base}/bindings/kafka/key", _text(key))
            if "headers" in msg:
                problems += self.errors(f"{base}/headers", text_headers)
            problems += self.errors(f"{base}/payload", _payload(msg, value))
            if not problems:
                return mid
            why[mid] = problems
        raise AssertionError(f"record on {channel} (key {key!r}) matches no message: {why}")

    def socketio_event(self, event: str, payload: Any) -> str:
        """The id of the server->client message this event is."""
        why: dict[str, list[str]] = {}
        for mid in self._sent_by_server():
            msg = self.doc["components"]["messages"][mid]
            pattern = msg.get(EVENT_PATTERN)
            named = re.fullmatch(pattern, event) if pattern else msg["name"] == event
            if not named:
                continue
            problems = self.errors(f"/components/messages/{mid}/payload", payload)
            if not problems:
                return mid
            why[mid] = problems
        raise AssertionError(f"event {event!r} matches no message: {why or 'no such name'}")

    def ack(self, event: str, payload: Any) -> str:
        """The id of the reply message the ack of client event ``event`` is."""
        why: dict[str, list[str]] = {}
        for op in self.doc["operations"].values():
            if op["action"] != "receive" or "reply" not in op:
                continue
            request = self.doc["components"]["messages"][_id(op["messages"][0])]
            pattern = request.get(EVENT_PATTERN)
            if not (re.fullmatch(pattern, event) if pattern else request["name"] == event):
                continue
            for ref in op["reply"]["messages"]:
                mid = _id(ref)
                problems = self.errors(f"/components/messages/{mid}/payload", payload)
                if not problems:
                    return mid
                why[mid] = problems
        raise AssertionError(f"ack of {event!r} matches no reply: {why or 'no such request'}")

    def client_event(self, event: str, payload: Any) -> str:
        """The id of the client->server message this event is."""
        for op in self.doc["operations"].values():
            if op["action"] != "receive" or op["channel"]["$ref"] != "#/channels/socketio":
                continue
            for ref in op["messages"]:
                mid = _id(ref)
                msg = self.doc["components"]["messages"][mid]
                pattern = msg.get(EVENT_PATTERN)
                if (re.fullmatch(pattern, event) if pattern else msg["name"] == event) and (
                    not self.errors(f"/components/messages/{mid}/payload", payload)
                ):
                    return mid
        raise AssertionError(f"client event {event!r} {payload!r} matches no message")

    def _sent_by_server(self) -> list[str]:
        return [
            _id(ref)
            for op in self.doc["operations"].values()
            if op["action"] == "send" and op["channel"]["$ref"] == "#/channels/socketio"
            for ref in op["messages"]
        ]


def _id(ref: Mapping[str, str]) -> str:
    return ref["$ref"].rsplit("/", 1)[1]


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def _payload(msg: Mapping[str, Any], value: bytes | None) -> Any:
    if value is None:
        return None
    if msg.get("contentType") == "application/json":
        try:
            return json.loads(value)
        except ValueError:
            return _Undecodable()
    return value.decode()


class _Undecodable:
    """Not JSON: matches no JSON schema but ``{}``."""

    def __repr__(self) -> str:
        return "<not JSON>"
