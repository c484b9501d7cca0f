"""The gateway against a real Socket.IO client, a real aiohttp server and the real broker.

Each test gets its own topic prefix (conftest ``settings``), seeds the directory
topic before the gateway starts (the gateway opens only once it has read the
directory), and talks to it over TCP exactly as a browser would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import socketio

from gateway.api import Query
from gateway.auth import issue_token
from gateway.rooms import user_namespace
from gateway.service import GatewayService
from schemas.directory import User, Vm, directory_key, encode_record
from schemas.events import OutboundEvent, encode_outbound
from schemas.topics import Topics
from vmpulse.config import Secret, Settings
from vmpulse.kafka_io import make_producer

pytestmark = pytest.mark.integration

DEADLINE_S = 5.0
DIRECTORY: list[User | Vm] = [
    User(id="root", name="Root", role="admin"),
    User(id="alice", name="Alice", department="eng"),
    User(id="bob", name="Bob", department="ops"),
    Vm(id="vm-a", name="alpha", owner="alice", department="eng"),
    Vm(id="vm-b", name="beta", owner="bob", department="ops"),
]


class Recorder:
    """Every event a client receives, and a way to wait for one with a deadline."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._waiters: list[tuple[str, asyncio.Future[Any]]] = []

    async def record(self, event: str, *args: Any) -> None:
        payload = args[0] if len(args) == 1 else args
        self.events.append((event, payload))
        for name, fut in list(self._waiters):
            if name == event and not fut.done():
                fut.set_result(payload)
                self._waiters.remove((name, fut))

    async def wait_for(self, event: str) -> Any:
        for name, payload in self.events:
            if name == event:
                return payload
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append((event, fut))
        return await asyncio.wait_for(fut, DEADLINE_S)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


class Client:
    """A socketio.AsyncClient plus what it received and why it was refused."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received = Recorder()
        self.refusal: Any = None
        self.sio.on("*", self.received.record)
        self.sio.on("connect_error", self._refused)

    async def _refused(self, data: Any) -> None:
        self.refusal = data


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        if client.sio.connected:
            await client.sio.disconnect()


async def _produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(settings.kafka_bootstrap or "", linger_ms=0)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def _running(
    settings: Settings, topics: Topics, query: Query | None = None
) -> AsyncIterator[GatewayService]:
    await _produce(
        settings,
        topics.directory,
        [(directory_key(r).encode(), encode_record(r)) for r in DIRECTORY],
    )
    service = GatewayService(settings, query=query)
    await service.start()
    try:
        yield service
    finally:
        await asyncio.wait_for(service.stop(), DEADLINE_S)


@pytest.fixture
async def gateway(settings: Settings, topics_ready: Topics) -> AsyncIterator[GatewayService]:
    async with _running(settings, topics_ready) as service:
        yield service


async def _until(condition: Callable[[], bool]) -> None:
    """Poll a condition the server exposes no event for; callers bound it with a deadline."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


def _unpositioned(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "position"}


def _token(settings: Settings, user_id: str, secret: Secret | None = None) -> str:
    return issue_token(secret or settings.jwt_secret, user_id)


