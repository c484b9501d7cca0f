"""A consumer group member read by librdkafka in a thread of its own, handed to asyncio.

Why not aiokafka: the worker's consumer of agent.raw is on the live path, so it
fetches whenever a record arrives, and aiokafka builds every fetch request,
parses every response and unpacks every record batch in Python on the event
loop's thread, the thread that also decodes the samples and sends their live
updates. One aiokafka consumer on a running `vmpulse up` cost 20 % of a core at
200 and at 1,000 lines/s, a librdkafka one 3.5-6 % (tests/bench/consumer_cost.py,
docs/BENCHMARKS.md). Here librdkafka fetches, decompresses and parses in its C
threads, and our thread only turns its messages into the caller's records.

What a group member needs beyond :class:`infra.partition_reader.PartitionReader`:

* Rebalances. librdkafka calls back inside ``poll``, in the reader's thread; the
  thread then runs the caller's ``on_revoke`` / ``on_assign`` coroutine on the
  loop and waits for it, so a revocation can wait for the batch being stored
  and committed before the partitions go (the eager protocol: nobody else reads
  them before the callback returned). Records already handed over stay valid:
  after a rebalance each kept partition is read again from its committed
  offset, which is never past what was handed over, so the caller sees its
  records come again in offset order and replaces what it held.
* Seeks. A failed batch is read again from its first offset. The seek is done
  by the thread between two polls and starts a new *epoch*: whatever the loop
  has not taken yet from before the seek is dropped, so no record after the
  seek point can reach the caller before the ones it re-reads.
* Commits, asked for by the loop and made by the reader's thread, between two
  polls or while it waits in a rebalance callback (where the worker's revocation
  waits for one). A synchronous commit from any other thread waited forever
  while this one polled (confluent-kafka 2.16), so nothing else calls the handle.

Back-pressure as in the partition reader: once ``queued_bytes`` of values wait
for the loop the thread stops polling, and librdkafka's prefetch (bounded by
``queued.max.messages.kbytes``) fills and stops fetching; the group's heartbeats
go on in librdkafka's own thread, and ``max.poll.interval.ms`` (5 minutes) is
the limit on how long the loop may leave records untaken.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import queue
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final, Generic, NamedTuple, TypeVar

from infra.config import KafkaAuth
from infra.kafka_auth import PLAINTEXT, rdkafka_auth
from infra.rdkafka_handoff import Backlog, ErrorLog, ReaderError, poll_batch, sort_messages

__all__ = ["GroupReader", "ReaderError", "TopicPartition"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_RESPONSE_HEADROOM: Final = 1024 * 1024
"""Bytes a fetch response may hold beyond ``fetch.max.bytes``: its headers.

``fetch.max.bytes`` bounds the records of a response, not the response: every
partition asked for adds its own header (about 50 bytes; 24 partitions of
agent.raw and hypervisor.events add over a kilobyte). librdkafka documents
``fetch.max.bytes + 512`` as the least ``receive.message.max.bytes``; at exactly
that, a full fetch from 12 partitions (a worker catching up on a backlog) was
refused on receipt ("Invalid response size 33555408 (0..33554944)"), the
connection dropped and the same fetch asked again: the worker stopped reading.
A megabyte covers the headers of thousands of partitions."""

STATS_INTERVAL_MS: Final = 5000
"""How often librdkafka reports its statistics, the source of :meth:`GroupReader.lag`:
a few tens of KB of JSON parsed in the reader's thread, so not much more often."""


def topic_lags(stats_json: str, topics: Sequence[str]) -> dict[str, int]:
    """Each topic's lag (records past the committed offsets) from librdkafka's statistics.

    ``consumer_lag`` is per partition, ``-1`` where librdkafka does not know it (a
    partition not fetched yet, none committed); those are left out. A topic without any
    known partition is left out too.
    """
    stats = json.loads(stats_json)
    lags: dict[str, int] = {}
    for topic in topics:
        partitions = stats.get("topics", {}).get(topic, {}).get("partitions", {})
        known = [
            p["consumer_lag"]
            for key, p in partitions.items()
            if key != "-1" and p.get("consumer_lag", -1) >= 0
        ]
        if known:
            lags[topic] = sum(known)
    return lags


_POLL_S: Final = 0.02
"""How long the thread waits in ``poll`` at a time: a commit or a seek asked for meanwhile
waits this long at most."""

_JOB_WAIT_S: Final = 0.005
"""How often the thread looks for commits while it waits for the loop."""


class TopicPartition(NamedTuple):
    """A partition of a topic (hashable; the keys of :meth:`GroupReader.getmany`)."""

    topic: str
    partition: int


