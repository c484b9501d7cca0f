"""Resume: a client that comes back with its last position misses nothing and sees nothing twice.

The stream is produced in three phases around the cut: while the client is
connected (phase A, the cut lands in the middle of it), while it is away
(phase B), and while it reconnects (phase C, so replay and live delivery
overlap). Every step carries a sequence number and goes to three partitions
(key k0..k2), both as a user event and as a metrics sample of a subscribed VM.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest

from gateway.service import GatewayService
from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.directory import User, Vm
from schemas.events import OutboundEvent, encode_outbound
from schemas.topics import Topics
from tests.integration.gateway.harness import (
    DEADLINE_S,
    Client,
    connect,
    hang_up,
    publish,
    put_directory,
    running,
    token,
)

pytestmark = pytest.mark.integration

KEYS = (b"k0", b"k1", b"k2")


class Stream:
    """Produces numbered steps on the real broker, in phases the test controls."""

    def __init__(self, settings: Settings) -> None:
        self.topic = Topics(settings.kafka.topic_prefix).events_outbound
        self.producer = make_producer(settings.kafka.bootstrap or "", linger_ms=0)
        self.sent = 0

    async def __aenter__(self) -> Stream:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def steps(self, count: int) -> None:
        for _ in range(count):
            n = self.sent
            self.sent += 1
            key = KEYS[n % len(KEYS)]
            user = OutboundEvent(resource="vms", action="update", data={"n": n}, users=["alice"])
            sample = OutboundEvent(
                resource="metrics",
                action="update",
                data={"vmId": "vm-a", "n": n},
                rooms=["vm:vm-a"],
            )
            await self.producer.send(self.topic, encode_outbound(user), key=key)
            fut = await self.producer.send(self.topic, encode_outbound(sample), key=key)
            if n % 10 == 9:
                await fut  # keep the stream flowing in small bursts, not one lump


def _numbers(clients: list[Client], event: str) -> list[int]:
    out: list[int] = []
    for client in clients:
        for name, payload in client.events:
            if name == event or (event != "metricsUpdate" and name.endswith(event)):
                out.append(payload["data"]["n"] if name != "metricsUpdate" else payload["n"])
    return out


async def _all_arrived(first: Client, second: Client, total: int) -> None:
    """Both sessions together received every update, in sequence, none twice."""
    await second.wait(
        lambda: (
            len(_numbers([first, second], "metricsUpdate")) >= total
            and len(_numbers([first, second], ":vms:update")) >= total
        ),
        timeout=DEADLINE_S * 2,
    )
    _check_sequence([first, second], total)


def _check_sequence(clients: list[Client], total: int) -> None:
    for event in ("metricsUpdate", ":vms:update"):
        seen = _numbers(clients, event)
        dupes = [n for n, c in collections.Counter(seen).items() if c > 1]
        assert not dupes, f"{event}: duplicates {dupes[:10]}"
        assert sorted(seen) == list(range(total)), (
            f"{event}: missing {set(range(total)) - set(seen)}"
        )
        for k in range(len(KEYS)):  # per partition, in order
            lane = [n for n in seen if n % len(KEYS) == k]
            assert lane == sorted(lane), f"{event}: partition of key k{k} out of order"


async def _first_session(url: str, settings: Settings, opened: list[Client]) -> Client:
    client = await connect(url, {"token": token(settings, "alice")}, into=opened, name="first")
    await client.wait_for("connected")
    assert (await client.sio.call("subscribe", {"vmId": "vm-a"}, timeout=5))["ok"]
    return client


async def _resume(
    url: str, settings: Settings, position: str | None, opened: list[Client]
) -> Client:
    auth: dict[str, Any] = {
        "token": token(settings, "alice"),
        "lastPosition": position,
        "vmIds": ["vm-a"],
    }
    return await connect(url, auth, into=opened, name="resumed")


DIRECTORY = (User(id="alice"), Vm(id="vm-a", owner="alice"))


async def test_client_cut_mid_stream_resumes_without_gap_or_duplicate(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    async with running(settings) as gw, Stream(settings) as stream:
        first = await _first_session(gw.url, settings, opened)
        phase_a = asyncio.create_task(stream.steps(120))
        await first.wait(lambda: len(first.named("metricsUpdate")) >= 30)
        await first.sio.disconnect()  # the cut, while phase A is still being produced
        await phase_a
        await stream.steps(60)  # phase B: produced while the client is away
        phase_c = asyncio.create_task(stream.steps(120))
        second = await _resume(gw.url, settings, first.position, opened)
        resumed = await second.wait_for("resumed")
        assert resumed["vmIds"] == ["vm-a"] and resumed["replayed"] > 0
        await phase_c
        total = stream.sent
        await _all_arrived(first, second, total)
        hits = gw.stats.resume_hits._value.get()
        assert hits == 1


async def test_gateway_restart_mid_stream_resumes_on_the_new_instance(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    async with Stream(settings) as stream:
        old = GatewayService(settings)
        await old.start()
        try:
            first = await _first_session(old.url, settings, opened)
            phase_a = asyncio.create_task(stream.steps(120))
            await first.wait(lambda: len(first.named("metricsUpdate")) >= 30)
        finally:
            await asyncio.wait_for(old.stop(), DEADLINE_S)  # the crash, mid-stream
        await first.wait(lambda: first.disconnected.is_set())
        await phase_a
        await stream.steps(60)  # no gateway at all while these are produced
        async with running(settings) as new:
            phase_c = asyncio.create_task(stream.steps(120))
            second = await _resume(new.url, settings, first.position, opened)
            await second.wait_for("resumed")
            await phase_c
            total = stream.sent
            await _all_arrived(first, second, total)


async def test_gap_older_than_the_window_gets_resync(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    small = settings.replace(gateway={"resume_max_events": 5})
    async with running(small) as gw, Stream(settings) as stream:
        first = await _first_session(gw.url, settings, opened)
        position = (await first.wait_for("connected"))["position"]
        await first.sio.disconnect()
        await stream.steps(10)  # 20 records: more than the log holds
        await _drain(gw, sum(int(p) for p in position.split(".")) + 20)

        second = await _resume(gw.url, settings, position, opened)
        resync = await second.wait_for("resync")
        assert resync["reason"] == "gap older than the resume window"
        assert resync["position"] and resync["vmIds"] == ["vm-a"]
        # Live delivery goes on after a resync; nothing of the gap was replayed.
        await publish(
            settings,
            OutboundEvent(
                resource="metrics",
                action="update",
                data={"vmId": "vm-a", "n": -1},
                rooms=["vm:vm-a"],
            ),
        )
        await second.wait(lambda: bool(second.named("metricsUpdate")))
        assert [p["n"] for p in second.named("metricsUpdate")] == [-1]

        bogus = await _resume(gw.url, settings, "not-a-position", opened)
        assert (await bogus.wait_for("resync"))["reason"] == "invalid position"
        assert gw.stats.resume_misses._value.get() == 2


async def _drain(gw: GatewayService, records: int) -> None:
    """Wait until the gateway has handled ``records`` more records than its start."""

    async def loop() -> None:
        while sum(gw.consumer.log.offsets) < records:
            await gw.consumer.wait_progress()

    await asyncio.wait_for(loop(), DEADLINE_S)


async def test_resume_with_nothing_missed_and_polling_transport(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, *DIRECTORY)
    async with running(settings) as gw:
        first = await connect(
            gw.url, {"token": token(settings, "alice")}, transports=["polling"], into=opened
        )
        ns = (await first.wait_for("connected"))["namespace"]
        assert gw.namespace.connections()[0]["transport"] == "polling"
        await publish(settings, OutboundEvent(resource="vms", action="create", users=["alice"]))
        await first.wait_for(f"{ns}:vms:create")
        position = first.position
        await hang_up(first)
        second = await connect(
            gw.url,
            {"token": token(settings, "alice"), "lastPosition": position},
            transports=["polling"],
            into=opened,
        )
        resumed = await second.wait_for("resumed")
        assert resumed["replayed"] == 0 and resumed["position"] == position
        await publish(settings, OutboundEvent(resource="vms", action="delete", users=["alice"]))
        await second.wait_for(f"{ns}:vms:delete")
        assert second.names() == ["connected", "resumed", f"{ns}:vms:delete"]


async def test_a_long_replay_goes_in_chunks_while_live_events_flow(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    """Each hold of the consumer's lock replays one chunk; live events go on between them."""
    await put_directory(settings, *DIRECTORY)
    async with running(settings) as gw, Stream(settings) as stream:
        gw.namespace.replay_chunk = 25
        first = await _first_session(gw.url, settings, opened)
        position = (await first.wait_for("connected"))["position"]
        await first.sio.disconnect()
        await stream.steps(300)  # 600 records missed
        await _drain(gw, sum(int(p) for p in position.split(".")) + 600)
        holds_before = gw.stats.replay_chunks._value.get()
        live = asyncio.create_task(stream.steps(150))  # produced while the replay runs
        second = await _resume(gw.url, settings, position, opened)
        resumed = await second.wait_for("resumed")
        await live
        await _all_arrived(first, second, stream.sent)
        assert resumed["replayed"] >= 600
        holds = gw.stats.replay_chunks._value.get() - holds_before
        assert holds >= 600 / 25, holds