async def _connect(
    gateway: GatewayService,
    clients: list[Client],
    *,
    auth: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Client:
    client = Client()
    clients.append(client)
    await client.sio.connect(
        gateway.url, auth=auth, headers=headers or {}, transports=["websocket"], wait_timeout=5
    )
    return client


async def _refused(gateway: GatewayService, clients: list[Client], **kwargs: Any) -> Any:
    with pytest.raises(socketio.exceptions.ConnectionError):
        await _connect(gateway, clients, **kwargs)
    return clients[-1].refusal


async def _publish(settings: Settings, *events: OutboundEvent, key: bytes = b"k") -> None:
    """Same key for all: one partition, so the gateway handles them in this order."""
    topic = Topics(settings.topic_prefix).events_outbound
    await _produce(settings, topic, [(key, encode_outbound(e)) for e in events])


async def test_connect_without_token_is_refused(
    gateway: GatewayService, clients: list[Client]
) -> None:
    refusal = await _refused(gateway, clients)
    assert refusal == {"message": "Authentication token required"}


async def test_connect_with_bad_signature_is_refused(
    settings: Settings, gateway: GatewayService, clients: list[Client]
) -> None:
    forged = _token(settings, "root", Secret("not-the-gateway-secret-" + "x" * 40))
    refusal = await _refused(gateway, clients, auth={"token": forged})
    assert refusal == {"message": "Authentication failed"}


async def test_connect_as_unknown_user_is_refused(
    settings: Settings, gateway: GatewayService, clients: list[Client]
) -> None:
    refusal = await _refused(gateway, clients, auth={"token": _token(settings, "mallory")})
    assert refusal == {"message": "User not found"}


async def test_admin_connects_and_is_greeted(
    settings: Settings, gateway: GatewayService, clients: list[Client]
) -> None:
    client = await _connect(
        gateway, clients, headers={"Authorization": f"Bearer {_token(settings, 'root')}"}
    )
    greeting = await client.received.wait_for("connected")
    assert greeting["namespace"] == user_namespace(settings.jwt_secret, "root")
    assert greeting["user"] == {"id": "root", "name": "Root", "role": "admin"}
    assert greeting["message"] and greeting["timestamp"]
    rooms = gateway.sio.rooms(client.sio.get_sid("/"))
    assert "admin" in rooms and greeting["namespace"] in rooms


async def test_subscribe_and_receive_metrics_only_for_allowed_vm(
    settings: Settings, gateway: GatewayService, clients: list[Client]
) -> None:
    alice = await _connect(gateway, clients, auth={"token": _token(settings, "alice")})
    await alice.received.wait_for("connected")
    assert await alice.sio.call("subscribe", {"vmId": "vm-a"}, timeout=DEADLINE_S) == {
        "ok": True,
        "error": None,
    }
    denied = await alice.sio.call("subscribe", {"vmId": "vm-b"}, timeout=DEADLINE_S)
    assert denied["ok"] is False and denied["error"]
    bad = await alice.sio.call("subscribe", {"vmId": 42}, timeout=DEADLINE_S)
    assert bad["ok"] is False

    sample_b = {"vmId": "vm-b", "metrics": {"cpu": 99.0}, "timestamp": "2026-01-01T00:00:00Z"}
    sample_a = {"vmId": "vm-a", "metrics": {"cpu": 12.5}, "timestamp": "2026-01-01T00:00:01Z"}
    await _publish(
        settings,
        OutboundEvent(resource="metrics", action="update", data=sample_b, rooms=["vm:vm-b"]),
        OutboundEvent(resource="metrics", action="update", data=sample_a, rooms=["vm:vm-a"]),
    )
    # vm-b's sample was handled first: had alice been in its room, it would be here already.
    got = await alice.received.wait_for("metricsUpdate")
    assert _unpositioned(got) == sample_a and got["position"]
    assert [_unpositioned(p) for n, p in alice.received.events if n == "metricsUpdate"] == [
        sample_a
    ]

    recent = await alice.sio.call("metrics:recent", {"vmId": "vm-a", "count": 5})
    assert recent == {"ok": True, "error": None, "vmId": "vm-a", "samples": [sample_a]}
    assert (await alice.sio.call("metrics:recent", {"vmId": "vm-b"}))["ok"] is False
    assert await alice.sio.call("unsubscribe", {"vmId": "vm-a"}) == {"ok": True, "error": None}
    assert "vm:vm-a" not in gateway.sio.rooms(alice.sio.get_sid("/"))


async def test_resource_event_reaches_named_user_only(
    settings: Settings, gateway: GatewayService, clients: list[Client]
) -> None:
    alice = await _connect(gateway, clients, auth={"token": _token(settings, "alice")})
    bob = await _connect(gateway, clients, auth={"token": _token(settings, "bob")})
    alice_ns = (await alice.received.wait_for("connected"))["namespace"]
    bob_ns = (await bob.received.wait_for("connected"))["namespace"]

    update = OutboundEvent(resource="vms", action="update", data={"id": "vm-a"}, users=["alice"])
    sentinel = OutboundEvent(resource="vms", action="power_on", users=["bob"])
    await _publish(settings, update, sentinel)

    assert _unpositioned(await alice.received.wait_for(f"{alice_ns}:vms:update")) == (
        update.payload()
    )
    await bob.received.wait_for(f"{bob_ns}:vms:power_on")
    assert bob.received.names() == ["connected", f"{bob_ns}:vms:power_on"]


async def test_undecodable_record_does_not_stop_delivery(
    settings: Settings, gateway: GatewayService, clients: list[Client]
) -> None:
    alice = await _connect(gateway, clients, auth={"token": _token(settings, "alice")})
    alice_ns = (await alice.received.wait_for("connected"))["namespace"]
    topic = Topics(settings.topic_prefix).events_outbound
    await _produce(settings, topic, [(b"k", b"{not json"), (b"k", b'{"resource": 1}')])
    await _publish(settings, OutboundEvent(resource="vms", action="create", users=["alice"]))
    await alice.received.wait_for(f"{alice_ns}:vms:create")
    assert gateway.consumer.skipped == 2


async def test_healthz(gateway: GatewayService) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}


