"""Where the worker reaches into Faust's (and aiokafka's) insides, pinned and checked.

Two reaches: the live path sends batches through the app's own aiokafka
producer (``Producer._ensure_producer``, streams/outbox.py; its behaviour is
tested on the real broker by tests/integration/streams/test_outbox.py), and
Faust's commit-livelock detector must not crash the worker (below).

The detector (``faust.transport.consumer.Consumer._commit_livelock_detector``,
every 2.5 commit intervals: 1.25 s here) calls ``verify_event_path`` for each
assigned partition. With the aiokafka driver that method
(``AIOKafkaConsumerThread.verify_event_path``) runs on the app's event loop
but reads the aiokafka consumer's partition state, which the consumer's own
thread changes without a lock, and it reads ``tp_state.position``
unconditionally once the partition has been fetched from (its fetch-age test
before that compares aiokafka's epoch-time stamp with Faust's monotonic clock,
so any partition fetched once passes it). aiokafka's
``TopicPartitionState.position`` *asserts* a position is set; it is unset
from ``await_reset`` until the reset's ListOffsets answers. So a partition
whose position is being reset crashes the whole Faust app with an
``AssertionError`` (the ``vmpulse worker`` process exits) if a detector tick
falls in that window.

A broker failover opens that window and holds it open: a fetch that a
lagging replica answers with OFFSET_OUT_OF_RANGE (Kafka 4 lets a follower
serve a consumer's Fetch v11+, so a client with stale metadata reads from a
restarted replica still catching up; aiokafka resets the position where the
Java client would retry on the leader), then the reset's ListOffsets goes to
the partition's old leader and fails (NotLeaderForPartition, or the node is
down) until the client's metadata names the new leader: seconds, several
ticks. A rebalance that replaces the assignment between the detector's two
reads of the state gives the same unset position.

The fix is :class:`GuardedConsumer`: the detector's check of one partition
skips this tick when aiokafka asserts there is no position (nothing to judge:
the position is being re-established, and the fetch-path half of the check
already ran), and logs it; every other finding is still logged as Faust logs
it. It keeps the detector's purpose: nothing else in the worker notices a
control-events agent that stopped processing.

:data:`SEAMS` lists what this relies on; tests/unit/streams/test_faust_internals.py
fails, naming the seam, when an upgrade changes one of them, and pins the
behaviour itself: Faust's own check still raises in that state (when it stops
raising, Faust fixed it and the guard can go). The reproduction on a real
3-broker cluster is tests/integration/infra/test_faust_failover.py.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
from collections.abc import Iterable
from typing import Any

import faust
from faust.transport import base as faust_transport
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from infra.seams import signature_problem

__all__ = [
    "CHECKED_AGAINST",
    "SEAMS",
    "GuardedConsumer",
    "Seam",
    "check",
    "guard_livelock_detector",
    "installed_versions",
]

log = logging.getLogger(__name__)

CHECKED_AGAINST = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}
"""The versions every seam below was read in and tested against."""


@dataclasses.dataclass(frozen=True, slots=True)
class Seam:
    """A method of a library class the worker overrides, calls or relies on."""

    owner: type
    name: str
    signature: str
    why: str


SEAMS: tuple[Seam, ...] = (
    Seam(
        faust_aiokafka.Consumer,
        "verify_event_path",
        "(self, now: float, tp: faust.types.tuples.TP) -> None",
        "GuardedConsumer overrides it: the detector's check of one partition",
    ),
    Seam(
        faust_aiokafka.AIOKafkaConsumerThread,
        "verify_event_path",
        "(self, now: float, tp: faust.types.tuples.TP) -> None",
        "the check itself, which reads tp_state.position (aiokafka asserts it is set)",
    ),
    Seam(
        faust_consumer.Consumer,
        "verify_all_partitions_active",
        "(self) -> None",
        "the detector's body: calls self.verify_event_path for each assigned partition",
    ),
    Seam(
        faust_consumer.Consumer,
        "_commit_livelock_detector",
        "(obj: Any) -> Any",
        "the detector, a mode Service task calling verify_all_partitions_active",
    ),
    Seam(
        faust_aiokafka.Producer,
        "_ensure_producer",
        "(self) -> aiokafka.producer.producer.AIOKafkaProducer",
        "streams/outbox.py TopicSender.send_many sends batches through the app's own "
        "aiokafka producer (its idempotence, acks and flush)",
    ),
    Seam(
        faust_transport.Transport,
        "create_consumer",
        "(self, callback: Callable[[faust.types.tuples.Message], Awaitable], **kwargs: Any)"
        " -> faust.types.transports.ConsumerT",
        "builds the app's consumer from the transport's Consumer class, which "
        "guard_livelock_detector replaces",
    ),
)


class GuardedConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """Faust's aiokafka consumer, whose livelock check cannot crash the app (module doc)."""

    def verify_event_path(self, now: float, tp: Any) -> None:
        try:
            super().verify_event_path(now, tp)
        except AssertionError:
            # The only assert on this path is aiokafka's TopicPartitionState.position:
            # the partition's position is being reset (or its assignment replaced).
            # Nothing to judge this tick; the next tick looks again.
            log.warning(
                "livelock check of %s skipped: its position is being reset "
                "(a leader change or a rebalance)",
                tp,
            )


def guard_livelock_detector(app: faust.App) -> None:
    """Make ``app`` build its consumer as a :class:`GuardedConsumer`.

    Call it before the consumer exists (``create_app`` does, before the app starts).
    """
    assert app._consumer is None, "the app's consumer is already built"
    transport = app.transport
    assert transport.Consumer is faust_aiokafka.Consumer, (
        f"the worker expects Faust's aiokafka driver, found {transport.Consumer}"
    )
    transport.Consumer = GuardedConsumer


def check(seams: Iterable[Seam] = SEAMS) -> list[str]:
    """What no longer matches in the installed libraries; empty when every seam holds."""
    return [
        problem
        for seam in seams
        if (problem := signature_problem(seam.owner, seam.name, seam.signature, seam.why))
        is not None
    ]


def installed_versions() -> dict[str, str]:
    """The installed versions of :data:`CHECKED_AGAINST`'s libraries."""
    return {name: importlib.metadata.version(name) for name in CHECKED_AGAINST}
