"""Batch consumption of agent.raw (and hypervisor.events) straight from librdkafka.

Why not a Faust agent: Faust turns every record into a Message, an Event and a
stream step with its own acking, about 90 us of CPU per record on the
reference machine, ten times what validating and storing it costs; a worker
then tops out near 4,000 messages a second. Here one ``getmany`` hands over
thousands of records at once, the handler stores them, and only then are the
offsets committed, explicitly (docs/BENCHMARKS.md has the figures). The group
member is librdkafka's, in a thread of its own (infra/group_reader.py): an
aiokafka one fetched in Python on the loop that carries the live path, a fifth
of a core at any load.

Guarantees kept from the agent it replaces:

* Offsets are committed only after the handler returned, i.e. after the store
  acknowledged the batch. A failing handler or commit leaves the batch
  uncommitted; it is read again after a pause, before anything after it (the
  store recognises what it already holds, streams/blocks.py). The pause doubles
  with each failure in a row (1 s to 30 s), and only the first failure of a run
  is logged with its traceback.
* One group, with the range assignor, for both topics: they share key (VM id)
  and partition count, so the same worker holds a VM's agent traffic and its
  hypervisor events, and presence sees both.
* ``on_revoked`` runs when partitions move, before another worker may store
  them, so cached high-water marks are dropped (also before a failed batch is
  read again); ``on_released`` then drops the state of the VMs held, and
  ``on_taken`` resumes the state of partitions given to this worker, on
  assignment and, should that have failed, before their first batch.

Live does not wait for storage: every fetch of agent.raw goes to ``on_poll`` the
moment it arrives (the worker decodes it and sends its live updates), while the
records gather into the storage batch for ``within_s``. What ``on_poll``
returned for the fetches of a batch goes to ``on_raw`` with it, so the batch is
decoded once; ``None`` there when a rebalance cut the batch and the fetches no
longer add up to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from infra.backoff import Backoff
from infra.config import KafkaAuth
from infra.group_reader import GroupReader, TopicPartition
from infra.kafka_auth import PLAINTEXT
from infra.kafka_io import LIVE_FETCH_WAIT_MS
from streams.pipeline import RawRecord
from streams.readback import from_rdkafka

__all__ = ["RawIngest"]

log = logging.getLogger(__name__)

P = TypeVar("P")
PollHandler = Callable[[list[RawRecord]], Awaitable[P]]
BatchHandler = Callable[[list[RawRecord], "list[P] | None"], Awaitable[None]]
PartitionsHandler = Callable[[set[int]], Awaitable[None]]
_Batches = dict[TopicPartition, list[RawRecord]]
_Inflight = tuple["asyncio.Task[None]", _Batches]
RETRY_PAUSE_S = 1.0
"""The pause before a failed batch is stored again; doubled after each failure in a row,
up to :data:`RETRY_MAX_S`: a store that is down is asked less and less often."""
RETRY_MAX_S = 30.0
STORE_WAIT_POLL_MS = 20
BATCH_BYTES = 32 * 1024 * 1024
"""A batch is full at ``max_records`` or at this many bytes of values, whichever comes
first: 20,000 lines of the largest an agent may send (4 MiB) would not fit a worker."""
HOLD_FACTOR = 2
"""While the previous batch is being stored, the next may grow past full (the live path
keeps fetching), to ``HOLD_FACTOR`` times ``max_records`` and ``BATCH_BYTES``; beyond that
the loop waits for the store and the backlog stays in Kafka. At 10,000 VMs a batch grew to
22,000-43,000 records while the previous one was stored (docs/BENCHMARKS.md, session 12)."""


class _Listener:
    def __init__(
        self,
        forget: Callable[[], None],
        release: Callable[[], Awaitable[None]],
        take: PartitionsHandler,
    ) -> None:
        self.forget = forget
        self.release = release
        self.take = take
        self.drain: Callable[[], Awaitable[None]] | None = None
        self.joined = False

    async def on_partitions_revoked(self) -> None:
        # the batch being stored finishes and commits before anyone else may take over
        if self.drain is not None:
            await self.drain()
        self.forget()
        try:  # the next owners resume the state written by now
            await self.release()
        except Exception:
            log.exception("writing the state of the revoked partitions failed")

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.joined = True  # an assignment, even an empty one: the group took us in
        self.forget()  # a new assignment may hold partitions others stored more of
        try:  # resume the partitions' state now: a silent VM sends nothing that would
            await self.take({tp.partition for tp in assigned})
        except Exception:
            log.exception("resuming the state of %s failed; retried with their records", assigned)


def _partition_of(record: RawRecord) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


class RawIngest(Generic[P]):
    """The worker's consumer of agent.raw and hypervisor.events; ``run()`` until cancelled."""

    def __init__(
        self,
        *,
        bootstrap: str,
        raw_topic: str,
        hypervisor_topic: str,
        group_id: str,
        on_poll: PollHandler[P],
        on_raw: BatchHandler[P],
        on_hypervisor: Callable[[bytes | None, int], Awaitable[None]],
        on_revoked: Callable[[], None],
        on_released: Callable[[], Awaitable[None]],
        on_taken: PartitionsHandler,
        max_records: int = 5000,
        within_s: float = 0.25,
        session_timeout_s: float = 10.0,
        group_instance_id: str | None = None,
        auth: KafkaAuth = PLAINTEXT,
        retry: Backoff | None = None,
    ) -> None:
        self._raw_topic = raw_topic
        self._hypervisor_topic = hypervisor_topic
        self._on_poll = on_poll
        self._on_raw = on_raw
        self._on_hypervisor = on_hypervisor
        self._on_taken = on_taken
        self._listener = _Listener(on_revoked, on_released, on_taken)
        self._max_records = max_records
        self._within_ms = int(within_s * 1000)
        self._reader_args: dict[str, Any] = {
            "bootstrap": bootstrap,
            "topics": [raw_topic, hypervisor_topic],
            "group_id": group_id,
            "group_instance_id": group_instance_id,
            "session_timeout_s": session_timeout_s,
            "fetch_wait_ms": LIVE_FETCH_WAIT_MS,
            "auth": auth,
        }
        self.batches = 0
        self.failures = 0
        self._retry = retry if retry is not None else Backoff(RETRY_PAUSE_S, 2.0, RETRY_MAX_S)
        self._pause_s = RETRY_PAUSE_S
        self._failing = 0  # failures in a row
        self._failing_since = 0.0
        self._reader: GroupReader[RawRecord] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._inflight: _Inflight | None = None
        self._listener.drain = self.drain

    @property
    def lag(self) -> int | None:
        """Records of agent.raw on this worker's partitions not stored yet (None: unknown)."""
        return None if self._reader is None else self._reader.lag(self._raw_topic)

    @property
    def failing(self) -> int:
        """Failed attempts in a row at storing the current batch (0 while storing works)."""
        return self._failing

    @property
    def joined(self) -> bool:
        """Whether the consumer group has given this worker its share (the worker's
        readiness, ``/readyz``); false again once :meth:`run` ended."""
        return self._listener.joined

    async def stop(self) -> None:
        """Cancel a running :meth:`run` and wait until its consumer left the group."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})

    async def run(self) -> None:
        """Collect a batch while the previous one is being stored; store them in order.

        Inserts stay strictly sequential (one at a time, each finished before the
        next starts), so only a partition's newest block can be incomplete after a
        crash, however many stored blocks are not committed yet.
        """
        self._task = asyncio.current_task()
        consumer: GroupReader[RawRecord] = GroupReader(
            convert=from_rdkafka,
            partition_of=_partition_of,
            on_revoke=self._listener.on_partitions_revoked,
            on_assign=self._listener.on_partitions_assigned,
            **self._reader_args,
        )
        self._inflight = None
        self._reader = consumer
        try:
            await consumer.start()
            while True:
                batches, polled = await self._collect(consumer)
                if self._inflight is not None:
                    previous = self._inflight
                    if not await self._finish(consumer, previous):
                        self._rewind(consumer, previous[1], batches)
                        await asyncio.sleep(self._pause_s)
                        continue
                if batches:
                    task = asyncio.create_task(self._store(consumer, batches, polled))
                    self._inflight = (task, batches)
        finally:
            if self._inflight is not None:
                self._inflight[0].cancel()
                await asyncio.wait({self._inflight[0]})
            self._listener.joined = False
            await consumer.stop()

    async def _store(
        self, consumer: GroupReader[RawRecord], batches: _Batches, polled: list[P] | None
    ) -> None:
        await self._handle(batches, polled)
        await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batches.items()})
        self.batches += 1

    async def _finish(self, consumer: GroupReader[RawRecord], inflight: _Inflight) -> bool:
        """Wait for the batch being stored; False if it failed (nothing after it is stored)."""
        self._inflight = None
        task = inflight[0]
        await asyncio.wait({task})
        exc = None if task.cancelled() else task.exception()
        if exc is None:
            if not task.cancelled() and self._failing:
                log.warning(
                    "storing resumed after %d failed attempts over %.0f s",
                    self._failing,
                    time.monotonic() - self._failing_since,
                )
                self._failing = 0
                self._retry.reset()
            return not task.cancelled()
        self.failures += 1
        self._failing += 1
        self._pause_s = self._retry.next_delay()
        if self._failing == 1:
            # the first of a run says everything, traceback included; the rest one line
            # each (a store down for an hour: ~130 lines, not 3,600 tracebacks)
            self._failing_since = time.monotonic()
            log.error("storing a batch failed; retrying in %.3g s", self._pause_s, exc_info=exc)
        else:
            first_line = (str(exc) or type(exc).__name__).splitlines()[0]
            log.warning(
                "storing a batch failed again (%d in a row): %s; retrying in %.3g s",
                self._failing,
                first_line[:300],
                self._pause_s,
            )
        return False

    def _rewind(self, consumer: GroupReader[RawRecord], *batches: _Batches) -> None:
        """Read the failed batch (and the one gathered after it) again, from its start."""
        self._listener.forget()
        first: dict[TopicPartition, int] = {}
        for batch in batches:
            for tp, records in batch.items():
                first[tp] = min(first.get(tp, records[0].offset), records[0].offset)
        assigned = consumer.assignment()
        consumer.seek({tp: offset for tp, offset in first.items() if tp in assigned})

    async def drain(self) -> None:
        """Let the batch being stored finish (and commit): partitions are about to move."""
        inflight = self._inflight
        if inflight is not None:
            await asyncio.wait({inflight[0]})

    async def _collect(self, consumer: GroupReader[RawRecord]) -> tuple[_Batches, list[P] | None]:
        """Records for ``within_s`` or until full (``max_records``, ``BATCH_BYTES``): few
        large inserts, not many small. While the previous batch is still being stored,
        longer and up to ``HOLD_FACTOR`` times more: the live path must not wait for the
        store.

        ``getmany`` returns as soon as anything arrived; alone it would make an
        insert per fetch. Each fetch of agent.raw goes to ``on_poll`` at once (the
        live path). A rebalance meanwhile moves positions back to the committed
        offsets: records that come again replace the ones held, and partitions
        that went to another worker are dropped; the fetches then no longer add up
        to the batch, and ``None`` stands for what ``on_poll`` returned.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._within_ms / 1000
        batches: _Batches = {}
        polled: list[P] | None = []
        count = size = 0

        def full(factor: int) -> bool:
            return count >= self._max_records * factor or size >= BATCH_BYTES * factor

        while True:
            storing = self._inflight is not None and not self._inflight[0].done()
            # full: the batch is cut once the previous one is stored; until then (up to
            # the memory bound) the live path keeps fetching into it, as it does past
            # the deadline, instead of stalling with the store
            grow = HOLD_FACTOR if storing else 1
            if full(grow):
                break
            remaining_ms = int((deadline - loop.time()) * 1000)
            if remaining_ms <= 0 or full(1):
                if not storing:
                    break
                # the previous batch is still being stored: its commit comes first
                remaining_ms = STORE_WAIT_POLL_MS
            got = await consumer.getmany(remaining_ms / 1000, self._max_records * grow - count)
            fetched: list[RawRecord] = []
            for tp, converted in got.items():
                held = batches.setdefault(tp, [])
                if held and converted[0].offset <= held[-1].offset:
                    # a rebalance reset the position to the committed offset: what we
                    # hold from there on comes again
                    kept = [r for r in held if r.offset < converted[0].offset]
                    count -= len(held) - len(kept)
                    size -= sum(len(r.value) for r in held[len(kept) :])
                    held[:] = kept
                    polled = None
                held.extend(converted)
                count += len(converted)
                size += sum(len(r.value) for r in converted)
                if tp.topic == self._raw_topic:
                    fetched.extend(converted)
            if fetched:
                result = await self._on_poll(fetched)
                if polled is not None:
                    polled.append(result)
        assigned = consumer.assignment()  # partitions lost meanwhile belong to another worker
        kept_batches = {tp: recs for tp, recs in batches.items() if tp in assigned and recs}
        if len(kept_batches) != len({tp for tp, recs in batches.items() if recs}):
            polled = None
        return kept_batches, polled

    async def _handle(self, batches: _Batches, polled: list[P] | None) -> None:
        await self._on_taken({tp.partition for tp in batches})  # done already, unless it failed
        raw: list[RawRecord] = []
        for tp, records in batches.items():
            if tp.topic == self._raw_topic:
                raw.extend(records)
            else:
                for rec in records:
                    await self._on_hypervisor(rec.value or None, rec.partition)
        if raw:
            await self._on_raw(raw, polled)
