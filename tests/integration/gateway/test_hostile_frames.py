"""Hostile Socket.IO frames, written by hand, against a running gateway and the real broker.

The connection lifecycle is the server's alone: a client that emits
``disconnect`` or ``connect`` as an ordinary event (``42["disconnect"]``) must
stay tracked, capped and subject to its token's expiry, and every refusal is
counted. Malformed packets are dropped without a traceback in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import socketio

from infra.config import Settings
from schemas.events import OutboundEvent
from schemas.topics import Topics
from tests.integration.gateway.harness import (
    DIRECTORY,
    Client,
    connect,
    publish,
    put_directory,
    running,
    short_token,
    token,
    until,
)
from tests.integration.gateway.raw_socket import RawSocket

pytestmark = pytest.mark.integration

# Loggers whose warnings would mean a hostile frame got further than a refusal.
_WATCHED = ("gateway", "socketio", "engineio", "asyncio", "aiohttp")


@pytest.fixture
def log_problems(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Warnings, errors and tracebacks the gateway's side logged during the test."""
    caplog.set_level(logging.WARNING)
    problems: list[logging.LogRecord] = []
    yield problems
    problems.extend(
        r
        for r in caplog.records
        if r.name.startswith(_WATCHED) and (r.levelno >= logging.WARNING or r.exc_info)
    )


@pytest.fixture
async def raws() -> AsyncIterator[list[RawSocket]]:
    made: list[RawSocket] = []
    yield made
    for sock in made:
        await sock.close()


async def _get(url: str, user: str | None, settings: Settings) -> Any:
    headers = {"Authorization": f"Bearer {token(settings, user)}"} if user else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json() if resp.content_type == "application/json" else await resp.text()


def _counter(exposition: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{label_text}}}" if labels else name) + r" ([0-9.e+]+)"
    found = re.search(pattern, exposition)
    return float(found.group(1)) if found else 0.0


async def _tracked(gw_url: str, settings: Settings) -> dict[str, Any]:
    body = await _get(f"{gw_url}/debug/connections", "root", settings)
    return {c["sid"]: c for c in body["connections"]}


async def test_spoofed_lifecycle_events_do_not_untrack_the_socket(
    settings: Settings,
    topics_ready: Topics,
    opened: list[Client],
    raws: list[RawSocket],
    log_problems: list[logging.LogRecord],
) -> None:
    await put_directory(settings, *DIRECTORY)
    capped = settings.replace(gateway={"max_connections_per_user": 2})
    async with running(capped) as gw:
        # Lives long enough for the attack and the checks, then must still expire.
        raw = await RawSocket.open(gw.url, short_token(settings, "alice", 8))
        raws.append(raw)
        assert raw.sid is not None
        await raw.wait_frame(lambda f: f.startswith('42["connected"'))
        await raw.send("421" + json.dumps(["subscribe", {"vmId": "vm-a"}]))
        assert await raw.ack(1) == {"ok": True, "error": None}

        spoofed = [
            '42["disconnect"]',
            '422["disconnect","client namespace disconnect"]',
            "423" + json.dumps(["connect", {"token": token(settings, "alice")}, {}]),
            '42["connect",{"lastPosition":"0"}]',
            '424["disconnecting"]',
            # Names that python-socketio's on_<name> convention mapped to handlers.
            '425["metrics_recent",{"vmId":"vm-a"}]',
            '426["trigger_event","disconnect"]',
        ]
        for frame in spoofed:
            await raw.send(frame)
        reserved = {"ok": False, "error": "Reserved event name"}
        unknown = {"ok": False, "error": "Unknown event"}
        assert [await raw.ack(i) for i in range(2, 7)] == [
            reserved,
            reserved,
            reserved,
            unknown,
            unknown,
        ]

        # Still tracked, still in its room, still counted against the cap.
        conns = await _tracked(gw.url, settings)
        assert conns[raw.sid]["user"] == "alice"
        assert conns[raw.sid]["subscriptions"] == ["vm-a"]
        assert gw.namespace.user_of(raw.sid) == "alice"
        await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
        assert opened[-1].refusal == {"message": "Too many connections for this user"}
        await publish(
            settings,
            OutboundEvent(
                resource="metrics", action="update", data={"vmId": "vm-a"}, rooms=["vm:vm-a"]
            ),
        )
        await raw.wait(lambda: bool(raw.events("metricsUpdate")))
        assert raw.events("connected") and len(raw.events("connected")) == 1  # no second greeting

        text = await _get(f"{gw.url}/metrics", None, settings)
        refused = "vmpulse_gateway_client_events_refused_total"
        assert _counter(text, refused, reason="reserved") == 5
        assert _counter(text, refused, reason="unknown") == 2

        # The token's expiry still applies to the socket that claimed to be gone.
        assert (await raw.wait_frame(lambda f: "session:ended" in f, timeout=15)) == (
            '42["session:ended",{"reason":"Token expired"}]'
        )
        await raw.wait_frame(lambda f: f == "41")  # the server's DISCONNECT of the namespace
        await until(lambda: gw.namespace.user_of(raw.sid or "") is None)
        assert raw.sid not in await _tracked(gw.url, settings)
    assert log_problems == []


