"""The traffic of a running pipeline validates against schemas/asyncapi.json.

Everything runs for real in this process: the fleet simulator's unix sockets,
the bridge, the hypervisor watcher on libvirt's test driver, the Faust worker
on the session broker and chDB store, a gateway, and Socket.IO clients over
TCP. The platform backend is the one stand-in: its directory records and
resource events are written with vmpulse's own publishing code (vmpulse.publish),
as `vmpulse directory put` and `vmpulse emit` do.

Then every record of every topic is read back from the beginning and matched
against the messages of its channel (key, headers and value), and every event
and ack the clients got against the Socket.IO messages. A line on agent.raw
that matches no message must be one the worker dead-lettered.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio

from agents.bridge import Bridge
from agents.hypervisor import HypervisorWatcher
from agents.simulator.fleet import FleetSimulator
from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.directory import Department, User, Vm
from schemas.dlq import decode_dlq_record
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore
from tests.integration.gateway.harness import Client, close_all, connect, token
from tests.integration.streams.browsers import gateway_with, running_worker
from tests.support.contracts import Contract
from tests.support.kafka import agent_collector, reading_from_start
from vmpulse.publish import delete_record, publish_event

pytestmark = pytest.mark.integration

VMS = [str(uuid.UUID(int=i, version=4)) for i in (11, 12)]
CHANNELS = {
    "agent_raw": "agentRaw",
    "hypervisor_events": "hypervisorEvents",
    "control_events": "controlEvents",
    "directory": "directory",
    "agent_dlq": "agentDlq",
    "events_outbound": "eventsOutbound",
    "worker_state": "workerState",
}
DIRECTORY = (
    User(id="root", name="Root", role="admin"),
    User(id="alice", name="Alice", department="eng"),
    Department(id="eng", name="Engineering"),
    Vm(id=VMS[0], name="alpha", owner="alice", department="eng"),
    Vm(id=VMS[1], name="beta", owner="root"),
)


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    await close_all(made)


class Acks:
    """What the client emitted and what the server answered, for the contract check."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.sent: list[tuple[str, Any, Any]] = []

    async def call(self, event: str, data: Any) -> Any:
        answer = await self.client.sio.call(event, data, timeout=10)
        self.sent.append((event, data, answer))
        return answer


