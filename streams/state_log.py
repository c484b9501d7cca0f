"""Presence and alert state per VM, kept in a compacted topic so another owner resumes it.

A worker holds, for each VM of its partitions, the agent and power state
(streams/presence.py) and the open breaches and alerts (streams/alerts.py).
Held only in memory, a restart or a rebalance lost them: a VM whose agent went
silent right after never turned offline, an open alert was never resolved, a
breach began its five minutes again.

So every change of a VM's state is written as a snapshot to ``worker.state``,
a compacted topic keyed by VM id, to the same partition number as the VM's
agent.raw partition. The worker that is given agent.raw partition ``p`` reads
partition ``p`` of ``worker.state`` to its end before it applies any record of
``p``, and carries on from there. This is what a Faust table's changelog does;
it is kept by hand because agent.raw is consumed by the ingest's own group
(streams/ingest.py), whose assignment a Faust table would not follow.

Writes are at least once and may trail the records they reflect by one batch:
a worker killed in between replays those records onto the older snapshot and
produces the same changes again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.config import KafkaAuth
from infra.kafka_auth import PLAINTEXT, aiokafka_auth
from schemas.worker_state import VmSnapshot
from streams.alerts import AlertEngine
from streams.presence import Presence
from streams.readback import read_until

__all__ = [
    "VmSnapshot",
    "apply_snapshot",
    "decode_snapshot",
    "read_partitions",
    "restore_all",
    "snapshot",
]

log = logging.getLogger(__name__)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(VmSnapshot)


def snapshot(presence: Presence, alerts: AlertEngine, vm_id: str) -> bytes:
    """The encoded state of one VM."""
    agent, power = presence.state(vm_id)
    breaches, newest = alerts.export(vm_id)
    return _encoder.encode(
        VmSnapshot(
            agent=agent,
            power=power,
            breaches=tuple(breaches),
            newest=newest,
        )
    )


def decode_snapshot(value: bytes) -> VmSnapshot:
    """A snapshot; msgspec.DecodeError / ValidationError if the record is not one."""
    return _decoder.decode(value)


def apply_snapshot(
    presence: Presence, alerts: AlertEngine, vm_id: str, snap: VmSnapshot, now: float
) -> None:
    """Resume a VM where its previous owner left it."""
    if snap.agent is not None or snap.power is not None:
        presence.restore(vm_id, snap.agent, snap.power, now)
    alerts.restore(vm_id, snap.breaches, snap.newest)


async def read_partitions(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int],
    *,
    timeout_s: float = 30.0,
    auth: KafkaAuth = PLAINTEXT,
) -> dict[str, tuple[int, bytes]]:
    """The newest record of every key in ``partitions`` of ``topic``: key -> (partition, value).

    Reads from the beginning to the end offsets taken at the start, outside any
    consumer group. Tombstones (empty values) remove their key.
    """
    wanted = [TopicPartition(topic, p) for p in sorted(set(partitions))]
    if not wanted:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **aiokafka_auth(auth),
    )
    await consumer.start()
    try:
        consumer.assign(wanted)
        ends = await consumer.end_offsets(wanted)
        await consumer.seek_to_beginning(*wanted)
        stops = {tp: end - 1 for tp, end in ends.items()}
        what = f"{topic} {sorted(p.partition for p in wanted)}"
        latest: dict[str, tuple[int, bytes]] = {}
        for rec in await read_until(consumer, stops, timeout_s, what):
            if rec.key is None:
                continue
            key = rec.key.decode("utf-8", errors="replace")
            if rec.value:
                latest[key] = (rec.partition, rec.value)
            else:
                latest.pop(key, None)
        return latest
    finally:
        await consumer.stop()


def restore_all(
    presence: Presence,
    alerts: AlertEngine,
    records: Iterable[tuple[str, bytes]],
    now: float,
) -> Sequence[str]:
    """Apply snapshots ``(vm_id, value)``; returns the VMs restored (bad records skipped)."""
    restored = []
    for vm_id, value in records:
        try:
            snap = decode_snapshot(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("skipping a state record of %s that is not a snapshot: %s", vm_id, exc)
            continue
        apply_snapshot(presence, alerts, vm_id, snap, now)
        restored.append(vm_id)
    return restored
