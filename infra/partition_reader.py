"""Every partition of one topic, read by librdkafka in a thread of its own, handed to asyncio.

Why not aiokafka here: on the live path a consumer fetches a hundred times a
second, and aiokafka builds each fetch request, parses each response and
unpacks each record batch in Python on the event loop's thread. In `vmpulse
up` at 2,000 lines/s that machinery took a fifth of the loop's CPU, beside the
work it fed (docs/BENCHMARKS.md, session 6). librdkafka does the fetching, the
decompression and the record parsing in its own C threads; our thread only
turns its messages into :class:`Record` tuples and hands each batch over.

This reader has no consumer group: it is assigned every partition, from
offsets the caller chooses, and commits nothing (the gateway's case: each
instance reads everything, and its position lives in its clients' cursors).
librdkafka insists on a ``group.id`` all the same; it is never joined.

Back-pressure and memory: once ``queued_bytes`` of values wait for the loop,
the thread stops consuming, and librdkafka's own prefetch queue (4 MiB
here, not its default 64) fills and then stops fetching.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final, NamedTuple, TypeVar

from infra.config import KafkaAuth
from infra.kafka_auth import PLAINTEXT, rdkafka_auth
from infra.rdkafka_handoff import Backlog, ErrorLog, ReaderError, poll_batch, sort_messages

__all__ = ["PartitionReader", "ReaderError", "Record"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_POLL_S: Final = 0.1
"""How long the thread waits in ``consume`` at a time (it stops within this)."""

_HIGH_EVERY_S: Final = 0.5
"""How often the thread notes each partition's end from librdkafka's cache (for lag)."""

_RETRY_S: Final = 0.1
"""Pause between two tries of a call that met a transient error."""


def _transient(error: Any) -> bool:
    """Whether a librdkafka error is one that passes by itself (a leader being elected or
    moving, a connection being made); its own ``retriable()`` is false for these."""
    from confluent_kafka import KafkaError

    code = error.code() if isinstance(error, KafkaError) else None
    return code in {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TRANSPORT,
    }


class Record(NamedTuple):
    """What a reader hands over of one Kafka record (a tuple: cheap to build in the thread)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    """Milliseconds since the epoch, as the producer (or the broker) stamped it."""
    value: bytes | None


