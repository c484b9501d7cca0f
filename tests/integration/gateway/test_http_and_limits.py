"""The HTTP API, operations endpoints and limits, against a running gateway and real clients."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import aiohttp
import pytest
import socketio

from infra.config import Settings
from schemas.directory import Vm
from schemas.events import OutboundEvent
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore
from store.reader import Reader
from tests.integration.gateway.harness import (
    DIRECTORY,
    Client,
    connect,
    publish,
    put_directory,
    running,
    token,
    until,
)

pytestmark = pytest.mark.integration


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _auth(settings: Settings, user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, user_id)}"}


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers or {}) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


async def test_vms_carry_states_and_recent_metrics_follow_authorization(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    async with running(settings) as gw:
        samples = [
            OutboundEvent(
                resource="metrics",
                action="update",
                data={"vmId": "vm-a", "n": n},
                rooms=["vm:vm-a"],
            )
            for n in range(5)
        ]
        states = [
            OutboundEvent(
                resource="vms", action="power_on", data={"vmId": "vm-a", "powerState": "running"}
            ),
            OutboundEvent(
                resource="vms", action="update", data={"id": "vm-a", "agentState": "online"}
            ),
            OutboundEvent(
                resource="vms", action="update", data={"vmId": "vm-zz", "powerState": "x"}
            ),
        ]
        await publish(settings, *samples, *states)
        await until(lambda: gw.vm_states.get("vm-a").agent_state == "online")

        status, body = await _get(f"{gw.url}/api/vms", _auth(settings, "alice"))
        assert status == 200
        assert body["vms"] == [
            {
                "id": "vm-a",
                "name": "alpha",
                "owner": "alice",
                "department": "eng",
                "powerState": "running",
                "agentState": "online",
                "stateUpdatedAt": states[1].timestamp,
            }
        ]
        status, body = await _get(f"{gw.url}/api/vms", _auth(settings, "root"))
        assert [vm["id"] for vm in body["vms"]] == ["vm-a", "vm-b"]
        assert body["vms"][1]["powerState"] is None

        status, body = await _get(
            f"{gw.url}/api/vms/vm-a/metrics/recent?count=3", _auth(settings, "alice")
        )
        assert status == 200 and [s["n"] for s in body["samples"]] == [2, 3, 4]
        status, body = await _get(f"{gw.url}/api/vms/vm-a/metrics/recent", _auth(settings, "bob"))
        assert (status, body) == (404, {"error": "Access denied"})
        status, _ = await _get(f"{gw.url}/api/vms/vm-a/metrics/recent")
        assert status == 401

        alice = await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        await alice.wait_for("connected")
        ack = await alice.sio.call("metrics:recent", {"vmId": "vm-a", "count": 2}, timeout=5)
        assert ack["ok"] and [s["n"] for s in ack["samples"]] == [3, 4]


async def test_history_from_the_store_picks_resolution_and_authorizes(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore, chdb_reader: Reader
) -> None:
    vm_id = f"vm-h-{uuid.uuid4().hex[:8]}"
    await put_directory(settings, *DIRECTORY, Vm(id=vm_id, owner="alice"))
    # Recent enough for the raw table's TTL; on a whole hour so buckets are full.
    base = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(
        hours=3
    )
    rows = [
        [vm_id, base + dt.timedelta(seconds=30 * i), base, 10.0 + i, 1000 + i, 4000, 0, i]
        for i in range(240)  # two hours, one sample every 30 s
    ]
    columns = [
        "vm_id",
        "ts",
        "received_at",
        "cpu_usage_percent",
        "memory_used_kb",
        "memory_total_kb",
        "kafka_partition",
        "kafka_offset",
    ]
    await chdb_store.insert("system_metrics", rows, columns, token=None)

    async with running(settings, reader=chdb_reader) as gw:
        url = f"{gw.url}/api/vms/{vm_id}/metrics"
        frm, to = int(base.timestamp()), int((base + dt.timedelta(hours=2)).timestamp())
        status, body = await _get(f"{url}?from={frm}&to={to}", _auth(settings, "alice"))
        assert status == 200, body
        assert body["resolution"] == "raw" and len(body["rows"]) == 240
        assert body["rows"][0][1] == pytest.approx(10.0)

        status, body = await _get(
            f"{url}?from={_iso(base)}&to={_iso(base + dt.timedelta(hours=2))}&step=600",
            _auth(settings, "alice"),
        )
        assert status == 200, body
        assert body["resolution"] == "1m" and body["step"] == 600
        assert [r[-1] for r in body["rows"]] == [20] * 12  # samples per 10-minute bucket
        if body["source"] == "system_metrics":
            # No usable rollup on this store yet: aggregated from raw, same figures.
            cpu = body["columns"].index("cpu_avg")
            assert body["rows"][0][cpu] == pytest.approx(sum(10.0 + i for i in range(20)) / 20)

        month = f"from={_iso(base - dt.timedelta(days=20))}&to={_iso(base + dt.timedelta(days=1))}"
        status, body = await _get(f"{url}?{month}", _auth(settings, "alice"))
        assert status == 200 and body["resolution"] == "1h"
        assert sum(r[-1] for r in body["rows"]) == 240

        status, body = await _get(f"{url}?from=yesterday", _auth(settings, "alice"))
        assert status == 400 and "not a time" in body["error"]
        status, body = await _get(f"{url}?from={to}&to={frm}", _auth(settings, "alice"))
        assert status == 400
        status, body = await _get(f"{url}?from={frm}&to={to}", _auth(settings, "bob"))
        assert (status, body) == (404, {"error": "Access denied"})

        async with aiohttp.ClientSession() as http:
            for sql, want in (
                (f"SELECT count() FROM system_metrics WHERE vm_id = '{vm_id}'", 200),
                ("SELECT * FROM file('/etc/passwd')", 400),
                ("SELECT 1 INTO OUTFILE '/tmp/x'", 400),
                ("DROP TABLE system_metrics", 400),
            ):
                async with http.post(
                    f"{gw.url}/api/query", json={"sql": sql}, headers=_auth(settings, "root")
                ) as resp:
                    assert resp.status == want, (sql, await resp.text())
                    if want == 200:
                        assert (await resp.json())["rows"] == [[240]]
            async with http.post(
                f"{gw.url}/api/query", json={"sql": "SELECT 1"}, headers=_auth(settings, "alice")
            ) as resp:
                assert resp.status == 403


async def test_operations_endpoints(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    origin = "https://console.example"
    async with running(settings.replace(gateway={"cors_origins": (origin,)})) as gw:
        assert (await _get(f"{gw.url}/healthz")) == (200, {"status": "ok"})
        assert (await _get(f"{gw.url}/readyz")) == (200, {"status": "ready"})
        alice = await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        ns = (await alice.wait_for("connected"))["namespace"]
        await publish(
            settings, OutboundEvent(resource="vms", action="update", users=["alice", "bob"])
        )
        await alice.wait_for(f"{ns}:vms:update")

        status, text = await _get(f"{gw.url}/metrics")
        assert status == 200
        for name in (
            "vmpulse_gateway_connections 1.0",
            "vmpulse_gateway_events_in_total 1.0",
            "vmpulse_gateway_events_out_total 1.0",
            "vmpulse_gateway_deliveries_failed_total 0.0",
            "vmpulse_gateway_consumer_lag 0.0",
            "vmpulse_gateway_resume_hits_total 0.0",
            "vmpulse_gateway_resume_misses_total 0.0",
        ):
            assert name in text, name

        assert (await _get(f"{gw.url}/debug/connections", _auth(settings, "alice")))[0] == 403
        status, body = await _get(f"{gw.url}/debug/connections", _auth(settings, "root"))
        assert status == 200 and body["count"] == 1
        assert body["connections"][0]["user"] == "alice"
        assert body["connections"][0]["transport"] == "websocket"
        status, body = await _get(f"{gw.url}/debug/deliveries", _auth(settings, "root"))
        # bob has no socket here: nothing was delivered to him by this instance.
        assert body == {"users": {"alice": {"delivered": 1, "failed": 0, "successRate": 1.0}}}

        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{gw.url}/api/vms", headers={"Origin": origin, **_auth(settings, "alice")}
            ) as resp:
                assert resp.headers.get("Access-Control-Allow-Origin") == origin
            async with http.get(
                f"{gw.url}/api/vms", headers={"Origin": "https://evil.example"}
            ) as resp:
                assert "Access-Control-Allow-Origin" not in resp.headers
            async with http.options(
                f"{gw.url}/api/vms",
                headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
            ) as resp:
                assert resp.status == 204
                assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        # Socket.IO applies the same origins.
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(
                gw.url,
                {"token": token(settings, "alice")},
                headers={"Origin": "https://evil.example"},
                into=opened,
            )
        ok = await connect(
            gw.url, {"token": token(settings, "alice")}, headers={"Origin": origin}, into=opened
        )
        await ok.wait_for("connected")


async def test_connection_rate_and_payload_limits(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    limited = settings.replace(
        gateway={
            "max_connections": 3,
            "max_connections_per_user": 2,
            "client_events_per_minute": 5,
            "max_payload_bytes": 2048,
        }
    )
    async with running(limited) as gw:
        a1 = await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        assert opened[-1].refusal == {"message": "Too many connections for this user"}
        bob = await connect(gw.url, {"token": token(settings, "bob")}, into=opened)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(gw.url, {"token": token(settings, "root")}, into=opened)
        assert opened[-1].refusal == {"message": "Too many connections"}

        await a1.wait_for("connected")
        acks = [await a1.sio.call("subscribe", {"vmId": "vm-a"}, timeout=5) for _ in range(6)]
        assert [a["ok"] for a in acks] == [True] * 5 + [False]
        assert acks[-1]["error"] == "Rate limit exceeded"
        # Per user and per event type: another event name still has its allowance.
        assert (await a1.sio.call("unsubscribe", {"vmId": "vm-a"}, timeout=5))["ok"] is True

        await bob.wait_for("connected")
        await bob.sio.emit("subscribe", {"vmId": "x" * 10_000})
        await bob.wait(lambda: bob.disconnected.is_set())
        await until(lambda: gw.namespace.connected_sids == 2)
        assert a1.sio.connected
