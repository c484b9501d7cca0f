"""Kafka's default partitioner, with each key's hash computed once.

aiokafka's ``DefaultPartitioner`` hashes the key with murmur2 written in pure
Python (about 7 us for a VM id), on every send. The worker sends one live update
per VM and interval, always with the VM id as key: at 2,000 VMs the hash alone
was 8 % of ``vmpulse up``'s event loop (py-spy, issue 11). The partition must
stay exactly the Java client's (the bridge produces agent.raw through librdkafka
with the same murmur2 rule, and every producer of a topic must put a key on the
same partition to keep its order), so only the hash is cached: the partition is
still ``murmur2(key) & 0x7fffffff % len(all_partitions)``, whatever the topic's
partition count is at the time.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from aiokafka.partitioner import murmur2

__all__ = ["KeyPartitioner"]

# Keys are VM ids, user ids and the like: bounded by the fleet. A larger set of
# keys (a flood of made-up ids) only empties the cache, it never grows past this.
MAX_KEYS = 1 << 17


class KeyPartitioner:
    """A drop-in ``partitioner`` for aiokafka producers (and Faust's ``producer_partitioner``)."""

    __slots__ = ("_hashes",)

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if key is None:
            # no key, no order to keep: any partition that has a leader (as aiokafka does)
            return random.choice(available or all_partitions)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= MAX_KEYS:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]
