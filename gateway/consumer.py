"""The outbound consumer: ``events.outbound`` -> deliveries -> Socket.IO rooms.

Every gateway instance reads *all* partitions without a consumer group: a
browser may be connected to any instance, so each instance must see every
event and drop those with no local recipient (emitting to an empty room is a
no-op).

At start it reads back the resume window (``offsets_for_times(now - window)``
up to the end offsets of that moment) into the :class:`~gateway.resume.ReplayLog`
without emitting anything, so that a client reconnecting after a gateway
restart can still be given what it missed; only then is it ``consuming``.
Every delivered payload gets the event's ``position`` (gateway/resume.py).

Handling holds :attr:`OutboundConsumer.lock`; a resume takes the same lock to
replay and join its rooms in one step, so a resumed client gets each event
exactly once, either replayed or live.

No record may stop the loop: an undecodable record or a failing emit is
logged with its position and skipped, and the events around it go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from gateway.deliveries import Delivery, route
from gateway.recent import RecentMetrics
from gateway.resume import ReplayLog
from gateway.stats import GatewayStats
from gateway.vmstate import VmStates
from infra.kafka_io import LIVE_FETCH_WAIT_MS
from infra.tasks import cancel_and_wait
from schemas.directory import Directory
from schemas.events import OutboundEvent, decode_outbound_for_routing

__all__ = ["POSITION_KEY", "Emit", "OutboundConsumer", "positioned"]

log = logging.getLogger(__name__)

Emit = Callable[[str, Any, str], Awaitable[tuple[int, int]]]
"""``emit(event_name, payload, room)`` -> (sockets reached, sockets that were closing)."""

POSITION_KEY = "position"
# Caught up means at most this many records behind the partitions' ends.
READY_LAG = 1000


def positioned(payload: Any, position: str) -> Any:
    """The payload with its event's position added (object payloads only, as documented).

    A live update's data arrives as raw JSON (schemas/events.decode_outbound_for_routing):
    the position is written into the object's text, last, as a dict would have it
    (a ``position`` the data had already is overridden: the last key wins in JSON.parse).
    """
    if isinstance(payload, dict):
        return {**payload, POSITION_KEY: position}
    if isinstance(payload, msgspec.Raw):
        text = bytes(payload).strip()
        if text[:1] != b"{" or text[-1:] != b"}":
            return payload
        inner = text[1:-1].strip()
        tail = _POSITION_FIELD + msgspec.json.encode(position) + b"}"
        return msgspec.Raw(b"{" + inner + b"," + tail if inner else b"{" + tail)
    return payload


_POSITION_FIELD = msgspec.json.encode(POSITION_KEY) + b":"


class OutboundConsumer:
    """Consumes ``events.outbound``, keeps the replay log and emits each delivery.

    ``consuming`` is set once the resume window has been read back and every
    partition's position is resolved, i.e. from then on every new event is
    seen and emitted: health checks and tests wait on it.
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
        vm_states: VmStates | None = None,
        stats: GatewayStats | None = None,
        window_s: float = 600.0,
        max_log_events: int = 100_000,
        client_id: str = "vmpulse-gateway",
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._directory = directory
        self._namespace_of = namespace_of
        self._emit = emit
        self._recent = recent
        self._vm_states = vm_states
        self._stats = stats if stats is not None else GatewayStats()
        self._window_ms = int(window_s * 1000)
        self._max_log_events = max_log_events
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None
        self._log: ReplayLog | None = None
        self._progress = asyncio.Event()
        self.lock = asyncio.Lock()
        self.consuming = asyncio.Event()
        self.skipped = 0
        self.delivered = 0

    @property
    def log(self) -> ReplayLog:
        if self._log is None:
            raise RuntimeError("outbound consumer is not started")
        return self._log

    async def start(self) -> None:
        # Subscribing without a group makes aiokafka assign every partition of the
        # topic to this consumer. Assigning by hand would need the partition list
        # first, which aiokafka >= 0.14 does not have after start() for a topic it
        # was not told about.
        consumer = AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=LIVE_FETCH_WAIT_MS,
        )
        await consumer.start()
        self._consumer = consumer
        try:
            tps = sorted(consumer.assignment())
            if not tps:
                raise KafkaError(f"topic {self._topic!r} has no partitions")
            if [tp.partition for tp in tps] != list(range(len(tps))):
                raise KafkaError(f"topic {self._topic!r} partitions are not 0..n-1")
            self._tps = tps
            await self._read_back_window(consumer, tps)
        except BaseException:
            await self._close_consumer()
            raise
        self.consuming.set()
        self._task = asyncio.create_task(self._run(), name="gateway-outbound")

    async def _read_back_window(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> None:
        """Fill the replay log with the window's records, emitting nothing."""
        end = await consumer.end_offsets(tps)
        start = dict(end)
        if self._window_ms > 0 and self._max_log_events > 0:
            since = int(time.time() * 1000) - self._window_ms
            found = await consumer.offsets_for_times(dict.fromkeys(tps, since))
            for tp, hit in found.items():
                if hit is not None:
                    start[tp] = hit.offset
        for tp in tps:
            consumer.seek(tp, start[tp])
        self._log = ReplayLog(
            [start[tp] for tp in tps], window_ms=self._window_ms, max_events=self._max_log_events
        )
        pending = {tp for tp in tps if start[tp] < end[tp]}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=2000)
            for records in batches.values():
                for record in records:
                    self._log_record(record)
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        log.info(
            "gateway read back %d outbound events (window %d s)",
            len(self._log),
            self._window_ms // 1000,
        )

    def lag(self) -> int:
        """Records on the topic that this consumer has not handled yet."""
        if self._consumer is None or self._log is None:
            return 0
        total = 0
        for tp, handled in zip(self._tps, self._log.offsets, strict=True):
            high = self._consumer.highwater(tp)
            if high is not None:
                total += max(0, high - handled)
        return total

    @property
    def caught_up(self) -> bool:
        return self.consuming.is_set() and self.lag() <= READY_LAG

    async def wait_progress(self) -> None:
        """Return after the next batch is handled (for resumes from a later position)."""
        await self._progress.wait()

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
            async with self.lock:
                for records in batches.values():
                    for record in records:
                        await self.handle(record)
                if self._log is not None:
                    self._log.expire(int(time.time() * 1000))
            self._progress.set()
            self._progress = asyncio.Event()

    def _log_record(self, record: ConsumerRecord[bytes, bytes]) -> tuple[OutboundEvent, str] | None:
        """Decode and log one record; None (and skipped) when it is not usable."""
        assert self._log is not None
        self._stats.events_in.inc()
        if record.value is None:
            self._log.skip(record.partition, record.offset)
            return None
        try:
            event = decode_outbound_for_routing(record.value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._log.skip(record.partition, record.offset)
            self.skipped += 1
            self._stats.events_skipped.inc()
            log.warning(
                "skipping undecodable outbound record %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return None
        position = self._log.append(
            record.partition, record.offset, record.timestamp, event, record.value
        )
        self._observe(event)
        return event, position

    def _observe(self, event: OutboundEvent) -> None:
        try:
            if self._recent is not None:
                self._recent.observe(event)
            if self._vm_states is not None:
                self._vm_states.observe(event, self._directory.vms)
        except Exception:
            log.exception("cannot keep state of outbound event %s", event.id)

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Decode, log, route and emit one record; log and skip whatever is wrong with it."""
        logged = self._log_record(record)
        if logged is not None:
            await self.dispatch(*logged)

    async def dispatch(self, event: OutboundEvent, position: str) -> None:
        try:
            deliveries = route(event, self._directory, self._namespace_of)
        except Exception:
            self.skipped += 1
            self._stats.events_skipped.inc()
            log.exception("cannot route outbound event %s", event.id)
            return
        for delivery in deliveries:
            await self._deliver(delivery, event.id, position)

    async def _deliver(self, delivery: Delivery, event_id: str, position: str) -> None:
        try:
            reached, skipped = await self._emit(
                delivery.event, positioned(delivery.payload, position), delivery.room
            )
        except Exception:
            self._stats.failed(delivery.user, 1)
            log.exception("emit of event %s to %s failed", event_id, delivery.room)
        else:
            self.delivered += 1
            if reached:
                self._stats.delivered(delivery.user, reached)
            if skipped:
                self._stats.failed(delivery.user, skipped)

    async def stop(self) -> None:
        self.consuming.clear()
        task, self._task = self._task, None
        await cancel_and_wait(task, "the outbound consumer")
        await self._close_consumer()

    async def _close_consumer(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
