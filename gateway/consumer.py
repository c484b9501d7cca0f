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

from gateway.deliveries import Delivery, route
from gateway.recent import RecentMetrics
from gateway.resume import ReplayLog
from gateway.stats import GatewayStats
from gateway.vmstate import VmStates
from infra.config import KafkaAuth
from infra.kafka_auth import PLAINTEXT
from infra.kafka_io import LIVE_FETCH_WAIT_MS
from infra.partition_reader import PartitionReader, Record
from infra.tasks import cancel_and_wait
from schemas.directory import Directory
from schemas.events import OutboundEvent, decode_outbound_for_routing

__all__ = ["POSITION_KEY", "Emit", "Occupied", "OutboundConsumer", "positioned"]

log = logging.getLogger(__name__)

Emit = Callable[[str, Any, str], Awaitable[tuple[int, int]]]
"""``emit(event_name, payload, room)`` -> (sockets reached, sockets that were closing)."""
Occupied = Callable[[str], bool]
"""``occupied(room)``: True if a socket is in the room (an emit to it can reach someone)."""

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
        occupied: Occupied | None = None,
        window_s: float = 600.0,
        max_log_events: int = 100_000,
        client_id: str = "vmpulse-gateway",
        auth: KafkaAuth = PLAINTEXT,
    ) -> None:
        self._bootstrap = bootstrap
        self._auth = auth
        self._topic = topic
        self._directory = directory
        self._namespace_of = namespace_of
        self._emit = emit
        # Every VM's samples pass here, watched or not: an update for a room nobody is
        # in skips the payload's copy with its position (18 % of the gateway's CPU at
        # 10,000 VMs with 100 watched, docs/BENCHMARKS.md session 11).
        self._occupied = occupied
        self._recent = recent
        self._vm_states = vm_states
        self._stats = stats if stats is not None else GatewayStats()
        self._window_ms = int(window_s * 1000)
        self._max_log_events = max_log_events
        self._client_id = client_id
        self._reader: PartitionReader | None = None
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
        """Read back the resume window, then consume live (in the reader's thread)."""
        reader = PartitionReader(
            self._bootstrap,
            self._topic,
            client_id=self._client_id,
            fetch_wait_ms=LIVE_FETCH_WAIT_MS,
            auth=self._auth,
        )
        self._reader = reader
        try:
            await reader.start()
            await self._read_back_window(reader)
        except BaseException:
            await self._close_consumer()
            raise
        self.consuming.set()
        self._task = asyncio.create_task(self._run(), name="gateway-outbound")

    async def _read_back_window(self, reader: PartitionReader) -> None:
        """Fill the replay log with the window's records, emitting nothing."""
        partitions = reader.partitions
        end = await reader.end_offsets()
        start = dict(end)
        if self._window_ms > 0 and self._max_log_events > 0:
            since = int(time.time() * 1000) - self._window_ms
            for partition, hit in (await reader.offsets_for_times(since)).items():
                if hit is not None:
                    start[partition] = hit
        self._log = ReplayLog(
            [start[p] for p in partitions],
            window_ms=self._window_ms,
            max_events=self._max_log_events,
        )
        reader.begin(start)
        pending = {p for p in partitions if start[p] < end[p]}
        while pending:
            for record in await reader.getmany():
                self._log_record(record)
            reached = reader.reached_end()
            handled = self._log.offsets
            pending = {p for p in pending if handled[p] < end[p] and reached.get(p, -1) < end[p]}
        reader.stop_end_reports()
        log.info(
            "gateway read back %d outbound events (window %d s)",
            len(self._log),
            self._window_ms // 1000,
        )

    def lag(self) -> int:
        """Records on the topic that this consumer has not handled yet."""
        if self._reader is None or self._log is None:
            return 0
        total = 0
        for partition, handled in enumerate(self._log.offsets):
            high = self._reader.highwater(partition)
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
        assert self._reader is not None
        reader = self._reader
        while True:
            batch = await reader.getmany()
            if not batch:
                continue
            async with self.lock:
                for record in batch:
                    await self.handle(record)
                if self._log is not None:
                    self._log.expire(int(time.time() * 1000))
            self._progress.set()
            self._progress = asyncio.Event()

    def _log_record(self, record: Record) -> tuple[OutboundEvent, str] | None:
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

    async def handle(self, record: Record) -> None:
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
        if self._occupied is not None and not self._occupied(delivery.room):
            self.delivered += 1  # to nobody: what an emit to the empty room returns
            return
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
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.stop()