async def test_malformed_packets_are_dropped_and_counted_without_a_traceback(
    settings: Settings,
    topics_ready: Topics,
    raws: list[RawSocket],
    log_problems: list[logging.LogRecord],
) -> None:
    await put_directory(settings, *DIRECTORY)
    async with running(settings) as gw:
        raw = await RawSocket.open(gw.url, token(settings, "alice"))
        raws.append(raw)
        # Each group is one malformed packet (a binary event and its attachment are one).
        malformed: list[tuple[str | bytes, ...]] = [
            ("42[]",),
            ("42{}",),
            ('421"subscribe"',),
            ("42[1]",),
            ("42[null]",),
            ("4X",),
            ("4",),
            ('42²["subscribe"]',),
            ("42" + "[" * 20_000,),  # deeper than the JSON parser's recursion limit
            ("44{}",),  # CONNECT_ERROR is the server's to send
            ("47",),
            ("b!!!",),  # an empty binary message
            (b"\x00\x01",),  # binary with no binary event waiting for it
            # A binary event whose placeholder names an attachment that is not there.
            ('451-["subscribe",{"_placeholder":true,"num":5}]', b"\x00\x01"),
        ]
        for n, group in enumerate(malformed):
            for frame in group:
                await raw.send(frame)
            # The socket still works after each one: a real event is answered.
            ack_id = 100 + n
            await raw.send(f"42{ack_id}" + json.dumps(["subscribe", {"vmId": "vm-a"}]))
            assert await raw.ack(ack_id) == {"ok": True, "error": None}, group
        text = await _get(f"{gw.url}/metrics", None, settings)
        counted = _counter(text, "vmpulse_gateway_client_events_refused_total", reason="malformed")
        assert counted == len(malformed)
        assert raw.sid in await _tracked(gw.url, settings)

        # Frames that are not Engine.IO at all end the connection like a hang-up.
        for garbage in ("", "x", "bA", "²"):
            sock = await RawSocket.open(gw.url, token(settings, "bob"))
            raws.append(sock)
            await sock.send(garbage)
            await asyncio.wait_for(sock.closed.wait(), 10)
            await until(lambda s=sock: gw.namespace.user_of(s.sid or "") is None)  # type: ignore[misc]
        assert raw.sid in await _tracked(gw.url, settings)

        # The same over long-polling: a POST body that is no Engine.IO payload is dropped.
        before = _counter(
            await _get(f"{gw.url}/metrics", None, settings),
            "vmpulse_gateway_client_events_refused_total",
            reason="malformed",
        )
        polling = f"{gw.url}/socket.io/?EIO=4&transport=polling"
        bodies = [b"", b"x", b"4x\x1e", b"bA", b"\x1e\x1e", b"\xff\xfe", b"d=%"]
        async with aiohttp.ClientSession() as http:
            async with http.get(polling) as resp:
                session = json.loads((await resp.text())[1:])["sid"]
            url = f"{polling}&sid={session}"
            hello = "40" + json.dumps({"token": token(settings, "bob")})
            async with http.post(url, data=hello.encode()) as resp:
                assert resp.status == 200
            async with http.get(url) as resp:
                sid = json.loads((await resp.text()).split("\x1e")[0][2:])["sid"]
            for body in bodies:
                async with http.post(url, data=body) as resp:
                    assert resp.status == 200, body
            assert sid in await _tracked(gw.url, settings)
            async with http.post(url, data=b"41") as resp:  # a clean namespace DISCONNECT
                assert resp.status == 200
            await until(lambda: gw.namespace.user_of(sid) is None)
        after = _counter(
            await _get(f"{gw.url}/metrics", None, settings),
            "vmpulse_gateway_client_events_refused_total",
            reason="malformed",
        )
        # b"" is an empty payload, not a malformed one; each of the others counts once.
        assert after - before == len(bodies) - 1
    assert log_problems == []
