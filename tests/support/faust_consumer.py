"""The aiokafka consumer under a running Faust app, for the tests of Faust's livelock check.

streams/faust_internals.py guards Faust's livelock detector against a
partition whose position aiokafka is resetting; the tests that reproduce that
state reach the same aiokafka objects Faust's check reads. Only tests read
them, and only through here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import msgspec
from aiokafka import TopicPartition
from aiokafka.consumer.subscription_state import TopicPartitionState

from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.events import ResourceEvent, decode_outbound
from schemas.topics import Topics
from tests.support.kafka import reading_from_start

__all__ = [
    "aiokafka_consumer",
    "fetched",
    "partition_state",
    "routed",
    "seek_past_the_end",
    "send_control_event",
]

DEADLINE_S = 60.0


def aiokafka_consumer(app: Any) -> Any:
    """The aiokafka consumer that Faust's consumer thread runs for ``app``."""
    return app.consumer._thread._consumer


def partition_state(app: Any, tp: TopicPartition) -> TopicPartitionState | None:
    """aiokafka's state of ``tp`` in the current assignment (None: not assigned)."""
    assignment = aiokafka_consumer(app)._fetcher._subscriptions.subscription.assignment
    return None if assignment is None else assignment.state_value(tp)


def fetched(app: Any, tps: Iterable[TopicPartition]) -> bool:
    """Every partition of ``tps`` assigned, positioned and fetched from at least once."""
    states = [partition_state(app, tp) for tp in tps]
    return all(s is not None and s.has_valid_position and s.timestamp for s in states)


async def seek_past_the_end(app: Any, tp: TopicPartition) -> None:
    """Make the next fetch of ``tp`` come back OFFSET_OUT_OF_RANGE from the broker.

    On the aiokafka consumer, in its own thread, and without Faust's bookkeeping
    of read offsets (which a failover's out-of-range answer does not touch either).
    """
    consumer = aiokafka_consumer(app)
    state = partition_state(app, tp)
    assert state is not None and state.highwater is not None, f"{tp} was never fetched"
    beyond = state.highwater + 1_000_000

    async def seek() -> None:
        consumer.seek(tp, beyond)

    await app.consumer._thread.call_thread(seek)


async def send_control_event(s: Settings, topics: Topics, partition: int) -> str:
    """A resource event on ``partition`` of control.events (the Faust app's topic); its id."""
    event = ResourceEvent(resource="vms", action="update", data={"id": f"vm-{partition}"})
    producer = make_producer(s.kafka.bootstrap or "", linger_ms=0)
    await producer.start()
    try:
        value = msgspec.json.encode(event)
        await producer.send_and_wait(topics.control_events, value, key=b"vm", partition=partition)
    finally:
        await producer.stop()
    return event.id


async def routed(s: Settings, topics: Topics, event_id: str) -> None:
    """Wait until the worker routed event ``event_id`` to events.outbound."""
    async with reading_from_start(s, [topics.events_outbound]) as consumer:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                if any(decode_outbound(r.value).id == event_id for r in records):
                    return
    raise AssertionError(f"control event {event_id} was not routed")