async def test_every_record_and_event_of_a_running_pipeline_is_in_the_contract(
    settings: Settings,
    topics_ready: Topics,
    chdb_store: ClickHouseStore,
    clients: list[Client],
) -> None:
    contract = Contract()
    fleet = FleetSimulator(settings.bridge.socket_dir, VMS, 0.1, seed=13, keep_sent=True, dialect=2)
    print(f"simulator seed={fleet.seed}")
    await fleet.start()
    bridge = Bridge(settings, reconnect_base_s=0.05, max_line=64 * 1024)
    watcher = HypervisorWatcher(
        settings, uri="test:///default", reconnect_base_s=0.1, alive_interval_s=0.1
    )
    try:
        async with (
            gateway_with(settings, topics_ready, DIRECTORY) as gateway,
            running_worker(settings, chdb_store),
        ):
            await bridge.start()
            await watcher.start()
            root = await connect(gateway.url, {"token": token(settings, "root")}, into=clients)
            acks = Acks(root)
            greeting = await root.wait_for("connected")
            assert (await acks.call("subscribe", {"vmId": VMS[0]}))["ok"] is True
            assert (await acks.call("subscribe", {"vmId": "no-such-vm"}))["ok"] is False
            await root.wait(lambda: len(root.named("metricsUpdate")) >= 2, 20)
            recent = await acks.call("metrics:recent", {"vmId": VMS[0], "count": 5})
            assert recent["ok"] is True and recent["samples"]
            assert (await acks.call("metrics:recent", {"vmId": 7}))["error"] == "Invalid vmId"
            assert (await acks.call("unsubscribe", {"vmId": VMS[0]}))["ok"] is True
            assert (await acks.call("disconnect", {}))["error"] == "Reserved event name"
            assert (await acks.call("make:admin", {"user": "alice"}))["error"] == "Unknown event"

            # a broken line from an agent, one past the bridge's limit, an unknown message type
            fleet.inject(VMS[1], b'{"type": "metrics", "timestamp": "soon"')
            fleet.inject(VMS[1], b'{"type": "keep_alive", "pad": "' + b"x" * 70_000 + b'"}')
            fleet.inject(VMS[1], json.dumps({"type": "telemetry_v9", "vm_id": VMS[1]}).encode())

            producer = make_producer(settings.kafka.bootstrap or "", linger_ms=0)
            await producer.start()
            try:
                for action in ("power_off", "power_on"):
                    await publish_event(
                        producer, topics_ready, "vms", action, {"vmId": VMS[1]}, "alice"
                    )
                await publish_event(producer, topics_ready, "departments", "update", {"id": "eng"})
                await delete_record(producer, topics_ready, "department", "gone")
            finally:
                await producer.stop()
            await root.wait(lambda: any(n.endswith(":vms:power_on") for n in root.names()), 20)
            async with agent_collector(settings, topics_ready) as lines:
                # the bridge's (too long) and the worker's (broken JSON)
                await lines.wait_for("two dead letters", lambda: len(lines.dlq) >= 2, 20)

            # resuming: another socket of the same user, from the greeting's position
            alice = await connect(gateway.url, {"token": token(settings, "alice")}, into=clients)
            await alice.wait_for("connected")
            resumed = await connect(
                gateway.url,
                {
                    "token": token(settings, "root"),
                    "lastPosition": greeting["position"],
                    "vmIds": [VMS[0], "vm-of-nobody"],
                },
                into=clients,
            )
            outcome = await resumed.wait_for("resumed")
            assert outcome["denied"] == ["vm-of-nobody"]
            refused = Client()
            with pytest.raises(socketio.exceptions.ConnectionError):
                await refused.sio.connect(gateway.url, transports=["websocket"], wait_timeout=5)
    finally:
        await watcher.stop()
        await bridge.stop()
        await fleet.stop()

    # --- Socket.IO: everything the server sent and answered ---
    seen: dict[str, int] = {}
    for client in (root, alice, resumed):
        for event, payload in client.events:
            mid = contract.socketio_event(event, payload)
            seen[mid] = seen.get(mid, 0) + 1
    assert contract.socketio_event("CONNECT_ERROR", refused.refusal) == "connectRefusal"
    for event, data, answer in acks.sent:
        if data == {"vmId": 7}:  # sent to be refused: not a request of the contract
            with pytest.raises(AssertionError, match="matches no message"):
                contract.client_event(event, data)
        else:
            contract.client_event(event, data)
        seen[contract.ack(event, answer)] = seen.get(contract.ack(event, answer), 0) + 1
    for request in (
        {"token": "x"},
        {"token": "x", "lastPosition": greeting["position"], "vmIds": [VMS[0]]},
    ):
        assert contract.client_event("CONNECT", request) == "connectAuth"
    print(f"Socket.IO messages seen: {seen}")
    assert {
        "connected",
        "metricsUpdate",
        "userResourceEvent",
        "resumed",
        "subscribeAck",
        "unsubscribeAck",
        "metricsRecentAck",
        "refusedAck",
    } <= set(seen)

    # --- Kafka: every record of every topic, from the beginning ---
    by_topic = {getattr(topics_ready, attr): cid for attr, cid in CHANNELS.items()}
    records: dict[str, list[Any]] = {cid: [] for cid in CHANNELS.values()}
    async with reading_from_start(settings, list(by_topic)) as consumer:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        pending = {tp for tp, end in ends.items() if end > 0}
        while pending:
            for tp, batch in (await consumer.getmany(timeout_ms=1000)).items():
                records[by_topic[tp.topic]].extend(batch)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    dead = {
        decode_dlq_record(r.value).raw.encode()
        for r in records["agentDlq"]
        if decode_dlq_record(r.value).raw_encoding == "utf-8"
    }
    kinds: dict[str, int] = {}
    for cid, found in records.items():
        assert found, f"no record on {cid}: the test did not exercise it"
        for r in found:
            headers = {k: bytes(v) for k, v in r.headers}
            try:
                mid = contract.kafka_message(cid, r.key, r.value, headers)
            except AssertionError:
                if cid == "agentRaw" and r.value in dead:
                    mid = "refused line (dead-lettered)"
                else:
                    raise
            kinds[mid] = kinds.get(mid, 0) + 1
    print(f"Kafka messages seen: {kinds}")
    assert kinds["refused line (dead-lettered)"] == 1
    assert {
        "agentLine",
        "agentConnection",
        "hypervisorEvent",
        "resourceEvent",
        "directoryUser",
        "directoryVm",
        "directoryDepartment",
        "directoryTombstone",
        "dlqRecord",
        "outboundEvent",
        "workerState",
    } <= set(kinds)
