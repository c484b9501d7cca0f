"""Producing for the bridge: librdkafka (confluent-kafka) behind an asyncio budget.

Per-record work in Python was the bridge's ceiling: with aiokafka every record
was framed into a batch, compressed and sent from the event loop's one thread
(12-16 us of CPU per line). librdkafka does the batching, the compression and
the broker protocol in its own C threads; the loop only hands each record over
(``produce``) and reads delivery reports. :class:`RecordSender` is that hand-over.

Ordering and idempotence: the producer is idempotent with acks=all (in-order
retries, no duplicates), and keys are partitioned with murmur2 (librdkafka's
``murmur2_random``, the Java client's and aiokafka's partitioner for keyed
records, so a VM keeps its partition across bridges of either kind). The
records of one VM are handed over in the order they were read, from one
thread, so they land in that order.

Acknowledgements: the records of one :meth:`RecordSender.send_many` call (the
lines of one read of one VM) form a chunk, and only its last record carries a
delivery callback: librdkafka reports a partition's records in order, so the
report of a chunk's last record comes after those of all its records, and a
message's report costs a Python call and a copy of its value (a third of the
per-record cost when every record had one). The counters are thus per chunk:
a chunk whose last record was delivered counts as acknowledged. Records of a
partition fail in order (a timeout fails the oldest first), so only a broker
that rejects one batch of a chunk and accepts the next could make a chunk
count as delivered with a record missing; the data itself is never duplicated
or reordered either way (idempotence).

Delivery reports are served by a thread of ours that waits in ``poll()``:
librdkafka frees the delivered records there, without the GIL, instead of on
the event loop's thread (a sixth of that thread's time when the loop polled).
Only the chunk reports cross to the loop, a batch per wake-up.

Latency: :data:`LINGER_MS` is librdkafka's ``linger.ms``, how long a record may
wait for others to share its batch. Under load batches fill while earlier
requests are in flight anyway; at a few lines a second it is the whole delay
a line spends in the bridge, so it stays at a few milliseconds (the product
wants a sample in the browser within 100 ms of the agent).

Back-pressure: :meth:`RecordSender.send_many` waits while too many records (or
bytes) are queued or unacknowledged (:class:`Budget`), so a slow broker stops
the socket readers instead of growing the bridge's memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from infra.config import KafkaAuth
from infra.kafka_auth import PLAINTEXT, rdkafka_auth
from schemas.topics import MAX_BATCH_BYTES

__all__ = [
    "LINGER_MS",
    "POLL_TIMEOUT_S",
    "RECORD_OVERHEAD",
    "Budget",
    "Producer",
    "RecordSender",
    "make_producer",
]

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
AckCallback = Callable[[str, int, float], None]
"""(topic, counted records, seconds from the chunk's hand-over to its acknowledgement).

Records sent with ``counted=False`` (control records) are left out of the count.
"""
ErrorCallback = Callable[[str, int, BaseException], None]

RECORD_OVERHEAD: Final = 100
"""Bytes a record costs beyond its value in the budget (key, headers, bookkeeping)."""

LINGER_MS: Final = 2
"""librdkafka ``linger.ms``; see the module docstring (latency)."""

POLL_TIMEOUT_S: Final = 0.2
"""How long the poll thread waits for reports at a time (it stops within this)."""


class Producer(Protocol):
    """What :class:`RecordSender` needs of ``confluent_kafka.Producer`` (tests pass fakes)."""

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        partition: int,
        callback: Callable[[Any, Any], None] | None,
        on_delivery: None,
        timestamp: int,
        headers: Headers,
        /,
    ) -> None:
        """confluent-kafka's ``produce`` as :meth:`RecordSender` calls it: positionally."""

    def poll(self, timeout: float) -> int: ...

    def list_topics(self, topic: str, timeout: float) -> Any: ...

    def purge(self) -> None: ...


def make_producer(
    bootstrap: str, *, client_id: str, linger_ms: int = LINGER_MS, auth: KafkaAuth = PLAINTEXT
) -> Any:
    """The bridge's producer: idempotent, acks=all, zstd, murmur2 partitions."""
    from confluent_kafka import Producer as KafkaProducer

    return KafkaProducer(
        {
            **rdkafka_auth(auth),
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "zstd",
            "linger.ms": linger_ms,
            "batch.size": 1024 * 1024,
            "message.max.bytes": MAX_BATCH_BYTES,  # the topics take as much (schemas/topics.py)
            "partitioner": "murmur2_random",
            # The Budget bounds what waits; librdkafka's own queue must never be the
            # limit first (produce() would raise BufferError instead of waiting).
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_097_151,
            "logger": logging.getLogger("agents.rdkafka"),
        }
    )


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

    def force(self, size: int, records: int = 1) -> None:
        """Take the budget now even past its limits (a few small records the caller
        bounds itself, which must not queue behind data)."""
        self._take(records, size)

    def take_now(self, size: int, records: int = 1) -> bool:
        """Take the budget if it fits now, behind nobody; False (nothing taken) otherwise."""
        if not self._waiters and self._fits(records, size):
            self._take(records, size)
            return True
        return False

    async def acquire(self, size: int, records: int = 1) -> None:
        if self.take_now(size, records):
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

    def half_free(self) -> bool:
        """Nobody waits and at most half of either limit is taken."""
        return (
            not self._waiters
            and self.records <= self.max_records // 2
            and self.bytes <= self.max_bytes // 2
        )

    async def wait_empty(self) -> None:
        await self._empty.wait()


class _Chunk:
    """The records of one ``send_many``; settled by the delivery report of its last one."""

    __slots__ = ("count", "counted", "sender", "size", "start", "topic")

    def __init__(
        self, sender: RecordSender, topic: str, count: int, counted: int, size: int
    ) -> None:
        self.sender = sender
        self.topic = topic
        self.count = count
        self.counted = counted
        self.size = size
        self.start = time.monotonic()

    def __call__(self, err: Any, _msg: Any) -> None:
        """librdkafka's delivery report (on the poll thread)."""
        self.sender._reported(self, err)


class _DeliveryError(Exception):
    """librdkafka reported a record as not delivered (its error text)."""


class RecordSender:
    """Hands records to librdkafka under a :class:`Budget`; see the module docstring."""

    def __init__(
        self,
        producer: Producer,
        *,
        max_records: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
        on_ack: AckCallback | None = None,
        on_error: ErrorCallback | None = None,
    ) -> None:
        self._producer = producer
        self.budget = Budget(max_records, max_bytes)
        self._on_ack = on_ack
        self._on_error = on_error
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: threading.Thread | None = None
        self._stop_polling = threading.Event()
        # Reports cross from the poll thread to the loop here (deque appends are atomic).
        self._reports: collections.deque[tuple[_Chunk, Any]] = collections.deque()
        self._drain_scheduled = False
        self._logged_at = float("-inf")
        self._failed_since_log = 0

    @property
    def pending(self) -> int:
        """Records queued or sent and not yet acknowledged."""
        return self.budget.records

    async def prepare(self, topics: list[str], timeout_s: float = 10.0) -> None:
        """Fetch the metadata of ``topics`` now, so the first records do not wait for it;
        best effort (records of an unknown topic wait in librdkafka until it is known)."""
        for topic in topics:
            try:
                await asyncio.to_thread(self._producer.list_topics, topic, timeout_s)
            except Exception as exc:  # KafkaException: a missing topic is found on first use
                log.warning("no metadata for %s yet: %r", topic, exc)

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: Headers, *, counted: bool = True
    ) -> None:
        """Queue one record (waiting while over budget)."""
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
        """Hand over records of one key in order, admitted to the budget together.

        ``headers[i]`` goes with ``values[i]``. Each record counts ``len(value) +``
        :data:`RECORD_OVERHEAD` bytes against the budget.
        """
        n = len(values)
        if not n:
            return
        size = sum(map(len, values)) + RECORD_OVERHEAD * n
        await self.budget.acquire(size, n)
        i = self._hand_over(topic, key, values, headers, counted, size, 0)
        while i < n:
            # librdkafka's own queue is full (it is sized above the budget, so
            # only when the budget was raised past it): wait for deliveries.
            await asyncio.sleep(POLL_TIMEOUT_S / 10)
            i = self._hand_over(topic, key, values, headers, counted, size, i)

    def send_many_now(
        self,
        topic: str,
        key: bytes,
        values: list[bytes],
        headers: list[Headers],
    ) -> bool:
        """:meth:`send_many` without waiting: False (nothing sent) when the budget is full.

        The bridge's pushed reads (agents/stream.py) hand their lines over from the
        loop's read callback, where nothing may wait. In the rare case that
        librdkafka's own queue is full, this polls it on the spot until there is room.
        """
        n = len(values)
        size = sum(map(len, values)) + RECORD_OVERHEAD * n
        if not n or not self.budget.take_now(size, n):
            return not n
        self._hand_over_polling(topic, key, values, headers, True, size)
        return True

    def send_now(
        self, topic: str, key: bytes, value: bytes, headers: Headers, *, counted: bool = True
    ) -> None:
        """Hand one record over at once, past the budget (it still counts in it).

        For the bridge's connection events: one per connection, tiny, and a new
        connection must not wait behind a full budget for its first record (its
        reads would pile up meanwhile: at 1,000 VMs starting at once under uvloop,
        ~160 MiB of reads waited for it, docs/BENCHMARKS.md, session 13).
        """
        size = len(value) + RECORD_OVERHEAD
        self.budget.force(size)
        self._hand_over_polling(topic, key, [value], [headers], counted, size)

    def _hand_over_polling(
        self,
        topic: str,
        key: bytes,
        values: list[bytes],
        headers: list[Headers],
        counted: bool,
        size: int,
    ) -> None:
        """Produce all of ``values`` (admitted to the budget) without leaving the caller:
        while librdkafka's own queue is full, poll it on the spot until there is room."""
        i = 0
        while (i := self._hand_over(topic, key, values, headers, counted, size, i)) < len(values):
            self._producer.poll(POLL_TIMEOUT_S / 10)

    def _hand_over(
        self,
        topic: str,
        key: bytes,
        values: list[bytes],
        headers: list[Headers],
        counted: bool,
        size: int,
        start: int,
    ) -> int:
        """Produce ``values[start:]`` (admitted to the budget); the index it stopped at."""
        if self._poller is None:
            self._start_polling()
        n = len(values)
        produce = self._producer.produce
        last = n - 1
        chunk = _Chunk(self, topic, n, n if counted else 0, size)
        i = start
        # Positional arguments (topic, value, key, partition, callback, on_delivery,
        # timestamp, headers): a call with keywords builds a dict of them and
        # confluent-kafka looks each one up, 0.3-0.4 us of a 1.2-1.7 us call
        # (docs/BENCHMARKS.md, session 15). Partition -1 is librdkafka's "unassigned"
        # (its partitioner decides), timestamp 0 "now": the keyword defaults.
        try:
            while i < last:
                produce(topic, values[i], key, -1, None, None, 0, headers[i])
                i += 1
            produce(topic, values[last], key, -1, chunk, None, 0, headers[last])
        except BufferError:
            return i
        except Exception as exc:  # KafkaException: unknown topic, fatal producer
            self._settle(chunk, exc)
        return n

    def _start_polling(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_polling.clear()
        self._poller = threading.Thread(
            target=self._poll_until_stopped, name="vmpulse-bridge-poll", daemon=True
        )
        self._poller.start()

    def _poll_until_stopped(self) -> None:
        # poll() runs without the GIL except for our callbacks; freeing the
        # delivered records happens here, not on the loop's thread.
        while not self._stop_polling.is_set():
            self._producer.poll(POLL_TIMEOUT_S)

    def _reported(self, chunk: _Chunk, err: Any) -> None:
        self._reports.append((chunk, err))
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        reports = self._reports
        while reports:
            chunk, err = reports.popleft()
            self._settle(chunk, None if err is None else _DeliveryError(str(err)))

    def _settle(self, chunk: _Chunk, exc: BaseException | None) -> None:
        self.budget.release(chunk.count, chunk.size)
        if exc is None:
            if self._on_ack is not None:
                self._on_ack(chunk.topic, chunk.counted, time.monotonic() - chunk.start)
            return
        # A broker that is gone fails every chunk: one log line a second says so.
        self._failed_since_log += chunk.count
        now = time.monotonic()
        if now - self._logged_at >= 1.0:
            log.error(
                "%d records not acknowledged (last: %d to %s: %s)",
                self._failed_since_log,
                chunk.count,
                chunk.topic,
                exc,
            )
            self._failed_since_log = 0
            self._logged_at = now
        if self._on_error is not None:
            self._on_error(chunk.topic, chunk.count, exc)

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
        """Stop polling and give up on what is still unacknowledged (call after :meth:`flush`).

        Purged records are reported as failed (counted as send errors) before
        this returns; the producer itself is then empty and may be dropped.
        """
        if self._poller is not None:
            self._stop_polling.set()
            await asyncio.to_thread(self._poller.join)
            self._poller = None
        self._drain()
        if not self.budget.records:
            return
        self._producer.purge()
        deadline = time.monotonic() + 5.0
        while self.budget.records and time.monotonic() < deadline:
            self._producer.poll(0)  # on the loop's thread now: reports drained below
            self._drain()
            await asyncio.sleep(0.01)
