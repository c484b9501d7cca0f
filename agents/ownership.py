"""Which VMs of a shared socket directory this bridge reads: a Kafka group's assignment.

Several bridges may watch one socket directory (issue 14.3: one dies, another
goes on). A VM must never be read by two of them at once: its lines would
reach agent.raw through two producers, out of order, and presence would see
two connections. So the VMs are split by the partition their records go to
(:func:`agents.vm_partition.vm_partition`): the bridges join one consumer group
(``<prefix>vmpulse-bridge.owners``) subscribed to agent.raw, and a bridge reads
the VMs of the partitions the group assigns it. No record is consumed (every
assigned partition is paused); the group is only the membership and the lease.

Why a consumer group rather than a lease of our own or rendezvous hashing over
bridges announced on a compacted topic: the group coordinator already is a
lease service with fencing by generation, and Kafka's rebalance protocol (the
eager one aiokafka speaks) is a barrier: every member gives up its partitions,
and :meth:`Ownership` waits until this bridge's connections of those VMs ended
and their lines were acknowledged, before the group hands them to anyone. The
next owner therefore starts after the last line of the previous one (order per
VM kept across the handover). The price: every rebalance (a bridge joins, leaves
or dies) reconnects every VM once, which is what a guest's virtio-serial port
tolerates (its writes wait in the queue).

When a bridge dies without leaving (kill -9, a lost host), its VMs move after
the group's session timeout (``VMPULSE_KAFKA_SESSION_TIMEOUT_S``). A bridge
frozen longer than that (SIGSTOP, a stalled VM) is fenced by the coordinator:
its next heartbeat fails, and it gives up its VMs before it rejoins; between
thawing and that heartbeat (at most the heartbeat interval, a third of the
session timeout) it may still read. More bridges than agent.raw partitions
leave the extra ones idle, ready to take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from agents.vm_partition import vm_partition
from infra.config import KafkaAuth
from infra.kafka_auth import PLAINTEXT, aiokafka_auth

__all__ = ["Ownership", "owners_group_id"]

log = logging.getLogger(__name__)


def owners_group_id(topic_prefix: str) -> str:
    """The consumer group whose assignment says which bridge reads which VMs."""
    return f"{topic_prefix}vmpulse-bridge.owners"


class Ownership:
    """This bridge's share of the VMs, from the group's assignment of agent.raw partitions.

    ``on_released`` is awaited when the share is taken away (every rebalance
    starts so): it must end the connections of VMs no longer owned and wait for
    their lines' acknowledgements. ``on_claimed`` is called with the new share.
    Until the first assignment nothing is owned.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group_id: str,
        *,
        on_released: Callable[[], Awaitable[None]],
        on_claimed: Callable[[], None],
        session_timeout_s: float = 10.0,
        auth: KafkaAuth = PLAINTEXT,
    ) -> None:
        self._bootstrap = bootstrap
        self._auth = auth
        self._topic = topic
        self._group_id = group_id
        self._on_released = on_released
        self._on_claimed = on_claimed
        self._session_timeout_ms = int(session_timeout_s * 1000)
        self._owned: frozenset[int] = frozenset()
        self._partitions = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.rebalances = 0

    @property
    def partitions(self) -> frozenset[int]:
        """The agent.raw partitions whose VMs this bridge reads now."""
        return self._owned

    def owns(self, vm_id: str) -> bool:
        return bool(self._owned) and vm_partition(vm_id, self._partitions) in self._owned

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id="vmpulse-bridge-owner",
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(100, self._session_timeout_ms // 3),
            fetch_max_bytes=1024,
            max_partition_fetch_bytes=1024,
            **aiokafka_auth(self._auth),
        )
        consumer.subscribe([self._topic], listener=_Listener(self))
        self._consumer = consumer  # before start: the first assignment may come during it
        await consumer.start()
        self._task = asyncio.create_task(self._poll(consumer), name="bridge-ownership")

    async def stop(self) -> None:
        """Leave the group: the other bridges take this one's VMs at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()  # revokes (on_released) and sends LeaveGroup
            self._consumer = None

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        # The group drops a member that stops polling (max.poll.interval); every
        # partition is paused, so a poll returns nothing and costs a wake-up a second.
        while True:
            try:
                await consumer.getmany(timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broker away for a moment: the consumer reconnects
                log.warning("bridge ownership: poll failed", exc_info=True)
                await asyncio.sleep(1.0)

    async def _revoked(self) -> None:
        self._owned = frozenset()
        await self._on_released()

    def _assigned(self, assigned: set[TopicPartition]) -> None:
        if self._consumer is not None and assigned:
            self._consumer.pause(*assigned)
            self._partitions = len(self._consumer.partitions_for_topic(self._topic) or ())
        self._owned = frozenset(tp.partition for tp in assigned if tp.topic == self._topic)
        self.rebalances += 1
        log.info("bridge owns the VMs of agent.raw partitions %s", sorted(self._owned))
        self._on_claimed()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ownership: Ownership) -> None:
        self._ownership = ownership

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._ownership._revoked()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._ownership._assigned(set(assigned))
