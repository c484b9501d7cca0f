"""Bridge against real unix sockets (the fleet simulator) and the real Kafka broker."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agents.bridge import Bridge
from agents.simulator.fleet import FleetSimulator
from infra.config import Settings
from schemas.topics import Topics
from tests.support.kafka import Collector, header, wait_until

pytestmark = pytest.mark.integration

VMS = [str(uuid.UUID(int=i, version=4)) for i in (1, 2, 3)]
NOT_A_VM = "not-a-vm"  # served too, and must be ignored: no UUID, no identity


@pytest.fixture
async def sim(settings: Settings) -> AsyncIterator[FleetSimulator]:
    fleet = FleetSimulator(
        settings.bridge.socket_dir, [*VMS, NOT_A_VM], 0.05, seed=7, keep_sent=True
    )
    print(f"simulator seed={fleet.seed}")
    await fleet.start()
    yield fleet
    await fleet.stop()


@pytest.fixture
async def bridge(
    settings: Settings, topics_ready: Topics, sim: FleetSimulator
) -> AsyncIterator[Bridge]:
    service = Bridge(settings, reconnect_base_s=0.05, max_line=4096)
    await service.start()
    yield service
    await service.stop()


def assert_in_order(sent: list[bytes], got: list[bytes]) -> None:
    """``got`` is a subsequence of ``sent``: nothing altered, nothing reordered."""
    it = iter(sent)
    for value in got:
        assert any(value == s for s in it), value[:200]


async def test_lines_from_three_vms_reach_agent_raw_byte_for_byte(
    bridge: Bridge, sim: FleetSimulator, collector: Collector, settings: Settings
) -> None:
    await collector.wait_for(
        "3 lines per VM", lambda: all(len(collector.for_vm(v)) >= 3 for v in VMS)
    )
    assert {r.key.decode() for r in collector.raw} == set(VMS)
    assert sim.clients(NOT_A_VM) == 0
    now_ms = time.time() * 1000
    for vm in VMS:
        records = collector.for_vm(vm)
        assert_in_order(sim.sent[vm], [r.value for r in records])
        for record in records:
            assert json.loads(record.value)["vmId"] == vm
            assert header(record, "transport") == b"unix"
            assert header(record, "peer") == os.fsencode(
                settings.bridge.socket_dir / f"{vm}.socket"
            )
            assert abs(int(header(record, "received_at")) - now_ms) < 60_000
            assert len(header(record, "conn_id")) == 32
        line_nos = [int(header(r, "line_no")) for r in records]
        assert line_nos == sorted(line_nos) and line_nos[0] >= 1
    assert bridge.connections == 3 and bridge.rejects == 0


async def test_new_socket_is_read_within_a_second(
    bridge: Bridge, sim: FleetSimulator, collector: Collector
) -> None:
    vm = str(uuid.uuid4())
    await sim.add(vm)
    took = await wait_until("bridge connects to the new socket", lambda: sim.clients(vm) == 1, 1.0)
    print(f"new socket connected after {took:.3f}s")
    await collector.wait_for("a line from the new VM", lambda: len(collector.for_vm(vm)) >= 1)
    assert_in_order(sim.sent[vm], [r.value for r in collector.for_vm(vm)])


async def test_restarted_server_is_reconnected(
    bridge: Bridge, sim: FleetSimulator, collector: Collector
) -> None:
    vm = VMS[0]
    await collector.wait_for("first connection's lines", lambda: len(collector.for_vm(vm)) >= 2)
    first_conn = header(collector.for_vm(vm)[0], "conn_id")
    await sim.restart(vm)

    def new_conn_lines() -> list[Any]:
        return [r for r in collector.for_vm(vm) if header(r, "conn_id") != first_conn]

    await collector.wait_for("lines from a new connection", lambda: len(new_conn_lines()) >= 2)
    assert [int(header(r, "line_no")) for r in new_conn_lines()][:2] == [1, 2]
    assert bridge.connections >= 4
    assert_in_order(sim.sent[vm], [r.value for r in collector.for_vm(vm)])


async def test_invalid_json_is_produced_and_the_next_line_follows(
    bridge: Bridge, sim: FleetSimulator, collector: Collector
) -> None:
    vm = VMS[1]
    await wait_until("bridge connected", lambda: sim.clients(vm) == 1)
    bad = b'{"type": "system_metrics", not json \xff'
    assert sim.inject(vm, bad) == 1

    def after_bad() -> list[Any]:
        values = [r.value for r in collector.for_vm(vm)]
        return values[values.index(bad) + 1 :] if bad in values else []

    await collector.wait_for("the bad line and the next one", lambda: len(after_bad()) >= 1)
    assert json.loads(after_bad()[0])["type"] == "system_metrics"
    assert collector.dlq == []


async def test_oversize_line_goes_to_the_dlq_and_the_stream_goes_on(
    bridge: Bridge, sim: FleetSimulator, collector: Collector
) -> None:
    vm = VMS[2]
    await wait_until("bridge connected", lambda: sim.clients(vm) == 1)
    huge = b"[" + b"7," * 5000 + b"7]"
    sim.inject(vm, huge)
    marker = b'{"after":"oversize"}'
    sim.inject(vm, marker)
    await collector.wait_for("the DLQ record", lambda: len(collector.dlq) == 1)
    await collector.wait_for(
        "the marker", lambda: marker in [r.value for r in collector.for_vm(vm)]
    )
    dead = collector.dlq[0]
    assert dead.key == vm.encode()
    body = json.loads(dead.value)
    assert body["reason"] == "line_too_long"
    assert body["raw_encoding"] == "utf-8" and body["raw"].encode() == huge[:1024]
    assert body["origin"]["topic"] is None and body["origin"]["offset"] is None
    assert body["origin"]["vm_id"] == vm
    assert body["origin"]["transport"] == "unix"
    assert body["origin"]["length"] == len(huge)
    assert bridge.rejects == 1
    assert huge not in [r.value for r in collector.raw]


async def test_removed_socket_ends_its_task(bridge: Bridge, sim: FleetSimulator) -> None:
    vm = VMS[0]
    await wait_until("bridge connected", lambda: sim.clients(vm) == 1)
    await sim.remove(vm)
    await wait_until("the watcher drops the VM", lambda: vm not in bridge.watcher.vm_ids, 2.0)
    assert bridge.watcher.vm_ids == frozenset(VMS[1:])


async def test_stop_flushes_everything_read(
    settings: Settings, topics_ready: Topics, sim: FleetSimulator, collector: Collector
) -> None:
    bridge = Bridge(settings, reconnect_base_s=0.05)
    await bridge.start()
    await wait_until("some lines", lambda: bridge.lines >= 30)
    await bridge.stop()
    produced = bridge.lines
    assert bridge.in_flight == 0 and bridge.send_errors == 0
    await collector.wait_for(f"all {produced} lines", lambda: len(collector.raw) >= produced)
    assert len(collector.raw) == produced


class LaggingProducer:
    """Takes records like ``confluent_kafka.Producer`` but reports their delivery only on
    request, like a broker that falls behind. (A stand-in: a real broker cannot be made
    to hold acknowledgements back on cue.)"""

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.records: list[tuple[bytes, dict[str, bytes]]] = []  # (key, headers)
        self.reports: list[Callable[[Any, Any], None]] = []
        self.lagging = True

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        partition: int,
        callback: Callable[[Any, Any], None] | None,
        on_delivery: None,
        timestamp: int,
        headers: Any,
        /,
    ) -> None:
        """Positional, as the bridge's sender calls confluent-kafka (agents/producing.py)."""
        self.values.append(value)
        self.records.append((key, dict(headers)))
        if callback is not None:
            self.reports.append(callback)

    def poll(self, timeout: float) -> int:
        if self.lagging or not self.reports:
            time.sleep(min(timeout, 0.01))  # called in a loop by the sender's poll thread
            return 0
        reports, self.reports = self.reports, []
        for report in reports:
            report(None, None)
        return len(reports)

    def list_topics(self, topic: str, timeout: float) -> None:
        return None

    def purge(self) -> None:
        self.reports.clear()

    def ack_all(self) -> None:
        """Acknowledge everything so far and from now on: the broker caught up."""
        self.lagging = False


