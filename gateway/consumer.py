"""The outbound consumer: ``events.outbound`` -> router -> Socket.IO rooms.

Every gateway instance reads *all* partitions without a consumer group: a
browser may be connected to any instance, so each instance must see every
event and drop those with no local recipient (emitting to an empty room is a
no-op). It starts at the end of the topic; replaying history to reconnecting
clients is the job of the future resume feature, not of a restart.

No record may stop the loop: an undecodable record or a failing emit is
logged with its position and skipped, and the events around it go on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

from gateway.rooms import VM_ROOM_PREFIX
from gateway.router import METRICS_RESOURCE, Delivery, route
from schemas.directory import Directory
from schemas.events import OutboundEvent, decode_outbound

__all__ = ["Emit", "OutboundConsumer", "RecentMetrics"]

log = logging.getLogger(__name__)

Emit = Callable[[str, Any, str], Awaitable[None]]
"""``emit(event_name, payload, room)``; the service binds it to ``AsyncServer.emit``."""


class RecentMetrics:
    """The latest metric samples per VM, for ``metrics:recent``.

    Bounded twice, because the VM ids come from the stream: ``per_vm`` samples
    per VM and ``max_vms`` VMs, the least recently updated forgotten first.
    """

    def __init__(self, *, per_vm: int = 60, max_vms: int = 10_000) -> None:
        self._per_vm = per_vm
        self._max_vms = max_vms
        self._samples: collections.OrderedDict[str, collections.deque[Any]] = (
            collections.OrderedDict()
        )

    def add(self, vm_id: str, sample: Any) -> None:
        ring = self._samples.pop(vm_id, None)
        if ring is None:
            ring = collections.deque(maxlen=self._per_vm)
        ring.append(sample)
        self._samples[vm_id] = ring
        while len(self._samples) > self._max_vms:
            self._samples.popitem(last=False)

    def latest(self, vm_id: str, count: int) -> list[Any]:
        """Up to ``count`` samples, oldest first."""
        ring = self._samples.get(vm_id)
        if ring is None or count <= 0:
            return []
        return list(ring)[-count:]

    def observe(self, event: OutboundEvent) -> None:
        """Keep a metrics event's sample for each ``vm:<id>`` room it was sent to."""
        if event.resource != METRICS_RESOURCE:
            return
        for room in event.rooms:
            if room.startswith(VM_ROOM_PREFIX):
                self.add(room[len(VM_ROOM_PREFIX) :], event.data)


class OutboundConsumer:
    """Consumes ``events.outbound`` from the latest offsets and emits each delivery.

    ``consuming`` is set once every partition is assigned and its position
    resolved, i.e. from then on every new event is seen: health checks and
    tests wait on it.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        directory: Directory,
        namespace_of: Callable[[str], str],
        emit: Emit,
        *,
        recent: RecentMetrics | None = None,
        client_id: str = "vmpulse-gateway",
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._directory = directory
        self._namespace_of = namespace_of
        self._emit = emit
        self._recent = recent
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.consuming = asyncio.Event()
        self.skipped = 0
        self.delivered = 0

    async def start(self) -> None:
        # Subscribing without a group makes aiokafka assign every partition of the
        # topic to this consumer (and follow partitions added later). Assigning by
        # hand would need the partition list first, which aiokafka >= 0.14 does not
        # have after start() for a topic it was not told about.
        consumer = AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        await consumer.start()
        self._consumer = consumer
        try:
            tps = sorted(consumer.assignment())
            if not tps:
                raise KafkaError(f"topic {self._topic!r} has no partitions")
            await consumer.seek_to_end(*tps)
            # seek_to_end is lazy; resolving positions now pins "the end" to this
            # moment, so an event produced after `consuming` is set is never missed.
            for tp in tps:
                await consumer.position(tp)
        except BaseException:
            await self._close_consumer()
            raise
        self.consuming.set()
        self._task = asyncio.create_task(self._run(), name="gateway-outbound")

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=500)
            except Exception as exc:
                # aiokafka retries transient errors itself; what reaches us is worth
                # a log line and a pause, not the end of live updates.
                log.warning("outbound fetch failed, retrying in 1 s: %r", exc)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    await self.handle(record)

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Decode, route and emit one record; log and skip whatever is wrong with it."""
        if record.value is None:
            return
        try:
            event = decode_outbound(record.value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.skipped += 1
            log.warning(
                "skipping undecodable outbound record %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return
        await self.dispatch(event)

    async def dispatch(self, event: OutboundEvent) -> None:
        try:
            deliveries = route(event, self._directory, self._namespace_of)
            if self._recent is not None:
                self._recent.observe(event)
        except Exception:
            self.skipped += 1
            log.exception("cannot route outbound event %s", event.id)
            return
        for delivery in deliveries:
            await self._deliver(delivery, event.id)

    async def _deliver(self, delivery: Delivery, event_id: str) -> None:
        try:
            await self._emit(delivery.event, delivery.payload, delivery.room)
        except Exception:
            log.exception("emit of event %s to %s failed", event_id, delivery.room)
        else:
            self.delivered += 1

    async def stop(self) -> None:
        self.consuming.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("outbound consumer task ended with an error")
            self._task = None
        await self._close_consumer()

    async def _close_consumer(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
