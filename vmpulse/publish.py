"""The platform's side: publish resource events and keep the directory current.

The platform backend (mutations, cron jobs) calls :func:`publish_event` after
it changed something, and :func:`put_record` / :func:`delete_record` when
users, VMs or departments change. Everything is validated here, before it
reaches Kafka, so a typo fails in the caller and not silently in the worker.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from schemas.directory import Department, User, Vm, directory_key, encode_record
from schemas.events import ResourceEvent, routing_key
from schemas.topics import Topics

__all__ = [
    "DIRECTORY_KINDS",
    "PublishError",
    "check_id",
    "delete_record",
    "make_event",
    "publish_event",
    "put_record",
    "send_event",
]

DIRECTORY_KINDS = ("user", "vm", "department")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ID_MAX = 256
_encoder = msgspec.json.Encoder()


class PublishError(ValueError):
    """The event or record is malformed; the message says what to fix."""


def check_id(what: str, value: str) -> str:
    """``value`` if it is a plausible id (printable, no surrounding blanks, bounded)."""
    if not value or len(value) > _ID_MAX or not value.isprintable() or value != value.strip():
        raise PublishError(f"{what} must be 1-{_ID_MAX} printable characters, got {value!r}")
    return value


def make_event(
    resource: str, action: str, data: Any = None, triggered_by: str | None = None
) -> ResourceEvent:
    """A validated ResourceEvent: lowercase names, JSON-encodable data, a plausible user id."""
    for what, name in (("resource", resource), ("action", action)):
        if not isinstance(name, str) or not _NAME.match(name):
            raise PublishError(f"{what} must match {_NAME.pattern}, got {name!r}")
    if triggered_by is not None:
        check_id("triggered_by", triggered_by)
    try:
        _encoder.encode(data)
    except (TypeError, msgspec.EncodeError) as exc:
        raise PublishError(f"data is not JSON-encodable: {exc}") from exc
    return ResourceEvent(resource=resource, action=action, data=data, triggered_by=triggered_by)


async def publish_event(
    producer: AIOKafkaProducer,
    topics: Topics,
    resource: str,
    action: str,
    data: Any = None,
    triggered_by: str | None = None,
) -> ResourceEvent:
    """Publish one resource event to ``control.events`` (key = resource id); wait for the ack."""
    event = make_event(resource, action, data, triggered_by)
    await send_event(producer, topics, event)
    return event


async def send_event(producer: AIOKafkaProducer, topics: Topics, event: ResourceEvent) -> None:
    """Send an already validated event (see :func:`make_event`) and wait for the ack."""
    await producer.send_and_wait(
        topics.control_events, _encoder.encode(event), key=routing_key(event).encode()
    )


async def put_record(
    producer: AIOKafkaProducer, topics: Topics, record: User | Vm | Department
) -> None:
    """Upsert a user, VM or department (the compacted topic keeps the latest per key)."""
    check_id(f"{type(record).__name__.lower()} id", record.id)
    if isinstance(record, User) and record.role not in ("user", "admin"):
        raise PublishError(f"role must be 'user' or 'admin', got {record.role!r}")
    await producer.send_and_wait(
        topics.directory, encode_record(record), key=directory_key(record).encode()
    )


async def delete_record(producer: AIOKafkaProducer, topics: Topics, kind: str, ident: str) -> None:
    """Delete a directory record: a tombstone (null value) for its key."""
    if kind not in DIRECTORY_KINDS:
        raise PublishError(f"kind must be one of {', '.join(DIRECTORY_KINDS)}, got {kind!r}")
    check_id(f"{kind} id", ident)
    await producer.send_and_wait(topics.directory, None, key=f"{kind}:{ident}".encode())
