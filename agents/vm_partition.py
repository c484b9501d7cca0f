"""Which agent.raw partition a VM's records go to: Kafka's murmur2 of the VM id.

Pure, no I/O. The bridge's producer partitions keyed records with librdkafka's
``murmur2_random`` (agents/producing.py), which is the Java client's default
partitioner: ``(murmur2(key) & 0x7fffffff) % partitions``. Bridges that share a
socket directory own VMs by partition (agents/ownership.py), so a bridge reads
exactly the VMs whose records it would write to its partitions; the two
computations must agree, and a test holds them to what the broker stored.
"""

from __future__ import annotations

__all__ = ["murmur2", "vm_partition"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as a signed int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length % 4
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def vm_partition(vm_id: str, partitions: int) -> int:
    """The agent.raw partition of ``vm_id``'s records (its key is the id's UTF-8 bytes)."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, got {partitions}")
    return (murmur2(vm_id.encode()) & 0x7FFFFFFF) % partitions
