"""A real Apache Kafka broker without Docker: single-node KRaft from Maven Central jars.

Tests, CI and ``vmpulse up`` need a real broker, not a stand-in. The jars are
resolved once with Maven (``infra/kafka/pom.xml``) into a cache; each broker
gets its own storage directory, a free loopback port and the settings a single
node needs (replication factor 1 for internal topics and no initial rebalance
delay, or every consumer group would wait seconds before its first assignment).

``python -m infra.broker fetch`` resolves the jars (the Makefile runs it);
``python -m infra.broker run`` runs a broker in the foreground until SIGINT.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

__all__ = [
    "KAFKA_VERSION",
    "BrokerError",
    "ClusterNode",
    "LocalBroker",
    "die_with_parent",
    "ensure_jars",
    "free_port",
    "new_cluster_id",
]

KAFKA_VERSION = "4.1.1"
_HERE = Path(__file__).resolve().parent / "kafka"
_POM = _HERE / "pom.xml"
_LOG4J = _HERE / "log4j.properties"


class BrokerError(RuntimeError):
    """The local broker could not be fetched, formatted or started."""


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterNode:
    """One node's place in a KRaft cluster (infra/cluster.py): its id, ports and voters.

    ``voters`` is ``controller.quorum.voters`` (``1@127.0.0.1:port,...``);
    ``internal_replication`` the replication of Kafka's own topics (offsets,
    transactions), at most the number of nodes.
    """

    node_id: int
    port: int
    controller_port: int
    voters: str
    internal_replication: int
    cluster_id: str = ""
    fast_failover: bool = False
    """Fence a silent broker after 3 s instead of Kafka's 9 (a local cluster, one machine)."""


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "vmpulse" / f"kafka-{KAFKA_VERSION}"


