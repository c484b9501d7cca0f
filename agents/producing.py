"""Batched producing for the bridge: one lane per partition, whole batches to aiokafka.

aiokafka's per-record ``send()`` costs a coroutine, a future and a lookup per
record (about 16,000 records/s on one core), too slow for a bridge that carries
50,000 lines/s. :class:`BatchSender` keeps one queue per (topic, partition) and a
lane task that turns whatever the queue holds into record batches
(``create_batch`` / ``send_batch``). aiokafka lets one batch per partition wait
in its accumulator, so while a batch is on its way the next one fills up:
batches grow with the load by themselves, with no linger delay at low load.

Ordering and idempotence: a key always maps to the same partition (the Java
client's murmur2 partitioner, as aiokafka's default), one lane per partition
submits its batches in order, and the producer is idempotent with acks=all, so
a VM's records land in the order the bridge read them, without duplicates from
retries.

Back-pressure: :meth:`BatchSender.send` waits while too many records (or bytes)
are queued or unacknowledged, so a slow broker stops the socket readers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from itertools import repeat
from typing import Any, Final

from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["RECORD_OVERHEAD", "BatchSender", "Budget"]

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
AckCallback = Callable[[str, int, float], None]
"""(topic, counted records, seconds from the oldest record's enqueue to its acknowledgement).

Records sent with ``counted=False`` (control records) are left out of the count.
"""
ErrorCallback = Callable[[str, int, BaseException], None]


_MAX_CACHED_KEYS: Final = 100_000

RECORD_OVERHEAD: Final = 100
"""Bytes a record costs beyond its value in the budget (key, headers, bookkeeping)."""


class Budget:
    """Counts records queued or unacknowledged; ``acquire`` waits while over budget.

    Waiters are served first come, first served, and a release wakes only the
    waiters that now fit: with 1,000 connections blocked on a slow broker, an
    acknowledgement must not wake all 1,000 to find that one may go on.

    A request is always admitted when nothing is pending, so one line larger
    than the byte budget (up to the framing limit) still goes through.
    """

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.records = 0
        self.bytes = 0
        self._waiters: collections.deque[tuple[int, int, asyncio.Future[None]]] = (
            collections.deque()
        )
        self._empty = asyncio.Event()
        self._empty.set()

    def _fits(self, records: int, size: int) -> bool:
        return not self.records or (
            self.records + records <= self.max_records and self.bytes + size <= self.max_bytes
        )

    def _take(self, records: int, size: int) -> None:
        self.records += records
        self.bytes += size
        self._empty.clear()

    async def acquire(self, size: int, records: int = 1) -> None:
        if not self._waiters and self._fits(records, size):
            self._take(records, size)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (records, size, fut)
        self._waiters.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(records, size)  # granted, then cancelled: give it back
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it
                    self._waiters.remove(entry)
                self._wake()
            raise

    def release(self, records: int, size: int) -> None:
        self.records -= records
        self.bytes -= size
        self._wake()
        if self.records == 0:
            self._empty.set()

    def _wake(self) -> None:
        while self._waiters:
            records, size, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if not self._fits(records, size):
                return
            self._waiters.popleft()
            self._take(records, size)
            fut.set_result(None)

    async def wait_empty(self) -> None:
        await self._empty.wait()


class _Lane:
    __slots__ = ("records", "task", "wake")

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes, Headers, float, bool]] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class BatchSender:
    """Queues records per partition and sends them as batches; see the module docstring."""

    def __init__(
        self,
        producer: Any,
        *,
        max_records: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
        on_ack: AckCallback | None = None,
        on_error: ErrorCallback | None = None,
    ) -> None:
        self._producer = producer
        self.budget = Budget(max_records, max_bytes)
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._partitions: dict[str, list[int]] = {}
        self._by_key: dict[tuple[str, bytes], _Lane] = {}
        self._partitioner = DefaultPartitioner()
        self._on_ack = on_ack
        self._on_error = on_error
        self._closed = False

    @property
    def pending(self) -> int:
        """Records queued or sent and not yet acknowledged."""
        return self.budget.records

    async def prepare(self, topics: list[str], timeout_s: float = 10.0) -> None:
        """Fetch the partitions of ``topics`` now, so the first records do not all wait
        for metadata at once; best effort (a missing topic is found again on first use)."""
        for topic in topics:
            try:
                async with asyncio.timeout(timeout_s):
                    found = await self._producer.partitions_for(topic)
            except (TimeoutError, KafkaError) as exc:
                log.warning("no partitions for %s yet: %r", topic, exc)
                continue
            self._partitions[topic] = sorted(found)

    async def _lane_for(self, topic: str, key: bytes) -> _Lane:
        """The lane of ``key``'s partition; cached per key (murmur2 in Python is slow)."""
        lane = self._by_key.get((topic, key))
        if lane is not None:
            return lane
        parts = self._partitions.get(topic)
        if parts is None:
            found = await self._producer.partitions_for(topic)
            parts = self._partitions[topic] = sorted(found)
        partition = int(self._partitioner(key, parts, parts))
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[(topic, partition)] = _Lane()
            lane.task = asyncio.create_task(
                self._run_lane(topic, partition, lane), name=f"lane-{topic}-{partition}"
            )
        if len(self._by_key) >= _MAX_CACHED_KEYS:
            self._by_key.clear()
        self._by_key[(topic, key)] = lane
        return lane

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: Headers, *, counted: bool = True
    ) -> None:
        """Queue one record (waiting while over budget); it is sent with its partition's batch."""
        await self.send_many(topic, key, [value], [headers], counted=counted)

    async def send_many(
        self,
        topic: str,
        key: bytes,
        values: list[bytes],
        headers: list[Headers],
        *,
        counted: bool = True,
    ) -> None:
        """Queue records of one key in order, admitted to the budget together (one chunk read).

        ``headers[i]`` goes with ``values[i]``. Each record counts ``len(value) +``
        :data:`RECORD_OVERHEAD` bytes against the budget.
        """
        if not values:
            return
        n = len(values)
        size = sum(map(len, values)) + RECORD_OVERHEAD * n
        await self.budget.acquire(size, n)
        try:
            lane = await self._lane_for(topic, key)
        except BaseException:
            self.budget.release(n, size)
            raise
        now = time.monotonic()
        lane.records.extend(
            zip(repeat(key), values, headers, repeat(now), repeat(counted), strict=False)
        )
        lane.wake.set()

    async def _run_lane(self, topic: str, partition: int, lane: _Lane) -> None:
        while True:
            await lane.wake.wait()
            lane.wake.clear()
            while lane.records:
                records, lane.records = lane.records, []
                start = 0
                try:
                    while start < len(records):
                        start = await self._send_one_batch(topic, partition, records, start)
                except Exception as exc:  # a bug here must not leave the budget held forever
                    log.exception("lane %s[%d] failed", topic, partition)
                    rest = records[start:]
                    size = sum(len(r[1]) + RECORD_OVERHEAD for r in rest)
                    self._done(topic, len(rest), 0, size, rest[0][3], exc)

    async def _send_one_batch(
        self,
        topic: str,
        partition: int,
        records: list[tuple[bytes, bytes, Headers, float, bool]],
        start: int,
    ) -> int:
        """Put ``records[start:]`` into one batch until it is full; return where it stopped."""
        batch = self._producer.create_batch()
        end = start
        size = 0
        counted = 0
        for key, value, headers, _, is_counted in records[start:]:
            if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                break
            end += 1
            counted += is_counted
            size += len(value) + RECORD_OVERHEAD
        count = end - start
        oldest = records[start][3]
        try:
            fut = await self._producer.send_batch(batch, topic, partition=partition)
        except (TimeoutError, KafkaError) as exc:
            log.error("cannot produce %d records to %s[%d]: %r", count, topic, partition, exc)
            self._done(topic, count, counted, size, oldest, exc)
            return end
        fut.add_done_callback(lambda f: self._settled(f, topic, count, counted, size, oldest))
        return end

    def _settled(
        self,
        fut: asyncio.Future[Any],
        topic: str,
        count: int,
        counted: int,
        size: int,
        oldest: float,
    ) -> None:
        exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        self._done(topic, count, counted, size, oldest, exc)

    def _done(
        self,
        topic: str,
        count: int,
        counted: int,
        size: int,
        oldest: float,
        exc: BaseException | None,
    ) -> None:
        self.budget.release(count, size)
        if exc is None:
            if self._on_ack is not None:
                self._on_ack(topic, counted, time.monotonic() - oldest)
        else:
            log.error("%d records to %s not acknowledged: %r", count, topic, exc)
            if self._on_error is not None:
                self._on_error(topic, count, exc)

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued record is acknowledged or failed; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.budget.wait_empty()
        except TimeoutError:
            log.error("%d records not acknowledged after %.0fs", self.budget.records, timeout_s)
            return False
        return True

    async def close(self) -> None:
        """Stop the lanes (call after :meth:`flush`)."""
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        for lane in self._lanes.values():
            if lane.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
        self._lanes.clear()