class GroupReader(Generic[T]):
    """A member of ``group_id`` reading ``topics``; :meth:`getmany` gives what it fetched.

    Use: :meth:`start` (subscribes; the thread begins polling), then
    :meth:`getmany`, :meth:`commit` and :meth:`seek` until :meth:`stop`. Within a
    partition records come in offset order, except that a rebalance or a seek
    starts a partition again at an earlier offset.
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: Sequence[str],
        group_id: str,
        convert: Callable[[Any], T],
        partition_of: Callable[[T], TopicPartition],
        on_revoke: Callable[[], Awaitable[None]],
        on_assign: Callable[[set[TopicPartition]], Awaitable[None]],
        fetch_wait_ms: int,
        session_timeout_s: float,
        group_instance_id: str | None = None,
        max_batch: int = 5000,
        queued_bytes: int = 16 * 1024 * 1024,
        fetch_max_bytes: int = 32 * 1024 * 1024,
        stats_interval_ms: int = STATS_INTERVAL_MS,
        auth: KafkaAuth = PLAINTEXT,
    ) -> None:
        self._topics = list(topics)
        self._convert = convert
        self._partition_of = partition_of
        self._on_revoke = on_revoke
        self._on_assign = on_assign
        self._max_batch = max_batch
        self._config: dict[str, Any] = {
            **rdkafka_auth(auth),
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "client.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # the same partitions of every topic go to the same member (they share keys)
            "partition.assignment.strategy": "range",
            "session.timeout.ms": int(session_timeout_s * 1000),
            "heartbeat.interval.ms": int(min(3.0, session_timeout_s / 3) * 1000),
            "fetch.wait.max.ms": fetch_wait_ms,
            "fetch.min.bytes": 1,
            "max.partition.fetch.bytes": min(4 * 1024 * 1024, fetch_max_bytes),
            "fetch.max.bytes": fetch_max_bytes,
            "receive.message.max.bytes": fetch_max_bytes + _RESPONSE_HEADROOM,
            # prefetch per partition; librdkafka's default (64 MiB) would hold a backlog
            "queued.max.messages.kbytes": 8192,
            # past that, wait this long before fetching again (default 1 s: a stall)
            "fetch.queue.backoff.ms": 5,
            "logger": logging.getLogger("infra.rdkafka"),
            # the lag of each topic (:meth:`lag`), from librdkafka's statistics
            "statistics.interval.ms": stats_interval_ms,
            "stats_cb": self._on_stats,
        }
        if group_instance_id:
            self._config["group.instance.id"] = group_instance_id
        self._consumer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready: deque[tuple[int, list[T], int]] = deque()  # epoch, records, bytes
        self._arrived = asyncio.Event()
        self._held: list[T] = []  # taken from the queue, not yet handed out (over max_records)
        self._backlog = Backlog(queued_bytes)
        self._epoch = 0  # the thread's: bumped by each seek it made
        self._accept_from = 0  # the loop's: batches of an earlier epoch are dropped
        # asked for by the loop, done by the thread: commits also while it waits in a
        # rebalance callback, seeks only between polls (so each batch has one epoch)
        self._commits: queue.SimpleQueue[Callable[[Any], None]] = queue.SimpleQueue()
        self._seeks: queue.SimpleQueue[Callable[[Any], None]] = queue.SimpleQueue()
        self._assignment: set[TopicPartition] = set()
        self._failure: BaseException | None = None  # what ended the thread, if not a stop
        self._lag: dict[str, int] = {}

    def lag(self, topic: str) -> int | None:
        """Records of ``topic`` on this member's partitions past its committed offsets, as
        of librdkafka's last statistics (every ``stats_interval_ms``); None before them."""
        return self._lag.get(topic)

    def _on_stats(self, stats_json: str) -> None:
        """librdkafka's statistics (in :meth:`poll`, the reader's thread): keep the lags."""
        self._lag = topic_lags(stats_json, self._topics)

    def assignment(self) -> set[TopicPartition]:
        """The partitions the group gave this member, as of the last rebalance."""
        return set(self._assignment)

    async def start(self) -> None:
        """Subscribe and start the thread."""
        from confluent_kafka import Consumer

        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._consumer = Consumer(self._config)
        self._consumer.subscribe(
            self._topics,
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._revoked,
        )
        self._thread = threading.Thread(target=self._pump, name="group-reader", daemon=True)
        self._thread.start()

    async def getmany(self, timeout_s: float, max_records: int) -> dict[TopicPartition, list[T]]:
        """What arrived, up to ``max_records``, by partition; waits up to ``timeout_s`` for it.

        Raises :class:`ReaderError` once the reading thread has stopped of an error: a
        worker that silently read nothing more would look alive and store nothing.
        """
        if not self._held and not self._ready:
            self._arrived.clear()
            if timeout_s > 0 and self._failure is None:
                # only the event is waited for: a timeout can never lose a batch
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), timeout_s)
        if self._failure is not None and not self._held and not self._ready:
            raise ReaderError(f"reading {self._topics} stopped") from self._failure
        records, self._held = self._held, []
        while len(records) < max_records and self._ready:
            epoch, batch, size = self._ready.popleft()
            self._backlog.taken(size)
            if epoch >= self._accept_from:
                records = records + batch if records else batch
        if len(records) > max_records:
            records, self._held = records[:max_records], records[max_records:]
        partition_of = self._partition_of
        out: dict[TopicPartition, list[T]] = {}
        for record in records:
            out.setdefault(partition_of(record), []).append(record)
        return out

    def _hand_over(self, item: tuple[int, list[T], int]) -> None:
        """On the loop: a batch from the thread."""
        self._ready.append(item)
        self._arrived.set()

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets`` (the next offset to read, per partition); raises if refused.

        Done by the reader's thread, between two polls or while it waits in a
        rebalance callback: a synchronous commit from any other thread waited
        forever here while that thread polled (confluent-kafka 2.16).
        """
        from confluent_kafka import TopicPartition as RdTopicPartition

        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        parts = [RdTopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]

        def settle(error: BaseException | None) -> None:
            if done.cancelled():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def job(consumer: Any) -> None:
            try:
                consumer.commit(offsets=parts, asynchronous=False)
            except Exception as exc:
                loop.call_soon_threadsafe(settle, exc)
            else:
                loop.call_soon_threadsafe(settle, None)

        self._commits.put(job)
        await done

    def seek(self, offsets: dict[TopicPartition, int]) -> None:
        """Read these partitions again from these offsets; nothing fetched before the
        seek reaches :meth:`getmany` after this call."""
        from confluent_kafka import TopicPartition as RdTopicPartition

        self._held = []
        self._accept_from += 1
        epoch = self._accept_from
        parts = [RdTopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]

        def job(consumer: Any) -> None:
            for part in parts:
                try:
                    consumer.seek(part)
                except Exception as exc:  # not assigned any more: its next owner reads it
                    log.info(
                        "not seeking %s [%d] to %d: %s",
                        part.topic,
                        part.partition,
                        part.offset,
                        exc,
                    )
            self._epoch = epoch  # what the thread hands over from now on comes after the seek

        self._seeks.put(job)

    async def stop(self) -> None:
        """Stop the thread, then leave the group and close the consumer (off the loop)."""
        self._stopping.set()
        self._backlog.wake()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)
        if self._consumer is not None:  # commits asked for as the thread ended
            await asyncio.to_thread(self._serve, self._commits)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await asyncio.to_thread(consumer.close)
        self._assignment = set()

    # the reader's thread

    def _on_loop(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a rebalance coroutine on the loop and wait for it (librdkafka waits for us)."""
        loop = self._loop
        if self._stopping.is_set() or loop is None or loop.is_closed():
            return  # closing: aiokafka did not call back either, and the loop may be gone

        future = asyncio.run_coroutine_threadsafe(make(), loop)
        while True:
            self._serve(self._commits)  # the coroutine may wait for the batch being stored
            try:
                future.result(_JOB_WAIT_S)
                return
            except concurrent.futures.TimeoutError:
                if loop.is_closed():
                    return
            except Exception:
                log.exception("a rebalance callback failed")
                return

    def _revoked(self, consumer: Any, partitions: list[Any]) -> None:
        async def revoke() -> None:
            await self._on_revoke()
            self._assignment = set()

        self._on_loop(revoke)

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        assigned = {TopicPartition(p.topic, p.partition) for p in partitions}

        async def assign() -> None:
            self._assignment = assigned
            await self._on_assign(assigned)

        self._on_loop(assign)

    def _serve(self, jobs: queue.SimpleQueue[Callable[[Any], None]]) -> None:
        """Commits or seeks asked for by the loop, in the order asked."""
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                return
            job(self._consumer)

    def _pump(self) -> None:
        """The reader's thread; an error ends it loudly, and :meth:`getmany` raises."""
        loop = self._loop
        assert loop is not None
        try:
            self._read()
        except Exception as exc:  # a closed consumer, or a bug (in ``convert``, say)
            if self._stopping.is_set():
                return
            log.exception("reading %s stopped", self._topics)
            self._failure = exc
            loop.call_soon_threadsafe(self._arrived.set)

    def _read(self) -> None:
        """Poll, convert, hand over; never ends but by :meth:`stop` or an error."""
        loop, consumer, convert = self._loop, self._consumer, self._convert
        assert loop is not None and consumer is not None
        errors = ErrorLog(log, ", ".join(self._topics))
        while not self._stopping.is_set():
            self._serve(self._seeks)
            self._serve(self._commits)
            messages = poll_batch(consumer, _POLL_S, self._max_batch)
            if not messages:
                continue
            epoch = self._epoch  # seeks are made by this thread, between polls
            batch, size, _ = sort_messages(messages, convert, errors)
            if not batch:
                continue
            # the loop may wait for a commit before it takes more: serve them meanwhile
            room = self._backlog.reserve(
                size,
                self._stopping,
                every_s=_JOB_WAIT_S,
                meanwhile=lambda: self._serve(self._commits),
            )
            if not room or self._stopping.is_set():
                return
            loop.call_soon_threadsafe(self._hand_over, (epoch, batch, size))
