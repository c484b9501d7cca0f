"""The nodes of a local cluster are configured as one quorum (no process is started here)."""

from __future__ import annotations

from pathlib import Path

from infra.cluster import LocalCluster


def _config(path: Path) -> dict[str, str]:
    lines = (path / "server.properties").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_three_nodes_share_one_quorum_and_replicate_kafkas_own_topics(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, 3)
    cluster._plan()
    configs = []
    for node_id, broker in cluster.brokers.items():
        assert broker._node is not None
        broker.work_dir.mkdir()
        broker._write_config(broker._node.controller_port)
        configs.append(_config(broker.work_dir))
        assert configs[-1]["node.id"] == str(node_id)
    assert len({c["controller.quorum.voters"] for c in configs}) == 1
    voters = configs[0]["controller.quorum.voters"].split(",")
    assert [v.split("@")[0] for v in voters] == ["1", "2", "3"]
    assert len({c["listeners"] for c in configs}) == 3  # each node its own ports
    for c in configs:
        assert c["offsets.topic.replication.factor"] == "3"
        assert c["transaction.state.log.min.isr"] == "2"
        assert c["broker.session.timeout.ms"] == "3000"
    assert cluster.bootstrap.count(",") == 2
    assert len({b._node.cluster_id for b in cluster.brokers.values() if b._node}) == 1


def test_a_single_broker_keeps_its_settings(tmp_path: Path) -> None:
    from infra.broker import LocalBroker

    broker = LocalBroker(tmp_path)
    broker.port = 9092
    broker._write_config(9093)
    config = _config(tmp_path)
    assert config["node.id"] == "1"
    assert config["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert config["offsets.topic.replication.factor"] == "1"
    assert config["transaction.state.log.min.isr"] == "1"
    assert "broker.session.timeout.ms" not in config
