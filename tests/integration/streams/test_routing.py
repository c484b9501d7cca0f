"""Routing end to end: platform events -> worker -> events.outbound -> gateway -> browsers.

Five real Socket.IO clients (an admin, a VM owner, a member of the VM's
department, the user who triggers things, and a stranger) connect to the real
gateway; the real worker routes what the platform publishes. Every rule must
reach exactly the people it names, and the stranger nothing.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator

import faust
import pytest

from gateway.service import GatewayService
from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.directory import Department, User, Vm
from schemas.topics import Topics
from vmpulse.publish import publish_event

from .browsers import Browser, gateway_with, metrics_line, until

pytestmark = pytest.mark.integration

PEOPLE = ("root", "alice", "dave", "trig", "stranger")
DIRECTORY: list[User | Vm | Department] = [
    Department(id="eng"),
    User(id="root", role="admin"),
    User(id="alice", department="eng"),  # owns vm-a
    User(id="dave", department="eng"),  # department member, watches vm-a
    User(id="trig", department="ops"),  # triggers things
    User(id="stranger", department="sales"),
    Vm(id="vm-a", owner="alice", department="eng"),
]


@pytest.fixture
async def gateway(settings: Settings, topics_ready: Topics) -> AsyncIterator[GatewayService]:
    async with gateway_with(settings, topics_ready, DIRECTORY) as service:
        yield service


@pytest.fixture
async def browsers(
    settings: Settings, gateway: GatewayService
) -> AsyncIterator[dict[str, Browser]]:
    made = {user: Browser(user) for user in PEOPLE}
    for browser in made.values():
        await browser.connect(settings, gateway.url)
    yield made
    for browser in made.values():
        if browser.sio.connected:
            await browser.sio.disconnect()


async def test_every_rule_reaches_exactly_the_people_it_names(
    settings: Settings,
    topics_ready: Topics,
    worker: faust.App,
    browsers: dict[str, Browser],
) -> None:
    dave = browsers["dave"]
    assert await dave.sio.call("subscribe", {"vmId": "vm-a"}, timeout=10) == {
        "ok": True,
        "error": None,
    }
    producer = make_producer(settings.kafka.bootstrap or "", linger_ms=0)
    await producer.start()
    try:
        sent = {
            "vm": await publish_event(
                producer, topics_ready, "vms", "update", {"id": "vm-a"}, "trig"
            ),
            "user": await publish_event(producer, topics_ready, "users", "update", {"id": "dave"}),
            "dept": await publish_event(
                producer, topics_ready, "departments", "update", {"id": "eng"}
            ),
            "app": await publish_event(
                producer, topics_ready, "applications", "create", {"id": "app1", "users": ["trig"]}
            ),
            "alert": await publish_event(
                producer, topics_ready, "alerts", "create", {"id": "al1", "vmId": "vm-a"}
            ),
        }
        # an agent line: a live metrics update for vm-a's watchers, and vm-a's agent online
        await producer.send_and_wait(
            topics_ready.agent_raw,
            metrics_line("vm-a", 12.5),
            key=b"vm-a",
            headers=[("transport", b"tcp"), ("received_at", b"0")],
        )

        expected: dict[str, list[str]] = {
            "root": ["ns:vms:update", "ns:vms:update", "ns:users:update",
                     "ns:departments:update", "ns:applications:create", "ns:alerts:create"],
            "alice": ["ns:vms:update", "ns:vms:update", "ns:departments:update",
                      "ns:alerts:create"],
            "dave": ["ns:vms:update", "ns:vms:update", "ns:users:update",
                     "ns:departments:update", "vm:vm-a:alerts:create", "metricsUpdate"],
            "trig": ["ns:vms:update", "ns:applications:create"],
            "stranger": [],
        }  # fmt: skip
        want = {u: collections.Counter(names) for u, names in expected.items()}
        await until(
            lambda: all(collections.Counter(browsers[u].names()) >= want[u] for u in PEOPLE),
            "every expected delivery",
        )
        # Everything above was delivered; an event for all five published now reaches each
        # socket after anything the gateway emitted before, so nothing else is in flight.
        last = await publish_event(
            producer, topics_ready, "applications", "update", {"id": "last", "users": list(PEOPLE)}
        )
        await until(
            lambda: all(b.got("ns:applications:update", last.id) for b in browsers.values()),
            "the closing event",
        )
    finally:
        await producer.stop()

    for user in PEOPLE:
        got = collections.Counter(browsers[user].names())
        got["ns:applications:update"] -= 1
        assert +got == want[user], user
    assert browsers["stranger"].names() == ["ns:applications:update"]

    # payloads: the event's data, id and time travel unchanged
    root_vm = [p for n, p in browsers["root"].events if n == "ns:vms:update"]
    assert any(p["id"] == sent["vm"].id and p["data"] == {"id": "vm-a"} for p in root_vm)
    presence = [p["data"] for p in root_vm if p["id"] != sent["vm"].id]
    assert presence == [{"vmId": "vm-a", "agentState": "online", "powerState": None}]
    metrics = [p for n, p in dave.events if n == "metricsUpdate"]
    assert metrics[0]["vmId"] == "vm-a"
    assert metrics[0]["metrics"]["cpu"]["usage_percent"] == 12.5


HOSTILE_PLATFORM_RECORDS = [
    b"",  # a tombstone where an event belongs
    b"{not json",
    b"[]",
    b'{"resource": "vms"}',  # no action
    b'{"resource": 1, "action": "update", "data": {}}',
    b'{"resource": "vms", "action": "update", "data": {"id": "vm-a"}, "id": ' + b"9" * 5000 + b"}",
    b"\xff\xfe" * 100,
]


async def test_malformed_platform_records_are_counted_and_the_next_event_still_routes(
    settings: Settings,
    topics_ready: Topics,
    worker: faust.App,
    browsers: dict[str, Browser],
) -> None:
    """The platform backend's boundary: raw records on control.events and hypervisor.events
    that no publisher of ours writes. The worker neither dies nor routes them; the event after
    them reaches its people."""
    producer = make_producer(settings.kafka.bootstrap or "", linger_ms=0)
    await producer.start()
    try:
        for raw in HOSTILE_PLATFORM_RECORDS:
            await producer.send_and_wait(topics_ready.control_events, raw, key=b"vm-a")
            await producer.send_and_wait(topics_ready.hypervisor_events, raw, key=b"vm-a")
        after = await publish_event(producer, topics_ready, "vms", "update", {"id": "vm-a"}, "trig")
        await until(
            lambda: browsers["alice"].got("ns:vms:update", after.id), "the event after them"
        )
    finally:
        await producer.stop()
    stats = worker.vmpulse_event_stages.stats
    # hypervisor.events has its own consumer (the ingest's), so it may still be at it
    await until(
        lambda: stats["bad_hypervisor"] >= len(HOSTILE_PLATFORM_RECORDS),
        "every hostile hypervisor record",
    )
    assert stats["bad_control"] == len(HOSTILE_PLATFORM_RECORDS)
    assert stats["bad_hypervisor"] == len(HOSTILE_PLATFORM_RECORDS)
    assert browsers["stranger"].names() == []
