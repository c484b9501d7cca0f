"""The worker's conductor: each fetch of agent.raw goes live at once, storage follows in blocks.

Two clocks, one decode. The ingest (streams/ingest.py) hands every fetch to
:meth:`Conductor.poll` the moment it arrives: the fetch is validated and
normalized, and its samples go to their VMs' watchers through the live throttle
right away, a few milliseconds after the bridge produced them. The same fetches
gather into a storage batch for ``VMPULSE_STORE_BATCH_MS``; :meth:`store_batch`
then writes it as one block (one insert per table, exactly once, streams/storing.py)
from the results the fetches already produced, feeds presence and alerts, sends the
DLQ records, and the ingest commits. Before this split a sample went live only when
its batch was stored, one to two seconds after the agent wrote it (issue 11).

The decode is reused only when the batch is exactly the new block of its
fetches, in the order a replay rebuilds (partition, then offset: the dedup tokens
must meet the same rows again). After a crash, a failed insert or a rebalance,
when records are skipped as stored or blocks are repaired, the block's records
are decoded again from the block itself: rare, and then the simple way is the
safe one. Live updates of records that come again go out again: at least once,
as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final, Protocol, TypeVar

from schemas.events import encode_outbound, utc_now_iso
from schemas.facts import SystemSample
from store.clickhouse import Store
from streams.blocks import Block
from streams.line_warnings import LineWarnings
from streams.live import LiveThrottle
from streams.pipeline import BatchResult, RawRecord, live_event, merge_results, process_batch
from streams.storing import BlockPlanner, write_block

__all__ = ["BatchSender", "Conductor", "Polled", "Sender", "Stages"]

log = logging.getLogger(__name__)

T = TypeVar("T")

Polled = dict[int, BatchResult]
"""What one fetch became: its records' results per partition."""


class Sender(Protocol):
    async def send(self, *, key: bytes, value: bytes, partition: int | None = None) -> None: ...


class BatchSender(Sender, Protocol):
    """A sender that also queues many records at once (one batch per partition)."""

    async def send_many(self, records: Sequence[tuple[bytes, bytes]]) -> None: ...


class Stages(Protocol):
    """Presence and alerts (streams/event_agents.py), fed from stored blocks."""

    async def observe_raw(self, records: Sequence[RawRecord]) -> None: ...
    async def observe_samples(self, samples: Sequence[SystemSample]) -> None: ...
    async def persist(self) -> None: ...


