"""The hypervisor watcher on libvirt's test driver (in-process, ``test:///default``) and real Kafka.

The test driver is libvirt's own, not a mock: domains, state changes and
lifecycle events go through the same libvirt client library and libvirtaio
glue as with QEMU; only the hypervisor behind it is simulated by libvirt.
Its state is shared by every connection to ``test:///default`` in the process,
so the test drives the domain through a connection of its own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import libvirt
import prometheus_client
import pytest
from aiokafka import AIOKafkaConsumer

from agents.hypervisor import HypervisorWatcher
from infra.config import Settings
from schemas.hypervisor import RECONCILE, HypervisorEvent, decode_event
from schemas.topics import Topics
from tests.support.kafka import reading_from_start

pytestmark = pytest.mark.integration

URI = "test:///default"


class Events:
    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.seen: list[tuple[bytes, HypervisorEvent]] = []

    async def wait_for(self, what: str, pred: Any, within_s: float) -> float:
        """Wait for a new event matching ``pred``; return how long it took."""
        start = time.monotonic()
        while True:
            batches = await self.consumer.getmany(timeout_ms=50)
            for records in batches.values():
                for r in records:
                    self.seen.append((r.key, decode_event(r.value)))
            for i, (_, ev) in enumerate(self.seen):
                if pred(ev):
                    del self.seen[: i + 1]
                    return time.monotonic() - start
            if time.monotonic() - start > within_s:
                raise AssertionError(f"no {what} within {within_s}s; saw {self.seen}")


@pytest.fixture
async def events(settings: Settings, topics_ready: Topics) -> AsyncIterator[Events]:
    async with reading_from_start(settings, (topics_ready.hypervisor_events,)) as consumer:
        yield Events(consumer)


async def test_lifecycle_events_and_reconcile_after_a_dropped_connection(
    settings: Settings, topics_ready: Topics, events: Events
) -> None:
    admin = libvirt.open(URI)
    dom = admin.lookupByName("test")
    vm = dom.UUIDString().lower()
    if dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
        dom.create()
    watcher = HypervisorWatcher(settings, uri=URI, reconnect_base_s=0.1, alive_interval_s=0.1)
    await watcher.start()
    try:
        took = await events.wait_for(
            "start-up reconciliation",
            lambda e: e.vm_id == vm and e.reason == RECONCILE and e.state == "running",
            5.0,
        )
        print(f"reconciled after {took:.3f}s")
        steps = [
            (dom.suspend, "paused", "paused"),
            (dom.resume, "running", "unpaused"),
            (dom.destroy, "shutoff", "destroyed"),
            (dom.create, "running", "booted"),
        ]
        for action, state, reason in steps:
            action()
            took = await events.wait_for(
                f"{state}/{reason}",
                lambda e, s=state, r=reason: (e.vm_id, e.state, e.reason) == (vm, s, r),
                1.0,
            )
            print(f"{reason}: {took * 1000:.0f} ms")

        # The connection drops (as when libvirtd restarts); meanwhile the VM pauses.
        watcher.connection.close()
        dom.suspend()
        took = await events.wait_for(
            "reconciliation after the reconnect",
            lambda e: (e.vm_id, e.state, e.reason) == (vm, "paused", RECONCILE),
            5.0,
        )
        print(f"reconnected and reconciled after {took:.3f}s")
        assert watcher.connects == 2
        # And live events flow again on the new connection.
        dom.resume()
        await events.wait_for(
            "resume after the reconnect",
            lambda e: (e.vm_id, e.state, e.reason) == (vm, "running", "unpaused"),
            1.0,
        )
        # what its health port's /metrics says (`vmpulse hypervisor`)
        text = prometheus_client.generate_latest(watcher.metrics.registry).decode()
        series = dict(ln.split(" ") for ln in text.splitlines() if ln.startswith("vmpulse_"))
        assert series["vmpulse_hypervisor_connected"] == "1.0"
        assert series["vmpulse_hypervisor_connects_total"] == "2.0"
        assert float(series["vmpulse_hypervisor_events_total"]) >= 5  # the steps, the resume
        assert float(series["vmpulse_hypervisor_reconciled_total"]) >= 2
        assert "process_cpu_seconds_total" in text
    finally:
        await watcher.stop()
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
        admin.close()
