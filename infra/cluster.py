"""A local KRaft cluster of several brokers on loopback, from the same jars as infra/broker.py.

Each node is one process with both roles (broker and controller: the combined
mode, fine for a cluster on one machine) and the quorum is every node, so a
cluster of 3 keeps serving, and electing, with one node down. Kafka's own
topics get as many replicas as there are nodes, up to 3, and that many less one
in sync (infra/broker.py); vmpulse's topics get theirs from one rule,
``durability`` in infra/kafka_io.py, where they are created.

Used by ``vmpulse up`` with ``VMPULSE_LOCAL_BROKERS=3`` and by the failover
tests (tests/integration/infra/test_cluster.py). ``python -m infra.cluster run
3`` runs one in the foreground until SIGINT.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import sys
from pathlib import Path

from infra.broker import BrokerError, ClusterNode, LocalBroker, free_port, new_cluster_id

__all__ = ["LocalCluster"]


class LocalCluster:
    """``size`` broker+controller processes on loopback, owned by this object."""

    def __init__(
        self,
        work_dir: Path,
        size: int = 3,
        *,
        jars_dir: Path | None = None,
        heap_mb: int = 256,
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, got {size}")
        self.work_dir = work_dir
        self.size = size
        self._jars_dir = jars_dir
        self._heap_mb = heap_mb
        self.brokers: dict[int, LocalBroker] = {}

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    @property
    def log_path(self) -> Path:
        """Node 1's log (the others are beside it, ``node-<id>/broker.log``)."""
        return self.brokers[1].log_path

    def start(self, timeout_s: float = 90.0) -> str:
        """Start every node at once (the quorum needs a majority) and wait for all of them."""
        if not self.brokers:
            self._plan()
        # formatting is a JVM run per node: side by side, not one after the other; the
        # brokers themselves start from this thread (a child dies with its starting thread)
        with concurrent.futures.ThreadPoolExecutor(self.size) as pool:
            for done in [pool.submit(b.format) for b in self.brokers.values()]:
                done.result()
        for broker in self.brokers.values():
            broker.launch()
        try:
            for broker in self.brokers.values():
                broker.wait_started(timeout_s)
        except BaseException:  # BrokerError, or a Ctrl-C meanwhile: none is left running
            self.stop()
            raise
        return self.bootstrap

    def _plan(self) -> None:
        ports = {i: (free_port(), free_port()) for i in range(1, self.size + 1)}
        voters = ",".join(f"{i}@127.0.0.1:{c}" for i, (_, c) in ports.items())
        cluster_id = new_cluster_id()
        for i, (port, controller) in ports.items():
            node = ClusterNode(
                i, port, controller, voters, min(self.size, 3), cluster_id, fast_failover=True
            )
            self.brokers[i] = LocalBroker(
                self.work_dir / f"node-{i}",
                jars_dir=self._jars_dir,
                heap_mb=self._heap_mb,
                node=node,
            )

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would: no controlled shutdown, no flush."""
        broker = self.brokers[node_id]
        pid = broker.pid
        if pid is None:
            raise BrokerError(f"node {node_id} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        broker.stop()  # reaps the process

    def restart(self, node_id: int, timeout_s: float = 60.0) -> None:
        """Start a stopped node again on its storage, ports and place in the quorum."""
        broker = self.brokers[node_id]
        broker.launch()
        broker.wait_started(timeout_s)

    def node_of(self, address: str) -> int:
        """The id of the node listening on ``host:port``."""
        for node_id, broker in self.brokers.items():
            if broker.bootstrap == address:
                return node_id
        raise KeyError(address)

    def stop(self) -> None:
        """Stop every node (controlled shutdown, side by side)."""
        with concurrent.futures.ThreadPoolExecutor(max(1, len(self.brokers))) as pool:
            list(pool.map(lambda b: b.stop(), self.brokers.values()))

    def kill_all(self) -> None:
        """SIGKILL every running node: for throw-away clusters, whose data goes next."""
        for node_id, broker in self.brokers.items():
            if broker.pid is not None:
                self.kill(node_id)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        import tempfile

        size = int(argv[1]) if len(argv) > 1 else 3
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="vmpulse-kafka-cluster-")), size)
        print(f"starting a Kafka cluster of {size} ...", flush=True)
        cluster.start()
        print(f"Kafka cluster on {cluster.bootstrap} (Ctrl-C stops it)", flush=True)
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        finally:
            cluster.stop()
        return 0
    print("usage: python -m infra.cluster run [SIZE]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