def ensure_jars(cache_dir: Path | None = None) -> Path:
    """Resolve the broker's jars into ``cache_dir`` once; later calls only check the marker."""
    target = cache_dir or default_cache_dir()
    marker = target / ".complete"
    if marker.exists():
        return target
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed to fetch the Kafka jars; install it first")
    target.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(_POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={target}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BrokerError(
            f"mvn failed ({proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    marker.write_text(KAFKA_VERSION)
    return target


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class LocalBroker:
    """One KRaft broker+controller process on loopback, owned by this object."""

    def __init__(
        self,
        work_dir: Path,
        *,
        jars_dir: Path | None = None,
        heap_mb: int = 512,
        node: ClusterNode | None = None,
        long_running: bool = False,
        sasl_user: tuple[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.work_dir = work_dir
        # For the tests of the clients' security settings (VMPULSE_KAFKA_SECURITY_PROTOCOL):
        # with a SASL (user, password), a SASL_PLAINTEXT listener (SCRAM and PLAIN); with
        # TLS files too (a PEM keystore: key and certificate chain; the CA's certificate),
        # a SASL_SSL listener and an SSL one that wants a client certificate of that CA.
        self._sasl_user = sasl_user
        self._tls = tls if sasl_user is not None else None
        self.sasl_port = 0
        self.sasl_ssl_port = 0
        self.ssl_port = 0
        # A broker of a test session lives a minute: the JVM's quick compiler (C1) alone
        # starts it sooner. One that carries a fleet for hours wants the optimizing one
        # (C2): at 2,000 VMs through `vmpulse up` the broker used 38-42 % of a core with
        # it against 51-64 % with C1 only (issue 11, docs/BENCHMARKS.md).
        self._long_running = long_running
        self._jars_dir = jars_dir
        self._heap_mb = heap_mb
        self._proc: subprocess.Popen[bytes] | None = None
        self._node = node
        self.port = node.port if node is not None else 0
        self._log_start = 0

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (a test kills it with SIGKILL)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "broker.log"

    def _java(self, jars: Path, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self._heap_mb}m",
            "-XX:+UseSerialGC",
            *([] if self._long_running else ["-XX:TieredStopAtLevel=1"]),
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{_LOG4J}",
            "-cp",
            f"{jars}/*",
            main,
            *args,
        ]

    def _secured_listeners(self) -> str:
        """The secured listeners of ``listeners=`` (none without a SASL user)."""
        out = f",SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}" if self._sasl_user else ""
        if self._tls is not None:
            out += f",SASL_SSL://127.0.0.1:{self.sasl_ssl_port},SSL://127.0.0.1:{self.ssl_port}"
        return out

    def _secured_config(self) -> list[str]:
        """The secured listeners' lines of server.properties (none without a SASL user)."""
        if self._sasl_user is None:
            return []
        user, password = self._sasl_user
        names = ["sasl_plaintext", *(["sasl_ssl"] if self._tls is not None else [])]
        lines = ["sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"]
        for name in names:
            lines.append(
                f"listener.name.{name}.plain.sasl.jaas.config="
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'user_{user}="{password}";'
            )
            lines += [
                f"listener.name.{name}.{m}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                for m in ("scram-sha-256", "scram-sha-512")
            ]
        if self._tls is not None:
            keystore, ca = self._tls
            for name in ("sasl_ssl", "ssl"):
                lines += [
                    f"listener.name.{name}.ssl.keystore.type=PEM",
                    f"listener.name.{name}.ssl.keystore.location={keystore}",
                ]
            lines += [
                "listener.name.ssl.ssl.truststore.type=PEM",
                f"listener.name.ssl.ssl.truststore.location={ca}",
                "listener.name.ssl.ssl.client.auth=required",
            ]
        return lines

    def _write_config(self, controller_port: int) -> Path:
        logs = self.work_dir / "logs"
        conf = self.work_dir / "server.properties"
        node = self._node or ClusterNode(
            1, self.port, controller_port, f"1@127.0.0.1:{controller_port}", 1
        )
        secured = self._secured_listeners()
        # internal topics as durable as the cluster allows: on 3 nodes 3 replicas, 2 in sync
        rf, isr = node.internal_replication, max(1, node.internal_replication - 1)
        conf.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={node.node_id}",
                    f"controller.quorum.voters={node.voters}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{controller_port}{secured}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}{secured}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
                    "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL",
                    *self._secured_config(),
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={logs}",
                    "num.partitions=1",
                    f"offsets.topic.replication.factor={rf}",
                    "offsets.topic.num.partitions=4",
                    f"transaction.state.log.replication.factor={rf}",
                    f"transaction.state.log.min.isr={isr}",
                    "transaction.state.log.num.partitions=4",
                    f"share.coordinator.state.topic.replication.factor={rf}",
                    f"share.coordinator.state.topic.min.isr={isr}",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.cleaner.backoff.ms=1000",
                    "num.network.threads=2",
                    "num.io.threads=2",
                    "background.threads=2",
                    "message.max.bytes=16777216",
                    "replica.fetch.max.bytes=16777216",
                    *(
                        ["broker.session.timeout.ms=3000", "broker.heartbeat.interval.ms=500"]
                        if node.fast_failover
                        else []
                    ),
                    "",
                ]
            )
        )
        return conf

    def start(self, timeout_s: float = 60.0) -> str:
        """Format fresh storage, start the broker, and return once it accepts connections."""
        self.launch()
        try:
            return self.wait_started(timeout_s)
        except BaseException:  # a Ctrl-C meanwhile too: the half-started JVM goes with it
            self.stop()
            raise

    def launch(self) -> None:
        """Format the storage if it is new and start the process; do not wait for it.

        Call it from a thread that outlives the broker (the main thread): the
        child is killed when the thread that started it ends (die_with_parent).
        """
        jars, conf = self.format()
        self._launch(jars, conf)

    def format(self) -> tuple[Path, Path]:
        """Write the configuration and format new storage (safe from any thread)."""
        jars = self._jars_dir or ensure_jars()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self._node is None:
            self.port = free_port()
            controller_port = free_port()
            if self._sasl_user is not None:
                self.sasl_port = free_port()
            if self._tls is not None:
                self.sasl_ssl_port = free_port()
                self.ssl_port = free_port()
        else:
            controller_port = self._node.controller_port
        conf = self._write_config(controller_port)
        if (self.work_dir / "logs" / "meta.properties").exists():
            return jars, conf  # formatted before: keep the topics and offsets of the last run
        cluster_id = self._node.cluster_id if self._node is not None else new_cluster_id()
        scram = []
        if self._sasl_user is not None:  # SCRAM users live in the cluster's metadata
            user, password = self._sasl_user
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                scram += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        fmt = subprocess.run(
            self._java(
                jars,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(conf),
                *scram,
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
        return jars, conf

    def _launch(self, jars: Path, conf: Path) -> None:
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self._java(jars, "kafka.Kafka", str(conf)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()

    def wait_started(self, timeout_s: float = 60.0) -> str:
        """Return the bootstrap address once the launched broker serves; BrokerError if not."""
        assert self._proc is not None, "launch() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"broker exited with {self._proc.returncode}; see {self.log_path}"
                )
            if _port_open(self.port) and self._log_says_started(self._log_start):
                return self.bootstrap
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"broker did not start within {timeout_s}s; see {self.log_path}")

    def _log_says_started(self, offset: int) -> bool:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return b"Transition from STARTING to STARTED" in f.read()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL the process group if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# loaded in the parent: the child between fork and exec must not import or allocate much
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """In a child process (the broker, the simulated fleet): SIGKILL it when its owner
    dies, however it dies.

    A `vmpulse up` or test session that is killed (kill -9, a crashed runner)
    cannot stop its broker; without this the JVM lingers with half a gigabyte of
    heap and a port. Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes in URL-safe base64 without padding.

    Never starting with '-': the storage tool's argument parser would take such
    an id for an option and refuse to format (1 start in 64 failed before).
    """
    import base64

    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not found.startswith("-"):
            return found


def main(argv: list[str]) -> int:
    if argv[:1] == ["fetch"]:
        print(f"Kafka {KAFKA_VERSION} jars in {ensure_jars()}")
        return 0
    if argv[:1] == ["run"]:
        import tempfile

        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        broker = LocalBroker(Path(tempfile.mkdtemp(prefix="vmpulse-kafka-")), long_running=True)
        print(f"starting Kafka {KAFKA_VERSION} ...", flush=True)
        broker.start()
        print(f"Kafka listening on {broker.bootstrap} (Ctrl-C stops it)", flush=True)
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        finally:
            broker.stop()
        return 0
    print("usage: python -m infra.broker fetch|run", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
