"""The gateway against a real Socket.IO client, a real aiohttp server and the real broker.

Each test gets its own topic prefix (conftest ``settings``), seeds the directory
topic before the gateway starts (the gateway opens only once it has read the
directory), and talks to it over TCP exactly as a browser would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import socketio

from gateway.auth import issue_token
from gateway.rooms import user_namespace
from gateway.service import GatewayService
from infra.config import Secret, Settings
from schemas.directory import Vm
from schemas.events import OutboundEvent
from schemas.topics import Topics
from store.reader import Reader
from tests.integration.gateway.harness import (
    DEADLINE_S,
    DIRECTORY,
    Client,
    connect,
    publish,
    put_directory,
    running,
    token,
    until,
)
from tests.support.kafka import produce

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(settings: Settings, topics_ready: Topics) -> AsyncIterator[GatewayService]:
    await put_directory(settings, *DIRECTORY)
    async with running(settings) as service:
        yield service


def _unpositioned(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "position"}


async def _refused(gateway: GatewayService, opened: list[Client], **kwargs: Any) -> Any:
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(gateway.url, into=opened, **kwargs)
    return opened[-1].refusal


async def test_connect_without_token_is_refused(
    gateway: GatewayService, opened: list[Client]
) -> None:
    refusal = await _refused(gateway, opened)
    assert refusal == {"message": "Authentication token required"}


async def test_connect_with_bad_signature_is_refused(
    settings: Settings, gateway: GatewayService, opened: list[Client]
) -> None:
    forged = issue_token(Secret("not-the-gateway-secret-" + "x" * 40), "root")
    refusal = await _refused(gateway, opened, auth={"token": forged})
    assert refusal == {"message": "Authentication failed"}


async def test_connect_as_unknown_user_is_refused(
    settings: Settings, gateway: GatewayService, opened: list[Client]
) -> None:
    refusal = await _refused(gateway, opened, auth={"token": token(settings, "mallory")})
    assert refusal == {"message": "User not found"}


async def test_admin_connects_and_is_greeted(
    settings: Settings, gateway: GatewayService, opened: list[Client]
) -> None:
    client = await connect(
        gateway.url, headers={"Authorization": f"Bearer {token(settings, 'root')}"}, into=opened
    )
    greeting = await client.wait_for("connected")
    assert greeting["namespace"] == user_namespace(settings.tokens.secret, "root")
    assert greeting["user"] == {"id": "root", "name": "Root", "role": "admin"}
    assert greeting["message"] and greeting["timestamp"]
    rooms = gateway.sio.rooms(client.sio.get_sid("/"))
    assert "admin" in rooms and greeting["namespace"] in rooms


async def test_subscribe_and_receive_metrics_only_for_allowed_vm(
    settings: Settings, gateway: GatewayService, opened: list[Client]
) -> None:
    alice = await connect(gateway.url, {"token": token(settings, "alice")}, into=opened)
    await alice.wait_for("connected")
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
    await publish(
        settings,
        OutboundEvent(resource="metrics", action="update", data=sample_b, rooms=["vm:vm-b"]),
        OutboundEvent(resource="metrics", action="update", data=sample_a, rooms=["vm:vm-a"]),
    )
    # vm-b's sample was handled first: had alice been in its room, it would be here already.
    got = await alice.wait_for("metricsUpdate")
    assert _unpositioned(got) == sample_a and got["position"]
    assert [_unpositioned(p) for n, p in alice.events if n == "metricsUpdate"] == [sample_a]

    recent = await alice.sio.call("metrics:recent", {"vmId": "vm-a", "count": 5})
    assert recent == {"ok": True, "error": None, "vmId": "vm-a", "samples": [sample_a]}
    assert (await alice.sio.call("metrics:recent", {"vmId": "vm-b"}))["ok"] is False
    assert await alice.sio.call("unsubscribe", {"vmId": "vm-a"}) == {"ok": True, "error": None}
    assert "vm:vm-a" not in gateway.sio.rooms(alice.sio.get_sid("/"))


async def test_resource_event_reaches_named_user_only(
    settings: Settings, gateway: GatewayService, opened: list[Client]
) -> None:
    alice = await connect(gateway.url, {"token": token(settings, "alice")}, into=opened)
    bob = await connect(gateway.url, {"token": token(settings, "bob")}, into=opened)
    alice_ns = (await alice.wait_for("connected"))["namespace"]
    bob_ns = (await bob.wait_for("connected"))["namespace"]

    update = OutboundEvent(resource="vms", action="update", data={"id": "vm-a"}, users=["alice"])
    sentinel = OutboundEvent(resource="vms", action="power_on", users=["bob"])
    await publish(settings, update, sentinel)

    assert _unpositioned(await alice.wait_for(f"{alice_ns}:vms:update")) == update.payload()
    await bob.wait_for(f"{bob_ns}:vms:power_on")
    assert bob.names() == ["connected", f"{bob_ns}:vms:power_on"]


async def test_undecodable_record_does_not_stop_delivery(
    settings: Settings, gateway: GatewayService, opened: list[Client]
) -> None:
    alice = await connect(gateway.url, {"token": token(settings, "alice")}, into=opened)
    alice_ns = (await alice.wait_for("connected"))["namespace"]
    topic = Topics(settings.kafka.topic_prefix).events_outbound
    await produce(settings, topic, [(b"k", b"{not json"), (b"k", b'{"resource": 1}')])
    await publish(settings, OutboundEvent(resource="vms", action="create", users=["alice"]))
    await alice.wait_for(f"{alice_ns}:vms:create")
    assert gateway.consumer.skipped == 2


async def test_healthz(gateway: GatewayService) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}


async def test_api_vms_lists_only_visible_vms(settings: Settings, gateway: GatewayService) -> None:
    async def vms(user_id: str) -> list[str]:
        headers = {"Authorization": f"Bearer {token(settings, user_id)}"}
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
            headers = {"Authorization": f"Bearer {token(settings, user_id)}"}
            async with http.post(
                f"{gateway.url}/api/query", json={"sql": "SELECT 1"}, headers=headers
            ) as resp:
                assert resp.status == status


async def test_api_query_runs_read_only_sql_through_the_store(
    settings: Settings, topics_ready: Topics, chdb_reader: Reader
) -> None:
    url_headers = {"Authorization": f"Bearer {token(settings, 'root')}"}
    await put_directory(settings, *DIRECTORY)
    async with running(settings, chdb_reader) as gw, aiohttp.ClientSession() as http:
        async with http.post(
            f"{gw.url}/api/query", json={"sql": "SELECT 1 AS one;"}, headers=url_headers
        ) as resp:
            assert resp.status == 200
            assert await resp.json() == {"columns": ["one"], "rows": [[1]]}
        async with http.post(
            f"{gw.url}/api/query", json={"sql": "DROP TABLE metrics"}, headers=url_headers
        ) as resp:
            assert resp.status == 400
            assert await resp.json() == {"error": "only SELECT queries are allowed, not DROP"}
        async with http.post(f"{gw.url}/api/query", data=b"nope", headers=url_headers) as resp:
            assert resp.status == 400


async def test_subscription_is_dropped_when_the_directory_takes_access_away(
    settings: Settings, gateway: GatewayService, opened: list[Client]
) -> None:
    alice = await connect(gateway.url, {"token": token(settings, "alice")}, into=opened)
    await alice.wait_for("connected")
    assert (await alice.sio.call("subscribe", {"vmId": "vm-a"}))["ok"] is True
    sid = alice.sio.get_sid("/")
    assert "vm:vm-a" in gateway.sio.rooms(sid)

    await put_directory(settings, Vm(id="vm-a", name="alpha", owner="bob", department="ops"))
    await until(lambda: "vm:vm-a" not in gateway.sio.rooms(sid), DEADLINE_S)


async def test_stop_leaves_no_tasks_behind(settings: Settings, topics_ready: Topics) -> None:
    before = asyncio.all_tasks()
    await put_directory(settings, *DIRECTORY)
    async with running(settings) as gw:
        client = await connect(gw.url, {"token": token(settings, "alice")})
        await client.wait_for("connected")
        # The client stays connected: stopping the gateway must not wait for it.
    await client.sio.disconnect()
    leftover = {
        t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()
    }
    assert not leftover, leftover