async def test_slow_kafka_stops_reading_instead_of_buffering(
    settings: Settings, sim: FleetSimulator
) -> None:
    producer = LaggingProducer()
    bridge = Bridge(settings, producer=producer, reconnect_base_s=0.05, max_in_flight=5)
    await bridge.start()
    try:
        await wait_until("five records in flight", lambda: bridge.in_flight == 5)
        # The first read the full budget refuses holds every connection off reading
        # (before that, each may have read once more).
        await wait_until("every reader held off", lambda: bridge.read_holds == 1)
        read_before = bridge.bytes
        sent = sim.lines_sent
        await wait_until("the fleet writes on", lambda: sim.lines_sent >= sent + 12)
        assert bridge.bytes == read_before
        sent = sim.lines_sent
        await wait_until("the fleet writes on", lambda: sim.lines_sent >= sent + 12)
        assert len(producer.values) == 5 and bridge.in_flight == 5
        assert bridge.bytes == read_before
        producer.ack_all()
        await wait_until("reading resumes", lambda: len(producer.values) > 5)
    finally:
        producer.ack_all()
        await bridge.stop()
    assert bridge.in_flight == 0


async def test_a_vm_that_connects_while_kafka_lags_is_announced_at_once(
    settings: Settings, sim: FleetSimulator
) -> None:
    """Its connection event does not queue behind the full budget: a new connection
    read nothing until that record went out, so its first reads piled up meanwhile."""
    producer = LaggingProducer()
    bridge = Bridge(settings, producer=producer, reconnect_base_s=0.05, max_in_flight=5)
    await bridge.start()
    late_vm = str(uuid.UUID(int=9, version=4))
    late = FleetSimulator(settings.bridge.socket_dir, [late_vm], 0.05, seed=3)
    try:
        await wait_until("the budget is full", lambda: bridge.in_flight == 5)
        await late.start()
        await wait_until(
            "the late VM's connection event is produced",
            lambda: (
                (late_vm.encode(), b"connected")
                in [(key, h.get("control")) for key, h in producer.records]
            ),
        )
        assert bridge.in_flight == 6  # counted, past the limit: one per connection
        assert not [k for k, h in producer.records if k == late_vm.encode() and "control" not in h]
        producer.ack_all()
        await wait_until(
            "its lines follow once Kafka caught up",
            lambda: any(k == late_vm.encode() and "control" not in h for k, h in producer.records),
        )
    finally:
        producer.ack_all()
        await late.stop()
        await bridge.stop()
