"""The cached partitioner puts every key where Kafka's default partitioner does."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from infra import partitioner
from infra.partitioner import KeyPartitioner


def test_same_partition_as_the_default_partitioner_for_any_count() -> None:
    seed = 11
    print("seed", seed)
    rng = random.Random(seed)
    cached, default = KeyPartitioner(), DefaultPartitioner()
    keys = [f"vm-{rng.randrange(10**6)}".encode() for _ in range(300)] + [b"", b"\xff\x00"]
    for count in (1, 3, 12, 48):
        parts = list(range(count))
        for key in keys * 2:  # the second round comes from the cache
            assert cached(key, parts, parts) == default(key, parts, parts), (key, count)


# org.apache.kafka.common.utils.UtilsTest#testMurmur2: the Java client's own hashes
JAVA_VECTORS = {b"21": -973932308, b"foobar": -790332482, b"abc": 479470107}


def test_the_java_clients_partition_for_its_own_vectors() -> None:
    parts = list(range(100))
    cached = KeyPartitioner()
    for key, signed in JAVA_VECTORS.items():
        # Utils.toPositive(murmur2(key)) % numPartitions, the Java DefaultPartitioner
        assert cached(key, parts, parts) == (signed & 0x7FFFFFFF) % 100


def test_a_keyless_record_goes_to_an_available_partition() -> None:
    cached = KeyPartitioner()
    for _ in range(50):
        assert cached(None, [0, 1, 2, 3], [2]) == 2
    assert cached(None, [0, 1], []) in (0, 1)


def test_the_cache_never_grows_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partitioner, "MAX_KEYS", 10)
    cached, default = KeyPartitioner(), DefaultPartitioner()
    parts = list(range(7))
    for i in range(95):
        key = f"made-up-{i}".encode()
        assert cached(key, parts, parts) == default(key, parts, parts)
        assert len(cached._hashes) <= 10
