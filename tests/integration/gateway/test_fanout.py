"""Fan-out: many sockets per user, two gateway instances, and a randomized no-leak check."""

from __future__ import annotations

import collections
import random
from typing import Any

import pytest

from gateway.deliveries import route
from gateway.rooms import namespace_function
from infra.config import Settings
from schemas.directory import Department, Directory, User, Vm, directory_key, encode_record
from schemas.events import ADMIN_ROOM, OutboundEvent, vm_room
from schemas.topics import Topics
from tests.integration.gateway.harness import (
    Client,
    connect,
    publish,
    put_directory,
    running,
    token,
)

pytestmark = pytest.mark.integration


def _ids(client: Client, event: str) -> list[Any]:
    return [p["id"] for p in client.named(event)]


async def test_closing_one_tab_does_not_cut_off_the_others(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(settings, User(id="alice"), Vm(id="vm-a", owner="alice"))
    async with running(settings) as gw:
        tabs = [
            await connect(gw.url, {"token": token(settings, "alice")}, into=opened)
            for _ in range(3)
        ]
        ns = (await tabs[0].wait_for("connected"))["namespace"]
        for tab in tabs:
            await tab.wait_for("connected")
            assert (await tab.sio.call("subscribe", {"vmId": "vm-a"}, timeout=5))["ok"]
        first = OutboundEvent(resource="vms", action="update", users=["alice"])
        await publish(settings, first)
        for tab in tabs:

            def got_first(t: Client = tab) -> bool:
                return _ids(t, f"{ns}:vms:update") == [first.id]

            await tab.wait(got_first)

        await tabs[0].sio.disconnect()
        second = OutboundEvent(resource="vms", action="update", users=["alice"])
        sample = OutboundEvent(
            resource="metrics", action="update", data={"vmId": "vm-a"}, rooms=["vm:vm-a"]
        )
        await publish(settings, second, sample)
        for tab in tabs[1:]:

            def got_sample(t: Client = tab) -> bool:
                return len(t.named("metricsUpdate")) == 1

            await tab.wait(got_sample)
            assert _ids(tab, f"{ns}:vms:update") == [first.id, second.id]
        assert gw.namespace.connected_sids == 2


async def test_two_instances_each_deliver_exactly_their_clients_events(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    await put_directory(
        settings,
        User(id="root", role="admin"),
        User(id="alice"),
        User(id="bob"),
        Vm(id="vm-a", owner="alice"),
    )
    async with running(settings) as one, running(settings) as two:
        alice1 = await connect(one.url, {"token": token(settings, "alice")}, into=opened)
        alice2 = await connect(two.url, {"token": token(settings, "alice")}, into=opened)
        bob2 = await connect(two.url, {"token": token(settings, "bob")}, into=opened)
        root1 = await connect(one.url, {"token": token(settings, "root")}, into=opened)
        ns = {}
        for who, client in (("alice", alice1), ("alice", alice2), ("bob", bob2), ("root", root1)):
            ns[who] = (await client.wait_for("connected"))["namespace"]
        assert (await alice2.sio.call("subscribe", {"vmId": "vm-a"}, timeout=5))["ok"]

        # Spread over partitions (key = event id): every instance reads them all.
        events = [
            OutboundEvent(resource="vms", action="update", users=["alice"]) for _ in range(10)
        ]
        events += [
            OutboundEvent(resource="users", action="update", users=["bob"]) for _ in range(10)
        ]
        events += [OutboundEvent(resource="alerts", action="create", admins=True) for _ in range(5)]
        events += [
            OutboundEvent(
                resource="metrics",
                action="update",
                data={"vmId": "vm-a", "n": i},
                rooms=["vm:vm-a"],
            )
            for i in range(5)
        ]
        await publish(settings, *events, key=None)
        want_alice = sorted(e.id for e in events[:10])
        want_bob = sorted(e.id for e in events[10:20])
        want_root = sorted(e.id for e in events[20:25])
        await alice1.wait(lambda: len(alice1.events) >= 11)
        await alice2.wait(lambda: len(alice2.events) >= 16)
        await bob2.wait(lambda: len(bob2.events) >= 11)
        await root1.wait(lambda: len(root1.events) >= 6)
        assert sorted(_ids(alice1, f"{ns['alice']}:vms:update")) == want_alice
        assert sorted(_ids(alice2, f"{ns['alice']}:vms:update")) == want_alice
        assert sorted(p["n"] for p in alice2.named("metricsUpdate")) == list(range(5))
        assert sorted(_ids(bob2, f"{ns['bob']}:users:update")) == want_bob
        assert sorted(_ids(root1, f"{ns['root']}:alerts:create")) == want_root
        for client, count in ((alice1, 11), (alice2, 16), (bob2, 11), (root1, 6)):
            assert len(client.events) == count  # nothing else arrived


async def test_randomized_fleet_no_event_reaches_anyone_not_named(
    settings: Settings, topics_ready: Topics, opened: list[Client]
) -> None:
    seed = random.randrange(2**32)
    print(f"randomized routing seed: {seed}")
    rng = random.Random(seed)
    departments = [Department(id=f"d{i}") for i in range(8)]
    users = [
        User(
            id=f"u{i}",
            role="admin" if i < 3 else "user",
            department=rng.choice([None, *[d.id for d in departments]]),
        )
        for i in range(50)
    ]
    vms = [
        Vm(
            id=f"vm{i}",
            owner=rng.choice([None, *[u.id for u in users]]),
            department=rng.choice([None, *[d.id for d in departments]]),
        )
        for i in range(200)
    ]
    directory = Directory()
    records: tuple[User | Vm | Department, ...] = (*departments, *users, *vms)
    for record in records:
        directory.apply(directory_key(record), encode_record(record))
    await put_directory(settings, *departments, *users, *vms)
    namespace_of = namespace_function(settings.tokens.secret)

    async with running(settings) as gw:
        rooms: dict[str, set[str]] = {}
        clients: dict[str, Client] = {}
        for user in users:
            client = await connect(
                gw.url, {"token": token(settings, user.id)}, into=opened, name=user.id
            )
            await client.wait_for("connected")
            clients[user.id] = client
            rooms[user.id] = {namespace_of(user.id)} | ({ADMIN_ROOM} if user.is_admin else set())
            for vm in rng.sample(vms, 12):
                ack = await client.sio.call("subscribe", {"vmId": vm.id}, timeout=5)
                assert ack["ok"] is directory.may_watch(user.id, vm.id), (user.id, vm.id)
                if ack["ok"]:
                    rooms[user.id].add(vm_room(vm.id))

        events = []
        for n in range(300):
            kind = rng.random()
            if kind < 0.5:
                vm = rng.choice(vms)
                events.append(
                    OutboundEvent(
                        resource="metrics",
                        action="update",
                        data={"vmId": vm.id, "n": n},
                        rooms=[vm_room(vm.id)],
                    )
                )
            else:
                named = [u.id for u in rng.sample(users, rng.randint(0, 4))] + ["ghost"]
                events.append(
                    OutboundEvent(
                        resource=rng.choice(["vms", "users", "alerts"]),
                        action=rng.choice(["update", "create"]),
                        data={"n": n},
                        users=named,
                        admins=rng.random() < 0.2,
                        rooms=[vm_room(rng.choice(vms).id)] if rng.random() < 0.3 else [],
                    )
                )
        sentinel = OutboundEvent(resource="end", action="end", users=[u.id for u in users])
        await publish(settings, *events, sentinel)  # one partition: the sentinel comes last

        expected: dict[str, collections.Counter[tuple[str, Any]]] = {}
        for user in users:
            want: collections.Counter[tuple[str, Any]] = collections.Counter()
            for event in events:
                for d in route(event, directory, namespace_of):
                    if d.room in rooms[user.id]:
                        want[(d.event, event.data["n"])] += 1
            expected[user.id] = want
        for user in users:
            client = clients[user.id]
            end_event = f"{namespace_of(user.id)}:end:end"

            def got_end(c: Client = client, e: str = end_event) -> bool:
                return bool(c.named(e))

            await client.wait(got_end, timeout=30)
            got = collections.Counter(
                (name, payload["data"]["n"] if name != "metricsUpdate" else payload["n"])
                for name, payload in client.events
                if name not in ("connected", end_event)
            )
            assert got == expected[user.id], f"user {user.id} (seed {seed})"
            for name, payload in client.events:
                if name == "metricsUpdate":
                    assert directory.may_watch(user.id, payload["vmId"]), (user.id, payload, seed)
        assert sum(sum(c.values()) for c in expected.values()) > 100  # the test exercised fan-out
