"""Scale-out settings: topic replication by cluster size, local brokers, the store's cluster."""

from __future__ import annotations

import pytest

from infra.config import ConfigError, Settings
from infra.kafka_io import Durability, durability


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [
        (1, Durability(1, 1)),  # a single broker has no one to wait for
        (2, Durability(2, 1)),  # two: one may go down and writes go on
        (3, Durability(3, 2)),  # the rule of issue 14: 3 replicas, 2 in sync
        (5, Durability(3, 2)),
    ],
)
def test_replicas_follow_the_cluster_size(brokers: int, expected: Durability) -> None:
    assert durability(brokers) == expected


def test_a_requested_replication_factor_wins_and_keeps_two_in_sync_from_three() -> None:
    assert durability(5, requested=5) == Durability(5, 2)
    assert durability(3, requested=1) == Durability(1, 1)
    with pytest.raises(ValueError, match="at least one broker"):
        durability(0)


def test_the_replication_setting_is_unset_unless_given() -> None:
    assert Settings.from_env({}).kafka.replication_factor is None
    assert Settings.from_env({"VMPULSE_REPLICATION_FACTOR": "3"}).kafka.replication_factor == 3
    with pytest.raises(ConfigError, match="VMPULSE_REPLICATION_FACTOR must be >= 1"):
        Settings.from_env({"VMPULSE_REPLICATION_FACTOR": "0"})


def test_local_brokers_setting() -> None:
    assert Settings.from_env({}).kafka.local_brokers == 1
    assert Settings.from_env({"VMPULSE_LOCAL_BROKERS": "3"}).kafka.local_brokers == 3
    with pytest.raises(ConfigError, match="VMPULSE_LOCAL_BROKERS"):
        Settings.from_env({"VMPULSE_LOCAL_BROKERS": "none"})


def test_the_store_cluster_setting_needs_a_server_and_an_identifier() -> None:
    server = {"VMPULSE_CLICKHOUSE_URL": "https://u:p@ch:8443/vmpulse"}
    assert Settings.from_env(server).store.cluster is None
    named = Settings.from_env({**server, "VMPULSE_CLICKHOUSE_CLUSTER": "metrics"})
    assert named.store.cluster == "metrics"
    with pytest.raises(ConfigError, match="identifier"):
        Settings.from_env({**server, "VMPULSE_CLICKHOUSE_CLUSTER": "a b"})
    with pytest.raises(ConfigError, match="needs a ClickHouse server"):
        Settings.from_env({"VMPULSE_CLICKHOUSE_CLUSTER": "metrics"})
