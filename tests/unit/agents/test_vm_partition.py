"""The VM -> agent.raw partition rule is Kafka's murmur2 partitioner (agents/vm_partition.py)."""

from __future__ import annotations

import pytest

from agents.vm_partition import murmur2, vm_partition

# org.apache.kafka.common.utils.UtilsTest#testMurmur2: the Java client's own vectors
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), JAVA_VECTORS.items())
def test_murmur2_matches_the_java_client(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_a_vm_id_maps_to_one_partition_in_range() -> None:
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(600)]
    parts = [vm_partition(v, 12) for v in ids]
    assert all(0 <= p < 12 for p in parts)
    assert len(set(parts)) == 12  # spread over every partition
    assert parts == [vm_partition(v, 12) for v in ids]


def test_no_partitions_is_an_error() -> None:
    with pytest.raises(ValueError):
        vm_partition("vm", 0)
