"""Two `vmpulse gateway` processes on one events.outbound: each client gets exactly its events.

Real parts: two gateway child processes (each reads every partition of
events.outbound, as instances behind a load balancer do), python-socketio
clients over websockets, the session's broker. Alice has a tab on each gateway,
Bob one; the stream carries numbered user events for each of them and metrics
samples for each one's VM. Alice's first tab is cut between two phases of the
stream and comes back on the *other* gateway with its last position (a load
balancer moving it) while the third phase is produced: replay and live overlap.

What a user would check: every client got exactly the events addressed to it
(none of the other user's, none twice, none missing, in order per partition);
the moved client's two sessions together hold every event once; and the
gateways' own delivery counters (live deliveries plus replayed events, summed
over both processes) equal what the clients received.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import pytest

from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.events import OutboundEvent, encode_outbound
from schemas.topics import Topics
from tests.integration.gateway.harness import (
    DEADLINE_S,
    DIRECTORY,
    Client,
    connect,
    put_directory,
    token,
    until,
)
from tests.support.stages import GatewayProcess

pytestmark = pytest.mark.integration

KEYS = (b"k0", b"k1", b"k2")
STEPS = 100  # per phase: 4 events a step (a user event and a sample for each of two users)


async def _produce(settings: Settings, first: int, count: int) -> None:
    topic = Topics(settings.kafka.topic_prefix).events_outbound
    producer = make_producer(settings.kafka.bootstrap or "", linger_ms=0)
    await producer.start()
    try:
        for n in range(first, first + count):
            key = KEYS[n % len(KEYS)]
            for user, vm in (("alice", "vm-a"), ("bob", "vm-b")):
                event = OutboundEvent(
                    resource="vms", action="update", data={"n": n, "for": user}, users=[user]
                )
                sample = OutboundEvent(
                    resource="metrics",
                    action="update",
                    data={"vmId": vm, "n": n},
                    rooms=[f"vm:{vm}"],
                )
                await producer.send(topic, encode_outbound(event), key=key)
                fut = await producer.send(topic, encode_outbound(sample), key=key)
            if n % 10 == 9:
                await fut  # a flowing stream, not one lump
        await producer.flush()
    finally:
        await producer.stop()


def _got(clients: list[Client]) -> dict[str, list[tuple[str, int]]]:
    """What the clients received: user events as (user, n), samples as (vm, n)."""
    out: dict[str, list[tuple[str, int]]] = {"user": [], "sample": []}
    for client in clients:
        for name, payload in client.events:
            if name == "metricsUpdate":
                out["sample"].append((payload["vmId"], payload["n"]))
            elif name.endswith(":vms:update"):
                out["user"].append((payload["data"]["for"], payload["data"]["n"]))
    return out


def _exactly(got: list[tuple[str, int]], who: str, total: int) -> None:
    assert {w for w, _ in got} <= {who}, f"someone else's events: {set(got) - {(who, 0)}}"
    numbers = [n for _, n in got]
    dupes = [n for n, c in collections.Counter(numbers).items() if c > 1]
    assert not dupes, f"{who}: duplicates {dupes[:10]}"
    assert sorted(numbers) == list(range(total)), (
        f"{who}: missing {set(range(total)) - set(numbers)}"
    )
    for k in range(len(KEYS)):  # in order per partition
        lane = [n for n in numbers if n % len(KEYS) == k]
        assert lane == sorted(lane), f"{who}: the partition of key k{k} out of order"


def _delivered(clients: list[Client]) -> int:
    """Events the gateways delivered (those with a position, not the greetings)."""
    greetings = {"connected", "resumed", "resync"}
    return sum(
        1
        for c in clients
        for name, payload in c.events
        if name not in greetings and isinstance(payload, dict) and "position" in payload
    )


async def test_two_gateway_processes_each_client_exactly_its_events_and_a_move_resumes(
    settings: Settings, topics_ready: Topics, opened: list[Client], tmp_path: Path
) -> None:
    await put_directory(settings, *DIRECTORY)
    gateways = [GatewayProcess(settings, f"gateway-{i}", tmp_path) for i in (1, 2)]
    for g in gateways:
        g.start()
    try:
        await asyncio.gather(*(g.ready() for g in gateways))
        one, two = gateways

        async def tab(url: str, user: str, vm: str | None, name: str) -> Client:
            client = await connect(url, {"token": token(settings, user)}, into=opened, name=name)
            await client.wait_for("connected")
            if vm is not None:
                assert (await client.sio.call("subscribe", {"vmId": vm}, timeout=5))["ok"]
            return client

        alice_1 = await tab(one.url, "alice", "vm-a", "alice on gateway 1")
        alice_2 = await tab(two.url, "alice", None, "alice's other tab, on gateway 2")
        bob = await tab(two.url, "bob", "vm-b", "bob on gateway 2")

        await _produce(settings, 0, STEPS)
        # the cut once phase A reached her: nothing in flight to the closing socket, so the
        # gateways' delivery counters and what the clients hold must agree exactly (a cut
        # in mid-stream is tests/integration/gateway/test_resume.py's)
        await until(lambda: len(_got([alice_1])["sample"]) >= STEPS, DEADLINE_S * 2)
        await until(lambda: len(_got([alice_1])["user"]) >= STEPS, DEADLINE_S)
        await alice_1.sio.disconnect()  # the load balancer sends her to gateway 2
        await _produce(settings, STEPS, STEPS // 2)  # while she is away
        phase_c = asyncio.create_task(_produce(settings, STEPS + STEPS // 2, STEPS))
        auth: dict[str, Any] = {
            "token": token(settings, "alice"),
            "lastPosition": alice_1.position,
            "vmIds": ["vm-a"],
        }
        moved = await connect(two.url, auth, into=opened, name="alice moved to gateway 2")
        resumed = await moved.wait_for("resumed")
        assert resumed["vmIds"] == ["vm-a"] and resumed["replayed"] > 0
        await phase_c
        total = STEPS * 2 + STEPS // 2

        everyone = [alice_1, alice_2, bob, moved]

        def arrived() -> bool:
            return (
                len(_got([alice_1, moved])["sample"]) >= total
                and len(_got([alice_1, moved])["user"]) >= total
                and len(_got([alice_2])["user"]) >= total
                and len(_got([bob])["user"]) >= total
                and len(_got([bob])["sample"]) >= total
            )

        def counts() -> str:
            a, b = _got([alice_1, moved]), _got([bob])
            return (f"alice {len(a['user'])}/{len(a['sample'])}, her other tab "
                    f"{len(_got([alice_2])['user'])}, bob {len(b['user'])}/{len(b['sample'])}"
                    f" of {total}")  # fmt: skip

        try:
            await until(arrived, DEADLINE_S * 3)
        except TimeoutError:
            raise AssertionError(f"not every event arrived: {counts()}") from None

        _exactly(_got([alice_1, moved])["user"], "alice", total)
        _exactly(_got([alice_1, moved])["sample"], "vm-a", total)
        _exactly(_got([alice_2])["user"], "alice", total)
        assert _got([alice_2])["sample"] == [], "a tab that subscribed to nothing got samples"
        _exactly(_got([bob])["user"], "bob", total)
        _exactly(_got([bob])["sample"], "vm-b", total)

        received = _delivered(everyone)
        assert received == 5 * total  # alice: events and samples; her other tab; bob: both

        def counted() -> float:
            return sum(
                g.counter("vmpulse_gateway_events_out_total")
                + g.counter("vmpulse_gateway_replayed_events_total")
                for g in gateways
            )

        # the counters are written as the frames are queued: they settle with the clients
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        while (found := await asyncio.to_thread(counted)) != received:
            assert loop.time() < deadline, f"gateways counted {found}, clients got {received}"
            await asyncio.sleep(0.1)
        per_gateway = [g.counter("vmpulse_gateway_events_out_total") for g in gateways]
        print(f"deliveries: {received} received; gateways counted {per_gateway} live + "
              f"{resumed['replayed']} replayed")  # fmt: skip
    finally:
        for client in opened:
            if client.sio.connected:
                await client.sio.disconnect()
        for g in gateways:
            g.stop()
