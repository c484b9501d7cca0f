"""Sending bytes to a topic through the Faust app's producer, without Faust's channel layer.

``faust.Topic.send`` wraps every record in a FutureMessage, a PendingMessage
and callbacks: about 100 us per record here, which made sending one event per
VM cost more than storing its metrics. The worker's payloads are already
encoded bytes, so they go to the app's producer (idempotent, acks=all,
batched) directly. ``send`` returns once the record is queued, like
``Topic.send``; delivery is retried by the producer.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TopicSender"]


class TopicSender:
    """``await sender.send(key=..., value=...)`` onto one topic."""

    def __init__(self, app: Any, topic: str) -> None:
        self._app = app
        self.topic = topic

    async def send(self, *, key: bytes, value: bytes, partition: int | None = None) -> None:
        await self._app.producer.send(self.topic, key, value, partition, None, None)

    async def flush(self) -> None:
        """Wait until every record queued so far is acknowledged (all topics of the producer)."""
        await self._app.producer.flush()