class PartitionReader:
    """All partitions of ``topic`` from chosen offsets; :meth:`getmany` gives them in batches.

    Use: :meth:`start` (metadata), then :meth:`end_offsets` / :meth:`offsets_for_times`
    to choose where to begin, :meth:`begin`, then :meth:`getmany` until :meth:`stop`.
    Within a partition records come in offset order.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        client_id: str,
        fetch_wait_ms: int,
        max_batch: int = 500,
        queued_bytes: int = 2 * 1024 * 1024,
        timeout_s: float = 30.0,
        auth: KafkaAuth = PLAINTEXT,
    ) -> None:
        self._topic = topic
        self._max_batch = max_batch
        self._timeout_s = timeout_s
        self._config: dict[str, Any] = {
            **rdkafka_auth(auth),
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "group.id": f"{client_id}-unjoined",  # required by the client, never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "latest",
            "fetch.wait.max.ms": fetch_wait_ms,
            "fetch.min.bytes": 1,
            "enable.partition.eof": True,
            # librdkafka prefetches up to 64 MiB by default; a gateway reading a burst
            # would hold it all (a live consumer is never that far behind for long)
            "queued.min.messages": 10_000,
            "queued.max.messages.kbytes": 4096,
            # past those, librdkafka waits this long before fetching again (default 1 s,
            # which a live path feels as a 1 s stall whenever a burst fills the queue)
            "fetch.queue.backoff.ms": 5,
            "fetch.max.bytes": 1024 * 1024,
            "max.partition.fetch.bytes": 256 * 1024,
            "logger": logging.getLogger("infra.rdkafka"),
        }
        self._consumer: Any = None
        self._partitions: list[int] = []
        self._queue: asyncio.Queue[tuple[list[Record], int]] = asyncio.Queue()
        self._backlog = Backlog(queued_bytes)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reached_end: dict[int, int] = {}
        self._high: dict[int, int] = {}
        self._end_wanted = True

    @property
    def partitions(self) -> list[int]:
        return list(self._partitions)

    async def start(self) -> list[int]:
        """Connect and learn the topic's partitions (which must be 0..n-1)."""
        from confluent_kafka import Consumer

        self._loop = asyncio.get_running_loop()
        self._consumer = Consumer(self._config)
        try:
            partitions = await asyncio.to_thread(self._retrying, self._topic_partitions)
            if partitions != list(range(len(partitions))):
                raise ReaderError(f"topic {self._topic!r} partitions are not 0..n-1")
        except BaseException:
            await self.stop()
            raise
        self._partitions = partitions
        return self.partitions

    def _topic_partitions(self) -> list[int]:
        meta = self._consumer.list_topics(self._topic, self._timeout_s)
        topic = meta.topics.get(self._topic)
        if topic is not None and topic.error is not None and _transient(topic.error):
            from confluent_kafka import KafkaException

            raise KafkaException(topic.error)  # a topic just created: its leaders come
        if topic is None or topic.error is not None or not topic.partitions:
            raise ReaderError(f"topic {self._topic!r} has no partitions")
        return sorted(topic.partitions)

    async def end_offsets(self) -> dict[int, int]:
        """Each partition's end (the offset its next record will get), asked of its leader."""

        def ends() -> dict[int, int]:
            from confluent_kafka import TopicPartition

            return {
                p: self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, p), timeout=self._timeout_s
                )[1]
                for p in self._partitions
            }

        return await asyncio.to_thread(self._retrying, ends)

    async def offsets_for_times(self, since_ms: int) -> dict[int, int | None]:
        """Each partition's first offset stamped at or after ``since_ms``; None past the end."""
        from confluent_kafka import TopicPartition

        def find() -> list[Any]:
            return list(
                self._consumer.offsets_for_times(
                    [TopicPartition(self._topic, p, since_ms) for p in self._partitions],
                    self._timeout_s,
                )
            )

        found = await asyncio.to_thread(self._retrying, find)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}

    def _retrying(self, call: Callable[[], T]) -> T:
        """``call()`` in this thread, again while librdkafka answers with a transient error.

        aiokafka retried these itself; librdkafka's one-shot calls raise them: a topic
        just created whose partitions have no leader yet, a leader that moved. The
        gateway then failed to start (seen in the test suite) where it should wait.
        """
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return call()
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if not _transient(error) or time.monotonic() >= deadline:
                    raise
                log.debug("%s: %s; asking again", self._topic, error)
                time.sleep(_RETRY_S)

    def begin(self, starts: dict[int, int]) -> None:
        """Read every partition from ``starts[partition]``, in the reader's thread."""
        from confluent_kafka import TopicPartition

        self._consumer.assign([TopicPartition(self._topic, p, starts[p]) for p in self._partitions])
        self._thread = threading.Thread(
            target=self._pump, name=f"reader-{self._topic}", daemon=True
        )
        self._thread.start()

    async def getmany(self) -> list[Record]:
        """The next batch (waits for it); each batch holds at most ``max_batch`` records."""
        batch, size = await self._queue.get()
        self._backlog.taken(size)
        return batch

    def reached_end(self) -> dict[int, int]:
        """The partitions whose end the reader has reached, with the offset it was at then.

        Used to read a range back (``end_offsets``, then read until each partition
        reached them): control records and deleted records leave gaps that no record
        offset shows. Call :meth:`stop_end_reports` once that is done.
        """
        return dict(self._reached_end)

    def stop_end_reports(self) -> None:
        """Reaching a partition's end is no longer worth reporting (live reading)."""
        self._end_wanted = False

    def highwater(self, partition: int) -> int | None:
        """The partition's end as of a recent fetch (at most ``_HIGH_EVERY_S`` old); None
        before the first.

        Read from what the reader's thread noted: the client serializes calls on one
        handle, so a call from the loop would wait for the thread's ``consume``.
        """
        return self._high.get(partition)

    async def stop(self) -> None:
        """Stop the thread and close the consumer (blocking parts off the loop).

        The client serializes calls on one handle: nothing but the thread may call
        the consumer between :meth:`begin` and the thread's end.
        """
        self._stopping.set()
        self._backlog.wake()  # a thread waiting for room sees the stop
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await asyncio.to_thread(consumer.close)

    def _pump(self) -> None:
        """The reader's thread: consume, convert, hand over; never ends but by :meth:`stop`."""
        loop, consumer, topic = self._loop, self._consumer, self._topic
        assert loop is not None and consumer is not None
        errors = ErrorLog(log, topic)

        def convert(m: Any) -> Record:
            return Record(topic, m.partition(), m.offset(), m.timestamp()[1], m.value())

        last_high = 0.0
        while not self._stopping.is_set():
            if time.monotonic() - last_high >= _HIGH_EVERY_S:
                last_high = time.monotonic()
                self._note_high()
            try:
                messages = poll_batch(consumer, _POLL_S, self._max_batch)
            except Exception:  # a closed consumer, or a bug: the thread ends loudly
                if not self._stopping.is_set():
                    log.exception("reading %s stopped", topic)
                return
            if not messages:
                continue
            batch, size, ends = sort_messages(messages, convert, errors)
            if not self._end_wanted:
                ends = []
            if not batch and not ends:
                continue
            if not self._backlog.reserve(size, self._stopping, every_s=_POLL_S):
                return
            if self._stopping.is_set():
                return
            loop.call_soon_threadsafe(self._hand_over, batch, ends, size)

    def _note_high(self) -> None:
        from confluent_kafka import TopicPartition

        for p in self._partitions:
            with contextlib.suppress(Exception):
                high = self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, p), cached=True
                )[1]
                if high >= 0:
                    self._high[p] = high

    def _hand_over(self, batch: list[Record], ends: list[tuple[int, int]], size: int) -> None:
        """On the loop: the ends first, so a reader woken by this batch sees them."""
        for partition, offset in ends:
            self._reached_end[partition] = max(self._reached_end.get(partition, 0), offset)
        self._queue.put_nowait((batch, size))