class Conductor:
    """Moves agent.raw through one worker: live per fetch, storage per batch (see module doc)."""

    def __init__(
        self,
        *,
        store: Store,
        raw_topic: str,
        planner: BlockPlanner,
        stages: Stages,
        outbound: BatchSender,
        dlq: Sender,
        live_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._raw_topic = raw_topic
        self._planner = planner
        self._stages = stages
        self._outbound = outbound
        self._dlq = dlq
        self._clock = clock
        # samples, not encoded events: only the few that go out are encoded
        self.throttle: LiveThrottle[SystemSample] = LiveThrottle(live_interval_s)
        # skipped_replay: records of a batch that were stored before (a replay); repaired:
        # records of recorded blocks inserted again, whose duplicates the store dropped;
        # decoded_again: records decoded a second time because their batch was not a plain
        # new block (after a crash or a rebalance)
        self.stats = {
            "stored": 0,
            "rejected": 0,
            "skipped_replay": 0,
            "repaired": 0,
            "rows": 0,
            "live_sent": 0,
            "decoded_again": 0,
            "unrecognized": 0,  # messages of unknown types, stored as agent events
        }
        # refused and unrecognized lines are logged, a few per VM (a guest cannot flood it)
        self._line_warnings = LineWarnings(log)

    async def poll(self, records: list[RawRecord]) -> Polled:
        """The live path: decode one fetch and send its samples to their watchers now.

        A partition at a time: each one's updates leave before the next is decoded,
        and the loop is given back between them. After a pause a fetch brings hundreds
        of lines, tens of milliseconds of work, and in `vmpulse up` the gateway's
        deliveries wait on this same thread (docs/BENCHMARKS.md, session 7).
        """
        by_partition: dict[int, list[RawRecord]] = {}
        for rec in records:
            by_partition.setdefault(rec.partition, []).append(rec)
        polled: Polled = {}
        offer = self.throttle.offer
        for partition, recs in by_partition.items():
            if polled:
                await asyncio.sleep(0)  # the gateway's ready deliveries go first
            result = polled[partition] = process_batch(recs)
            now = self._clock()
            await self._send_live([s for s in result.samples if offer(s.vm_id, s, now) is not None])
        return polled

    async def flush_live(self) -> None:
        """Send the merged updates whose VMs may have one again (the app's short timer)."""
        await self._send_live([sample for _, sample in self.throttle.due(self._clock())])

    async def _send_live(self, samples: list[SystemSample]) -> None:
        """Live updates, queued together (one batch per outbound partition)."""
        if not samples:
            return
        now_iso = utc_now_iso()  # one event time for the lot (formatting it is not free)
        await self._outbound.send_many(
            [(s.vm_id.encode(), encode_outbound(live_event(s, now_iso))) for s in samples]
        )
        self.stats["live_sent"] += len(samples)

    async def store_batch(self, batch: list[RawRecord], polled: list[Polled] | None) -> None:
        """Store one batch of agent.raw; the ingest commits its offsets when this returns.

        The whole batch is one block, one insert per table: inserts have a fixed
        cost, so a block per partition would cost a worker half its throughput.
        Blocks recorded before whose records come again are repaired first.
        """
        blocks, skipped = await self._planner.plan(batch)
        plain = polled is not None and skipped == 0 and len(blocks) == 1 and not blocks[0].repair
        for block in blocks:
            if plain and polled is not None:
                result = _in_block_order(polled)
            else:
                result = process_batch(block.records)
                self.stats["decoded_again"] += len(block.records)
            await self._store_block(block, result)
            self._planner.stored(block)
        self.stats["skipped_replay"] += skipped  # once their repairs are done too
        await self._stages.persist()

    async def _store_block(self, block: Block, result: BatchResult) -> None:
        records = block.records
        if not block.repair:
            # a repair may hold other workers' partitions, and its presence and alert
            # changes are in the state they resumed from (streams/state_log.py)
            async for part in _slices(records):
                await self._stages.observe_raw(part)
        # recorded first (unless a repair), then one insert per table with a token a replay
        # reproduces (streams/storing.py): every row and rollup counts once
        written = await write_block(self._store, self._raw_topic, block, result.rows)
        if block.repair:
            self.stats["repaired"] += len(records)
        else:
            self.stats["stored"] += len(result.activity)
            self.stats["rows"] += written
            self.stats["unrecognized"] += len(result.unrecognized)
            self._line_warnings.report(result, self._clock())
            async for samples in _slices(result.samples):
                await self._stages.observe_samples(samples)
        self.stats["rejected"] += len(result.rejects)
        for vm_id, payload in result.rejects:
            await self._dlq.send(key=vm_id.encode(), value=payload)


_SLICE: Final = 250
"""Records a stored block's presence and alert stages take between two turns of the loop."""


async def _slices(items: Sequence[T]) -> AsyncIterator[Sequence[T]]:
    """``items`` in slices, the loop given back between them (and after the last one).

    Storing is background work: a block of 2,000 lines held the loop for 10-20 ms in
    presence and alerts, and in `vmpulse up` the live path shares the thread
    (docs/BENCHMARKS.md, session 7).
    """
    for start in range(0, len(items), _SLICE):
        yield items[start : start + _SLICE]
        await asyncio.sleep(0)


def _in_block_order(polled: list[Polled]) -> BatchResult:
    """The fetches' results in partition order, fetch order within each: a block's order."""
    partitions = sorted({p for fetch in polled for p in fetch})
    return merge_results([fetch[p] for p in partitions for fetch in polled if p in fetch])
