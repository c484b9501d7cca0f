"""Wiring of the event stages into the Faust app: routing, presence and alerts.

Thin on purpose: every decision is in a pure module (recipients.py, presence.py,
alerts.py); this module only moves records between Kafka and them.

* ``control.events`` (the platform's resource events) -> route -> events.outbound
* from the worker's ingest (streams/ingest.py, same consumer as agent.raw):
  ``hypervisor.events`` (:meth:`EventStages.hypervisor_event`) -> presence
  (power state); agent traffic (:meth:`EventStages.observe_raw`) -> presence
  (agent state); accepted samples (:meth:`EventStages.observe_samples`) ->
  alerts; all -> route -> events.outbound
* a timer turns silent agents offline.

The directory comes from :class:`infra.kafka_io.DirectoryTail`, not from a
Faust GlobalTable: each worker needs the *whole* directory (routing a VM event
needs the department's members, wherever their records live), the compacted
``directory`` topic already is the durable source of truth, and the gateway
folds the same topic with the same code. A GlobalTable would copy the topic
into a second changelog topic and recover it through Faust's table machinery
on every start, for nothing the tail does not already give.

State (presence, alerts) is held per worker for the VMs of its partitions.
agent.raw and hypervisor.events share the key (VM id) and the partition
count, and the ingest reads both in one group with the range assignor, so one
worker holds both of a VM's partitions. Every change is written to the
compacted ``worker.state`` topic, and the next owner of a partition resumes
its VMs from there (streams/state_log.py): a VM silent since a restart still
turns offline, an open alert is resolved rather than raised twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import faust
import mode
import msgspec

from infra.config import Settings
from infra.kafka_io import DirectoryTail
from schemas.events import ResourceEvent, encode_outbound, routing_key
from schemas.facts import SystemSample
from schemas.hypervisor import HypervisorEventError, decode_hypervisor_event
from schemas.topics import Topics
from streams.alerts import AlertEngine, AlertSample, Rule
from streams.outbox import TopicSender
from streams.pipeline import RawRecord
from streams.presence import Presence
from streams.recipients import route_event
from streams.state_log import read_partitions, restore_all, snapshot

__all__ = [
    "DirectoryService",
    "EventStages",
    "alert_rules",
    "alert_sample",
    "register_event_agents",
]

log = logging.getLogger(__name__)

_resource_decoder = msgspec.json.Decoder(ResourceEvent)
DIRECTORY_TIMEOUT_S = 30.0


class DirectoryService(mode.Service):  # type: ignore[misc]
    """The directory tail as a service that starts and stops with the app."""

    def __init__(self, tail: DirectoryTail, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tail = tail

    async def on_start(self) -> None:
        await self.tail.start()

    async def on_stop(self) -> None:
        await self.tail.stop()


def alert_rules(settings: Settings) -> list[Rule]:
    return [
        Rule("cpu_high", "cpu", settings.alerts.cpu_percent, settings.alerts.cpu_for_s),
        Rule("memory_high", "memory", settings.alerts.memory_percent, settings.alerts.memory_for_s),
        Rule("disk_full", "disk", settings.alerts.disk_percent, 0.0),
    ]


def _disks(sample: SystemSample) -> dict[str, float]:
    """Disk use in percent per mount point."""
    found: dict[str, float] = {}
    for disk in sample.disks:
        total, used = disk.total_gb, disk.used_gb
        if total and used is not None and total > 0:
            found[disk.mount_point] = 100.0 * used / total
    return found


def alert_sample(sample: SystemSample) -> AlertSample:
    """The figures alerts need, from a normalized system sample of the pipeline."""
    total = sample.memory_total_kb or 0
    used = sample.memory_used_kb or 0
    return AlertSample(
        sample.vm_id,
        sample.ts,
        sample.cpu_usage_percent,
        100.0 * used / total if total > 0 else None,
        _disks(sample) if sample.disks else {},
    )


class EventStages:
    """Presence, alerts and routing of one worker; the storage agent feeds it."""

    def __init__(
        self,
        settings: Settings,
        tail: DirectoryTail,
        outbound: Any,
        state: Any,
    ) -> None:
        assert settings.kafka.bootstrap is not None
        self.presence = Presence(settings.worker.agent_interval_s)
        self.alerts = AlertEngine(alert_rules(settings))
        self.tail = tail
        self._outbound = outbound
        self._state = state  # a TopicSender on worker.state
        self._bootstrap = settings.kafka.bootstrap
        self._auth = settings.kafka.auth
        self._owned: dict[str, int] = {}  # VM id -> its partition, for VMs held here
        self._restored: set[int] = set()  # partitions whose state was read back
        self.stats = {"routed": 0, "bad_control": 0, "bad_hypervisor": 0, "restored_vms": 0}

    async def take(self, partitions: Iterable[int]) -> None:
        """Resume the VMs of partitions given to this worker, before any of their records."""
        new = set(partitions) - self._restored
        if not new:
            return
        records = await read_partitions(self._bootstrap, self._state.topic, new, auth=self._auth)
        restored = restore_all(
            self.presence,
            self.alerts,
            ((vm_id, value) for vm_id, (_, value) in records.items()),
            time.time(),
        )
        for vm_id in restored:
            self._owned[vm_id] = records[vm_id][0]
        self._restored |= new
        self.stats["restored_vms"] += len(restored)
        log.info("resumed %d VMs of partitions %s", len(restored), sorted(new))

    async def release(self) -> None:
        """Partitions are moving: write what changed, then forget every VM.

        Each next owner resumes them (:meth:`take`) from what is written by then,
        so the writes must be acknowledged before the partitions go.
        """
        try:
            await self.persist()
            await self._state.flush()
        finally:  # held no longer, whatever happened: another worker owns them now
            self.presence.drop(list(self._owned))
            self.alerts.drop(list(self._owned))
            self._owned.clear()
            self._restored.clear()

    async def persist(self) -> None:
        """Write the VMs whose state changed to worker.state, at their partitions."""
        changed = self.presence.changed | self.alerts.changed
        self.presence.changed.clear()
        self.alerts.changed.clear()
        for vm_id in changed:
            partition = self._owned.get(vm_id)
            if partition is not None:
                value = snapshot(self.presence, self.alerts, vm_id)
                await self._state.send(key=vm_id.encode(), value=value, partition=partition)

    async def emit(self, events: Iterable[ResourceEvent]) -> None:
        """Route each event with the current directory and send it to events.outbound."""
        for event in events:
            if not self.tail.caught_up.is_set():
                await self._wait_for_directory()
            out = route_event(event, self.tail.directory)
            await self._outbound.send(key=routing_key(event).encode(), value=encode_outbound(out))
            self.stats["routed"] += 1

    async def _wait_for_directory(self) -> None:
        try:
            await asyncio.wait_for(self.tail.caught_up.wait(), DIRECTORY_TIMEOUT_S)
        except TimeoutError:
            log.warning("directory not caught up after %s s; routing anyway", DIRECTORY_TIMEOUT_S)

    async def observe_raw(self, records: Sequence[RawRecord]) -> None:
        """Agent traffic: connection records and lines mean presence."""
        now = time.time()
        events: list[ResourceEvent] = []
        owned = self._owned
        for rec in records:
            if not rec.key:
                continue
            vm_id = rec.key.decode("utf-8", errors="replace")
            owned[vm_id] = rec.partition
            control = rec.headers.get("control")
            if control == b"disconnected":
                events += self.presence.disconnected(vm_id, now)
            elif control is None and rec.value:
                events += self.presence.activity(vm_id, now)
        await self.emit(events)

    async def observe_samples(self, samples: Iterable[SystemSample]) -> None:
        """Accepted metric samples: alert rules."""
        events: list[ResourceEvent] = []
        for sample in samples:
            events += self.alerts.observe(alert_sample(sample))
        await self.emit(events)

    async def control_event(self, raw: bytes | None) -> None:
        try:
            event = _resource_decoder.decode(raw or b"")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.stats["bad_control"] += 1
            log.warning("skipping malformed control event: %s", exc)
            return
        await self.emit([event])

    async def hypervisor_event(self, raw: bytes | None, partition: int) -> None:
        try:
            event = decode_hypervisor_event(raw or b"")
        except HypervisorEventError as exc:
            self.stats["bad_hypervisor"] += 1
            log.warning("skipping malformed hypervisor event: %s", exc)
            return
        self._owned[event.vm_id] = partition
        await self.emit(self.presence.power(event.vm_id, event.state))
        await self.persist()

    async def tick(self) -> None:
        await self.emit(self.presence.tick(time.time()))
        await self.persist()


def register_event_agents(app: faust.App, settings: Settings) -> EventStages:
    """Add the directory, the control-events agent and the presence timer to ``app``."""
    assert settings.kafka.bootstrap is not None
    topics = Topics(settings.kafka.topic_prefix)
    tail = DirectoryTail(settings.kafka.bootstrap, topics, auth=settings.kafka.auth)
    app.add_dependency(DirectoryService(tail))
    outbound = TopicSender(app, topics.events_outbound)
    control = app.topic(topics.control_events, key_serializer="raw", value_serializer="raw")
    stages = EventStages(settings, tail, outbound, TopicSender(app, topics.worker_state))

    @app.agent(control)  # type: ignore[untyped-decorator]
    async def control_agent(stream: Any) -> None:
        async for value in stream:
            await stages.control_event(value)

    tick_s = min(max(settings.worker.agent_interval_s / 4, 0.05), 5.0)

    @app.timer(interval=tick_s)  # type: ignore[untyped-decorator]
    async def presence_tick() -> None:
        if not app.should_stop:  # the producer may already be gone
            await stages.tick()

    app.vmpulse_event_agents = (control_agent, presence_tick)
    return stages
