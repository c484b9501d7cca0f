"""What a librdkafka reading thread shares with the loop it hands records to.

Both readers (infra/partition_reader.py, infra/group_reader.py) poll in a thread
of their own and hand batches to asyncio. Three rules are the same in both:

* a poll waits for the first message only, then takes what is already queued
  (``consume(n, t)`` would wait for n messages however long the first waited);
* per-message errors are librdkafka's to retry: logged, at most once per
  ``ERROR_LOG_EVERY_S``, never raised into the loop;
* back-pressure: once ``limit`` bytes of values wait for the loop the thread
  stops polling (librdkafka's bounded prefetch then fills and stops fetching).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

__all__ = ["Backlog", "ErrorLog", "ReaderError", "poll_batch", "sort_messages"]

T = TypeVar("T")

ERROR_LOG_EVERY_S: Final = 10.0
"""A broker that stays away is logged once per this many seconds, not per poll."""


class ReaderError(Exception):
    """A topic cannot be read: it has no partitions, metadata did not come, or the
    reading thread stopped of an error (logged where it happened)."""


def poll_batch(consumer: Any, timeout_s: float, max_batch: int) -> Sequence[Any]:
    """Up to ``max_batch`` messages (and errors): waits ``timeout_s`` for the first only."""
    first = consumer.poll(timeout_s)
    if first is None:
        return ()
    return [first, *consumer.consume(max_batch - 1, 0)]


class ErrorLog:
    """Logs librdkafka's per-message errors, one per ``ERROR_LOG_EVERY_S``."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self._what = what
        self._last = 0.0

    def note(self, error: Any) -> None:
        if time.monotonic() - self._last >= ERROR_LOG_EVERY_S:
            self._last = time.monotonic()
            self._log.warning("reading %s: %s (librdkafka retries)", self._what, error.str())


def sort_messages(
    messages: Sequence[Any], convert: Callable[[Any], T], errors: ErrorLog
) -> tuple[list[T], int, list[tuple[int, int]]]:
    """The converted records, the bytes of their values, and the (partition, offset) of
    each end of partition reached (reported only where ``enable.partition.eof`` is set)."""
    from confluent_kafka import KafkaError

    batch: list[T] = []
    size = 0
    ends: list[tuple[int, int]] = []
    for m in messages:
        err = m.error()
        if err is None:
            value = m.value()
            size += len(value) if value is not None else 0
            batch.append(convert(m))
        elif err.code() == KafkaError._PARTITION_EOF:
            ends.append((m.partition(), m.offset()))
        else:
            errors.note(err)
    return batch, size, ends


class Backlog:
    """Bytes handed to the loop and not taken yet; the thread waits for room."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._queued = 0
        self._room = threading.Condition()

    def reserve(
        self,
        size: int,
        stopping: threading.Event,
        *,
        every_s: float,
        meanwhile: Callable[[], None] | None = None,
    ) -> bool:
        """Wait until ``size`` more fits (one batch may pass the limit: a record is never
        split), then count it; False if ``stopping`` was set first. ``meanwhile`` runs
        every ``every_s`` of waiting, outside the lock."""
        while True:
            with self._room:
                if self._queued == 0 or self._queued + size <= self._limit:
                    self._queued += size
                    return True
                if stopping.is_set():
                    return False
                self._room.wait(every_s)
            if meanwhile is not None:
                meanwhile()

    def taken(self, size: int) -> None:
        """The loop took a batch of ``size`` bytes."""
        with self._room:
            self._queued -= size
            self._room.notify()

    def wake(self) -> None:
        """A waiting thread looks at its stop flag now."""
        with self._room:
            self._room.notify()