async def test_api_vms_lists_only_visible_vms(settings: Settings, gateway: GatewayService) -> None:
    async def vms(user_id: str) -> list[str]:
        headers = {"Authorization": f"Bearer {_token(settings, user_id)}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{gateway.url}/api/vms", headers=headers) as resp,
        ):
            assert resp.status == 200
            return sorted(vm["id"] for vm in (await resp.json())["vms"])

    assert await vms("alice") == ["vm-a"]
    assert await vms("bob") == ["vm-b"]
    assert await vms("root") == ["vm-a", "vm-b"]


async def test_api_vms_requires_a_valid_token(gateway: GatewayService) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/api/vms") as resp:
            assert resp.status == 401
            assert await resp.json() == {"error": "Authentication token required"}
        headers = {"Authorization": "Bearer not.a.jwt"}
        async with http.get(f"{gateway.url}/api/vms", headers=headers) as resp:
            assert resp.status == 401
            assert await resp.json() == {"error": "Authentication failed"}


async def test_api_query_is_admin_only_and_needs_a_store(
    settings: Settings, gateway: GatewayService
) -> None:
    async with aiohttp.ClientSession() as http:
        for user_id, status in (("alice", 403), ("root", 503)):
            headers = {"Authorization": f"Bearer {_token(settings, user_id)}"}
            async with http.post(
                f"{gateway.url}/api/query", json={"sql": "SELECT 1"}, headers=headers
            ) as resp:
                assert resp.status == status


async def test_api_query_runs_read_only_sql_through_the_store(
    settings: Settings, topics_ready: Topics
) -> None:
    seen: list[str] = []

    async def query(sql: str) -> dict[str, Any]:
        seen.append(sql)
        return {"columns": ["one"], "rows": [[1]]}

    url_headers = {"Authorization": f"Bearer {_token(settings, 'root')}"}
    async with _running(settings, topics_ready, query) as gw, aiohttp.ClientSession() as http:
        async with http.post(
            f"{gw.url}/api/query", json={"sql": "SELECT 1;"}, headers=url_headers
        ) as resp:
            assert resp.status == 200
            assert await resp.json() == {"columns": ["one"], "rows": [[1]]}
        async with http.post(
            f"{gw.url}/api/query", json={"sql": "DROP TABLE metrics"}, headers=url_headers
        ) as resp:
            assert resp.status == 400
            assert "error" in await resp.json()
        async with http.post(f"{gw.url}/api/query", data=b"nope", headers=url_headers) as resp:
            assert resp.status == 400
    assert seen == ["SELECT 1"]


async def test_subscription_is_dropped_when_the_directory_takes_access_away(
    settings: Settings, gateway: GatewayService, clients: list[Client]
) -> None:
    alice = await _connect(gateway, clients, auth={"token": _token(settings, "alice")})
    await alice.received.wait_for("connected")
    assert (await alice.sio.call("subscribe", {"vmId": "vm-a"}))["ok"] is True
    sid = alice.sio.get_sid("/")
    assert "vm:vm-a" in gateway.sio.rooms(sid)

    moved = Vm(id="vm-a", name="alpha", owner="bob", department="ops")
    await _produce(
        settings,
        Topics(settings.topic_prefix).directory,
        [(directory_key(moved).encode(), encode_record(moved))],
    )

    await asyncio.wait_for(_until(lambda: "vm:vm-a" not in gateway.sio.rooms(sid)), DEADLINE_S)


async def test_stop_leaves_no_tasks_behind(settings: Settings, topics_ready: Topics) -> None:
    before = asyncio.all_tasks()
    async with _running(settings, topics_ready) as gw:
        client = Client()
        await client.sio.connect(
            gw.url, auth={"token": _token(settings, "alice")}, transports=["websocket"]
        )
        await client.received.wait_for("connected")
        # The client stays connected: stopping the gateway must not wait for it.
    await client.sio.disconnect()
    leftover = {
        t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()
    }
    assert not leftover, leftover
