"""Sending bytes to a topic through the Faust app's producer, without Faust's channel layer.

``faust.Topic.send`` wraps every record in a FutureMessage, a PendingMessage
and callbacks: about 100 us per record here, which made sending one event per
VM cost more than storing its metrics. The worker's payloads are already
encoded bytes, so they go to the app's producer (idempotent, acks=all,
batched) directly. ``send`` returns once the record is queued, like
``Topic.send``; delivery is retried by the producer.

``send_many`` queues the live updates of one fetch as one batch per partition:
aiokafka's ``send`` costs a coroutine chain, a metadata check and a future per
record (about a sixth of ``vmpulse up``'s event loop at 2,000 VMs, issue 11);
``send_batch`` pays that once per partition. The batch goes to the app's own
aiokafka producer (Faust's ``Producer._ensure_producer``, a seam listed in
streams/faust_internals.py and tested by tests/integration/streams/test_outbox.py), so
it shares the producer's idempotence, acks, in-flight request and ``flush``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.partitioner import KeyPartitioner

__all__ = ["TopicSender"]


class TopicSender:
    """``await sender.send(key=..., value=...)`` onto one topic."""

    def __init__(self, app: Any, topic: str) -> None:
        self._app = app
        self.topic = topic
        # the producer's own (streams/app.py): one cache of each key's hash per process
        configured = app.conf.producer_partitioner
        self._partitioner = (
            configured if isinstance(configured, KeyPartitioner) else KeyPartitioner()
        )

    async def send(self, *, key: bytes, value: bytes, partition: int | None = None) -> None:
        await self._app.producer.send(self.topic, key, value, partition, None, None)

    async def send_many(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Queue ``(key, value)`` records, each on its key's partition, in order per key."""
        if not records:
            return
        producer = self._app.producer._ensure_producer()
        partitions = sorted(await producer.partitions_for(self.topic))
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in records:
            by_partition.setdefault(self._partitioner(key, partitions, partitions), []).append(
                (key, value)
            )
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    # full: send it, go on in a new one (a record alone never overflows:
                    # events are far below the producer's batch size)
                    await producer.send_batch(batch, self.topic, partition=partition)
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        await self.send(key=key, value=value, partition=partition)
            if batch.record_count():
                await producer.send_batch(batch, self.topic, partition=partition)

    async def flush(self) -> None:
        """Wait until every record queued so far is acknowledged (all topics of the producer)."""
        await self._app.producer.flush()
