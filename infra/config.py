"""Settings: the one place that reads the environment.

Every process builds one frozen :class:`Settings` in ``main()`` with
:meth:`Settings.from_env` and passes it down to constructors. Nothing else in
the code base touches ``os.environ``; that keeps stages testable with plain
values and makes a missing or malformed variable fail at start-up, all errors
reported at once, instead of deep inside a running stage.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, cast

from schemas.topics import MAX_BATCH_BYTES

__all__ = [
    "DEV_AGENT_SECRET",
    "DEV_JWT_SECRET",
    "KAFKA_SASL_MECHANISMS",
    "KAFKA_SECURITY_PROTOCOLS",
    "LOCAL_PARTITIONS",
    "LOG_FORMATS",
    "MIN_JWT_SECRET_BYTES",
    "SECRET_VARIABLES",
    "AlertSettings",
    "BridgeSettings",
    "ConfigError",
    "GatewaySettings",
    "KafkaAuth",
    "KafkaSettings",
    "ReadSettings",
    "Secret",
    "Settings",
    "StoreSettings",
    "TokenSettings",
    "WorkerSettings",
]

DEV_JWT_SECRET = "vmpulse-development-jwt-key-do-not-use-in-production"
DEV_AGENT_SECRET = "vmpulse-development-agent-key-do-not-use-in-production"

LOG_FORMATS = ("text", "json")

MIN_JWT_SECRET_BYTES = 32
"""An HS256 key shorter than the hash output (32 bytes) is weak (RFC 7518, 3.2)."""


# Signature algorithms the gateway accepts for browser tokens; "none" is never one.
_JWT_ALGORITHMS = frozenset(
    {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256"}
)


class ConfigError(ValueError):
    """One or more settings are invalid; the message lists every problem."""


class Secret:
    """A string that never shows itself in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _var(
    name: str,
    default: Any,
    *,
    kind: str = "int",
    minimum: float = 0,
    scale: int = 1,
    doc: str = "",
    form: str = "",
    shown: str = "",
) -> Any:
    """A setting read from the environment variable ``name``; its default is written here only.

    ``kind``: how the text is read: ``int`` and ``float`` (checked against
    ``minimum``; an integer is divided by ``scale``, e.g. milliseconds to seconds),
    ``text`` (as given), ``optional`` (empty is None), ``optional_int``,
    ``secret``, ``flag`` (1/0, true/false, yes/no), or ``special`` (read by
    :meth:`Settings.from_env` itself, where it needs other settings).

    The operator's table of settings (docs/DEPLOYMENT.md, ``python -m
    infra.settings_doc``) is made from these declarations: ``doc`` is the
    setting's one-line description, ``form`` what a ``special`` value looks like,
    ``shown`` its default where the declared value would not say it (it depends
    on other settings, or two fields share the variable).
    """
    metadata = {
        "env": name,
        "kind": kind,
        "minimum": minimum,
        "scale": scale,
        "doc": doc,
        "form": form,
        "shown": shown,
    }
    return dataclasses.field(default=default, metadata=metadata)


KAFKA_SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
"""Kafka's own names for how a client talks to the brokers (``security.protocol``)."""

KAFKA_SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
"""The SASL mechanisms every client library of vmpulse speaks with a user and a password."""


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaAuth:
    """How every Kafka client of a process connects: encryption and who it is.

    One value, passed down to each client the process makes; infra/kafka_auth.py turns
    it into each library's own settings (librdkafka, aiokafka, Faust). The default is
    Kafka's own: PLAINTEXT, no user.
    """

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: Secret | None = None
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")


LOCAL_PARTITIONS: Final = 2
"""Partitions of each topic on the local broker that `up` (or a stage) starts.

The cluster default (12) lets a worker group grow; on one machine one worker
reads every partition, and each partition costs requests: librdkafka sends one
produce request per partition (librdkafka#1700), and a batch cut into 12 small
ones is fetched and forwarded in as many pieces. At 1,000 samples a second the
broker answered 1,823 requests a second on 12 partitions and 752 on 2, and its
request threads were the largest user of two shared cores; at 2,000 VMs the
agent -> browser p99 fell from 97-140 ms to 33-46 ms (docs/BENCHMARKS.md,
"Partitions of a one-machine up").
Two, not one, so a second worker beside `up` still gets a share.
"""


@dataclasses.dataclass(frozen=True, slots=True)
class KafkaSettings:
    """The cluster and the topics every stage uses."""

    bootstrap: str | None = _var(
        "VMPULSE_KAFKA_BOOTSTRAP",
        None,
        kind="optional",
        doc="Kafka bootstrap servers (host:port,...); unset: `up` and each stage start a local "
        "broker, the tools use the one `up` recorded",
    )
    topic_prefix: str = _var(
        "VMPULSE_TOPIC_PREFIX",
        "",
        kind="text",
        doc="prefix of every topic name (several deployments or tests on one cluster)",
    )
    partitions: int = _var(
        "VMPULSE_PARTITIONS",
        12,
        kind="special",
        form="integer >= 1",
        shown=f"12; {LOCAL_PARTITIONS} on a local broker",
        doc="partitions of each topic the stages create (fixed at creation: docs/SCALING.md); "
        "the local broker of `up` (no VMPULSE_KAFKA_BOOTSTRAP) gets fewer: one worker reads them",
    )
    replication_factor: int | None = _var(
        "VMPULSE_REPLICATION_FACTOR",
        None,
        kind="optional_int",
        minimum=1,
        doc="replicas of each topic created; unset: from the cluster's size (3 where there are "
        "3 brokers, infra/kafka_io.py `durability`)",
    )
    local_brokers: int = _var(
        "VMPULSE_LOCAL_BROKERS",
        1,
        minimum=1,
        doc="without VMPULSE_KAFKA_BOOTSTRAP, `up` starts this many local brokers (1, or a "
        "KRaft cluster of 3: infra/cluster.py)",
    )
    jars_dir: Path | None = _var(
        "VMPULSE_KAFKA_JARS",
        None,
        kind="special",
        form="directory",
        doc="the local broker's jars (the image has them); unset: fetched by Maven into "
        "~/.cache/vmpulse",
    )
    wait_s: float = _var(
        "VMPULSE_KAFKA_WAIT_S",
        120.0,
        kind="float",
        minimum=0.0,
        doc="how long a stage waits at start for its Kafka cluster to answer (containers start "
        "in any order); 0: not at all",
    )
    # worker group membership: a dead worker's partitions move after the session
    # timeout; a worker restarted with the same instance id takes them back at once
    session_timeout_s: float = _var(
        "VMPULSE_KAFKA_SESSION_TIMEOUT_S",
        10.0,
        kind="float",
        minimum=6.0,
        doc="a silent worker's partitions move to the others after this long",
    )
    worker_instance_id: str | None = _var(
        "VMPULSE_WORKER_ID",
        None,
        kind="optional",
        doc="a stable id per worker (static membership): restarted, it takes its partitions "
        "back without a rebalance",
    )
    # how every Kafka client of the process connects (KafkaAuth, infra/kafka_auth.py)
    security_protocol: str = _var(
        "VMPULSE_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        kind="special",
        form=" / ".join(KAFKA_SECURITY_PROTOCOLS),
        doc="how the Kafka clients reach the brokers: TLS (SSL), a SASL user, or both",
    )
    sasl_mechanism: str = _var(
        "VMPULSE_KAFKA_SASL_MECHANISM",
        "SCRAM-SHA-512",
        kind="special",
        form=" / ".join(KAFKA_SASL_MECHANISMS),
        doc="the SASL mechanism of VMPULSE_KAFKA_SASL_USERNAME (with a SASL_ protocol)",
    )
    sasl_username: str | None = _var(
        "VMPULSE_KAFKA_SASL_USERNAME",
        None,
        kind="optional",
        doc="the Kafka user of every client of the process (needed by the SASL_ protocols)",
    )
    sasl_password: Secret | None = _var(
        "VMPULSE_KAFKA_SASL_PASSWORD",
        None,
        kind="secret",
        shown="unset",
        doc="that user's password (needed by the SASL_ protocols)",
    )
    ssl_cafile: Path | None = _var(
        "VMPULSE_KAFKA_SSL_CAFILE",
        None,
        kind="special",
        form="PEM file",
        doc="the CAs that sign the brokers' certificates (SSL, SASL_SSL); unset: the system's",
    )
    ssl_certfile: Path | None = _var(
        "VMPULSE_KAFKA_SSL_CERTFILE",
        None,
        kind="special",
        form="PEM file",
        doc="the client's certificate (chain) for brokers that want one (mutual TLS), with "
        "VMPULSE_KAFKA_SSL_KEYFILE",
    )
    ssl_keyfile: Path | None = _var(
        "VMPULSE_KAFKA_SSL_KEYFILE",
        None,
        kind="special",
        form="PEM file",
        doc="the private key of VMPULSE_KAFKA_SSL_CERTFILE (unencrypted PEM: mount it as a secret)",
    )

    @property
    def auth(self) -> KafkaAuth:
        """What every Kafka client of the process is given (see :class:`KafkaAuth`)."""
        return KafkaAuth(
            self.security_protocol,
            self.sasl_mechanism,
            self.sasl_username,
            self.sasl_password,
            self.ssl_cafile,
            self.ssl_certfile,
            self.ssl_keyfile,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class StoreSettings:
    """The metric store (DESIGN.md, Storage) and its retention (streams/retention.py)."""

    url: str = _var(
        "VMPULSE_CLICKHOUSE_URL",
        "",
        kind="special",
        form="URL: chdb:///dir, http(s)://",
        shown="chdb://<data dir>/clickhouse",
        doc="the metric store: chDB in-process (one process owns the directory) or a ClickHouse "
        "server, http(s)://user:password@host:8123/database",
    )
    reader_url: str | None = _var(
        "VMPULSE_CLICKHOUSE_READ_URL",
        None,
        kind="special",
        form="URL",
        doc="where reads (history, admin SQL, `vmpulse query`) go: a server's read-only user "
        "(`vmpulse reader-grants`); unset: VMPULSE_CLICKHOUSE_URL",
    )
    cluster: str | None = _var(
        "VMPULSE_CLICKHOUSE_CLUSTER",
        None,
        kind="special",
        form="identifier",
        doc="a ClickHouse server cluster's name: replicated, distributed tables ON CLUSTER "
        "(store/schema_forms.py); unset: one node",
    )
    raw_ttl_days: int = _var(
        "VMPULSE_RAW_TTL_DAYS", 30, minimum=1, doc="days raw rows are kept (TTL)"
    )
    rollup_ttl_days: int = _var(
        "VMPULSE_ROLLUP_TTL_DAYS",
        365,
        minimum=1,
        doc="days the 1-minute and 1-hour rollups are kept",
    )

    @property
    def embedded(self) -> bool:
        return self.url.startswith("chdb:")

    @property
    def read_url(self) -> str:
        """Where reads go: VMPULSE_CLICKHOUSE_READ_URL, else the store itself."""
        return self.reader_url or self.url


@dataclasses.dataclass(frozen=True, slots=True)
class ReadSettings:
    """Reads (issue 10; store/reader.py): history and admin SQL on their own connections."""

    concurrency: int = _var(
        "VMPULSE_READ_CONCURRENCY", 4, minimum=1, doc="reads at once per process (connections)"
    )
    concurrency_per_user: int = _var(
        "VMPULSE_READ_CONCURRENCY_PER_USER", 2, minimum=1, doc="reads at once per user"
    )
    requests_per_minute: int = _var(
        "VMPULSE_READ_REQUESTS_PER_MINUTE",
        600,
        minimum=1,
        doc="read requests a user may make a minute",
    )
    timeout_s: float = _var(
        "VMPULSE_READ_TIMEOUT_S",
        30.0,
        kind="float",
        minimum=0.1,
        doc="a read running longer is killed in the engine",
    )
    max_memory_mb: int = _var(
        "VMPULSE_READ_MAX_MEMORY_MB", 1024, minimum=1, doc="engine memory one read may use"
    )
    max_result_mb: int = _var(
        "VMPULSE_READ_MAX_RESULT_MB", 64, minimum=1, doc="result size of one read (then cut)"
    )
    max_threads: int = _var(
        "VMPULSE_READ_MAX_THREADS", 1, minimum=1, doc="engine threads one read may use"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerSettings:
    """The worker's clocks: live updates, storage batches, agent presence."""

    live_interval_s: float = _var(
        "VMPULSE_LIVE_INTERVAL_MS",
        1.0,
        minimum=0,
        scale=1000,
        doc="at most one live metrics update per VM this often; 0: every sample",
    )
    # how long the worker gathers agent.raw before one storage block
    store_batch_s: float = _var(
        "VMPULSE_STORE_BATCH_MS",
        1.0,
        minimum=10,
        scale=1000,
        doc="a worker gathers agent.raw this long, then stores the batch as one insert per table",
    )
    agent_interval_s: float = _var(
        "VMPULSE_AGENT_INTERVAL_S",
        30.0,
        kind="float",
        minimum=0.001,
        doc="the agents' reporting interval: an agent silent for 3 intervals is offline",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AlertSettings:
    """Alert thresholds (streams/alerts.py)."""

    cpu_percent: float = _var(
        "VMPULSE_ALERT_CPU_PERCENT", 90.0, kind="float", doc="CPU use that raises an alert ..."
    )
    cpu_for_s: float = _var(
        "VMPULSE_ALERT_CPU_FOR_S", 300.0, kind="float", doc="... when it lasts this long"
    )
    memory_percent: float = _var(
        "VMPULSE_ALERT_MEMORY_PERCENT",
        95.0,
        kind="float",
        doc="memory use that raises an alert ...",
    )
    memory_for_s: float = _var(
        "VMPULSE_ALERT_MEMORY_FOR_S", 300.0, kind="float", doc="... when it lasts this long"
    )
    disk_percent: float = _var(
        "VMPULSE_ALERT_DISK_PERCENT", 90.0, kind="float", doc="use of a mount that raises an alert"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class TokenSettings:
    """Browser tokens (gateway/auth.py): the key and the rules a token must meet."""

    secret: Secret = _var(
        "VMPULSE_JWT_SECRET",
        Secret(DEV_JWT_SECRET),
        kind="special",
        form="secret, >= 32 bytes",
        shown="a development key (announced; refused beyond loopback)",
        doc="the HS* key browser tokens are signed with",
    )
    algorithms: tuple[str, ...] = _var(
        "VMPULSE_JWT_ALGORITHMS",
        ("HS256",),
        kind="special",
        form="comma-separated list",
        doc="signature algorithms accepted (HS*, RS*, ES*, PS*; never none)",
    )
    public_key: Path | None = _var(
        "VMPULSE_JWT_PUBLIC_KEY",
        None,
        kind="special",
        form="PEM file",
        doc="the issuer's public key, for RS/ES/PS algorithms",
    )
    issuer: str | None = _var(
        "VMPULSE_JWT_ISSUER", None, kind="optional", doc="`iss` a token must carry"
    )
    audience: str | None = _var(
        "VMPULSE_JWT_AUDIENCE", None, kind="optional", doc="`aud` a token must carry"
    )
    # a token without `exp` never expires, so it is refused unless allowed
    allow_no_exp: bool = _var(
        "VMPULSE_JWT_ALLOW_NO_EXP",
        False,
        kind="flag",
        doc="accept tokens without `exp` (a legacy issuer's; they never expire)",
    )

    @property
    def secret_is_dev(self) -> bool:
        return self.secret.reveal() == DEV_JWT_SECRET


@dataclasses.dataclass(frozen=True, slots=True)
class GatewaySettings:
    """The gateway's address and limits (issues 6, 10.5)."""

    host: str = _var(
        "VMPULSE_GATEWAY_ADDR",
        "127.0.0.1",
        kind="special",
        form="host:port",
        shown="127.0.0.1:8080",
        doc="where the gateway listens (Socket.IO, HTTP API, dashboard)",
    )
    port: int = _var("VMPULSE_GATEWAY_ADDR", 8080, kind="special")
    cors_origins: tuple[str, ...] | None = _var(
        "VMPULSE_CORS_ORIGINS",
        None,
        kind="special",
        form="comma-separated origins",
        doc="browser origins allowed besides the gateway's own; unset: same origin only",
    )
    max_connections: int = _var(
        "VMPULSE_GATEWAY_MAX_CONNECTIONS", 10_000, minimum=1, doc="sockets per gateway process"
    )
    max_connections_per_user: int = _var(
        "VMPULSE_GATEWAY_MAX_CONNECTIONS_PER_USER", 20, minimum=1, doc="sockets per user"
    )
    client_events_per_minute: int = _var(
        "VMPULSE_GATEWAY_CLIENT_EVENTS_PER_MINUTE",
        100,
        minimum=1,
        doc="events (subscribe, ...) a socket may send a minute",
    )
    max_payload_bytes: int = _var(
        "VMPULSE_GATEWAY_MAX_PAYLOAD_BYTES", 65_536, minimum=1024, doc="largest client message"
    )
    resume_window_s: float = _var(
        "VMPULSE_GATEWAY_RESUME_WINDOW_S",
        600.0,
        minimum=0,
        doc="a reconnecting client gets the events it missed in this window",
    )
    resume_max_events: int = _var(
        "VMPULSE_GATEWAY_RESUME_MAX_EVENTS",
        100_000,
        minimum=0,
        doc="events the replay window holds at most",
    )
    recent_samples: int = _var(
        "VMPULSE_GATEWAY_RECENT_SAMPLES",
        1_000,
        minimum=1,
        doc="latest samples kept per VM for `metrics:recent`",
    )
    # the send path (issue 10.5): per-socket send bound, CONNECT deadline, resume rate
    send_buffer_bytes: int = _var(
        "VMPULSE_GATEWAY_SEND_BUFFER_BYTES",
        4 * 1024 * 1024,
        minimum=65_536,
        doc="bytes queued for one socket; a socket that reads slower is ended",
    )
    connect_timeout_s: float = _var(
        "VMPULSE_GATEWAY_CONNECT_TIMEOUT_S",
        5.0,
        kind="float",
        minimum=0.5,
        doc="a socket must authenticate within this time",
    )
    resumes_per_minute: int = _var(
        "VMPULSE_GATEWAY_RESUMES_PER_MINUTE", 30, minimum=1, doc="resumes a user may ask a minute"
    )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True, slots=True)
class BridgeSettings:
    """The bridge: agent keys, where it listens and its limits (issues 2, 10.7, 11.3)."""

    agent_secret: Secret = _var(
        "VMPULSE_AGENT_SECRET",
        Secret(DEV_AGENT_SECRET),
        kind="secret",
        shown="a development key (announced; refused beyond loopback)",
        doc="master key of the TCP agents' signed hello (HMAC-SHA256 per VM id)",
    )
    socket_dir: Path = _var(
        "VMPULSE_SOCKET_DIR",
        Path(".vmpulse/sockets"),
        kind="special",
        form="directory",
        shown="<data dir>/sockets",
        doc="where the per-VM virtio-serial unix sockets `<vm-uuid>.socket` appear",
    )
    tcp_host: str | None = _var(
        "VMPULSE_AGENT_TCP_ADDR",
        None,
        kind="special",
        form="host:port",
        doc="the development TCP agent listener; unset: no TCP",
    )
    tcp_port: int = _var("VMPULSE_AGENT_TCP_ADDR", 0, kind="special")
    vsock_port: int | None = _var(
        "VMPULSE_VSOCK_PORT",
        None,
        kind="optional_int",
        minimum=1,
        doc="AF_VSOCK port the bridge listens on; unset: no vsock",
    )
    shared: bool = _var(
        "VMPULSE_BRIDGE_SHARED",
        False,
        kind="flag",
        doc="several bridges share one socket directory, each reading the VMs of the agent.raw "
        "partitions a Kafka group gives it (agents/ownership.py)",
    )
    max_line: int = _var(
        "VMPULSE_AGENT_MAX_LINE",
        4 * 1024 * 1024,
        minimum=1024,
        doc="longest agent line accepted (at most 8 MiB: a line and its dead letter are records)",
    )
    max_buffer: int = _var(
        "VMPULSE_AGENT_MAX_BUFFER",
        8 * 1024 * 1024,
        minimum=1024,
        doc="a line running past this many bytes closes its connection (PROTOCOL.md)",
    )
    idle_timeout_s: float = _var(
        "VMPULSE_AGENT_IDLE_TIMEOUT_S", 120.0, minimum=1, doc="an agent silent this long is closed"
    )
    max_connections: int = _var(
        "VMPULSE_AGENT_MAX_CONNECTIONS", 10_000, minimum=1, doc="agent connections per bridge"
    )
    metrics_port: int | None = _var(
        "VMPULSE_BRIDGE_METRICS_PORT",
        None,
        kind="optional_int",
        doc="port of the bridge's own Prometheus /metrics; unset: not served",
    )
    # admission (issue 10.7, agents/listeners.py, agents/socket_watcher.py)
    hello_timeout_s: float = _var(
        "VMPULSE_AGENT_HELLO_TIMEOUT_S",
        5.0,
        kind="float",
        minimum=0.1,
        doc="time a listening connection has to identify (docs/AGENTS.md, Admission)",
    )
    max_identifying: int = _var(
        "VMPULSE_AGENT_MAX_IDENTIFYING",
        256,
        minimum=1,
        doc="connections identifying at once; past it the oldest is closed",
    )
    max_identifying_per_peer: int = _var(
        "VMPULSE_AGENT_MAX_IDENTIFYING_PER_PEER",
        8,
        minimum=1,
        doc="identifying connections per peer address",
    )
    max_connections_per_vm: int = _var(
        "VMPULSE_AGENT_MAX_CONNECTIONS_PER_VM",
        4,
        minimum=1,
        doc="connections per VM; past it the VM's oldest is closed",
    )
    socket_owners: frozenset[int] | None = _var(
        "VMPULSE_SOCKET_OWNER",
        None,
        kind="special",
        form="user names or uids, comma-separated",
        doc="who may own a VM's socket (e.g. libvirt-qemu); unset: the bridge's own user and root",
    )

    @property
    def agent_secret_is_dev(self) -> bool:
        return self.agent_secret.reveal() == DEV_AGENT_SECRET


_GROUPS: dict[str, type] = {
    "kafka": KafkaSettings,
    "store": StoreSettings,
    "reads": ReadSettings,
    "worker": WorkerSettings,
    "alerts": AlertSettings,
    "tokens": TokenSettings,
    "gateway": GatewaySettings,
    "bridge": BridgeSettings,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Process-wide configuration (see DESIGN.md, Configuration), one group per concern.

    Each field names its environment variable and its default once (:func:`_var`);
    :meth:`from_env` reads them all and reports every error at once.
    """

    data_dir: Path = _var(
        "VMPULSE_DATA_DIR",
        Path(".vmpulse"),
        kind="special",
        form="directory",
        shown="./.vmpulse",
        doc="local state: the embedded store, the local broker, sockets, up.json",
    )
    libvirt_uri: str | None = _var(
        "VMPULSE_LIBVIRT_URI",
        None,
        kind="optional",
        doc="libvirt connection of `vmpulse hypervisor` (e.g. qemu:///system); unset: no watcher",
    )
    # deployment (issue 13): where a stage serves /healthz, /readyz and /metrics
    health_host: str | None = _var(
        "VMPULSE_HEALTH_ADDR",
        None,
        kind="special",
        form="host:port",
        doc="where any stage serves /healthz, /readyz and /metrics (the image: 0.0.0.0:8081); "
        "unset: no health port",
    )
    health_port: int = _var("VMPULSE_HEALTH_ADDR", 0, kind="special")
    # logs (issue 13.6): one JSON object a line for the log collectors of container platforms
    log_format: str = _var(
        "VMPULSE_LOG_FORMAT",
        "text",
        kind="special",
        form="text or json",
        doc="json: one object a line (time, level, logger, message, exception) on stderr",
    )
    kafka: KafkaSettings = KafkaSettings()
    store: StoreSettings = StoreSettings()
    reads: ReadSettings = ReadSettings()
    worker: WorkerSettings = WorkerSettings()
    alerts: AlertSettings = AlertSettings()
    tokens: TokenSettings = TokenSettings()
    gateway: GatewaySettings = GatewaySettings()
    bridge: BridgeSettings = BridgeSettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping, reporting every error at once."""
        errors: list[str] = []
        # secrets may come from mounted files (issue 13): from here on they are plain values
        env, sources = _with_secret_files(env, errors)
        data_dir = Path(env.get("VMPULSE_DATA_DIR") or _default(cls, "data_dir")).absolute()
        groups = {name: _read(group, env, errors) for name, group in _GROUPS.items()}

        store: dict[str, Any] = groups["store"]
        store["url"] = env.get("VMPULSE_CLICKHOUSE_URL") or f"chdb://{data_dir / 'clickhouse'}"
        if not store["url"].startswith(("chdb:", "http://", "https://")):
            # the URL may hold a password: only its scheme is named
            errors.append(
                f"{sources['VMPULSE_CLICKHOUSE_URL']} must start with chdb://, http:// or "
                f"https://, got {_scheme(store['url'])}"
            )
        store["cluster"] = cluster = env.get("VMPULSE_CLICKHOUSE_CLUSTER") or None
        if cluster is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cluster):
            errors.append(f"VMPULSE_CLICKHOUSE_CLUSTER must be an identifier, got {cluster!r}")
        if cluster is not None and store["url"].startswith("chdb:"):
            errors.append("VMPULSE_CLICKHOUSE_CLUSTER needs a ClickHouse server, not chdb://")
        store["reader_url"] = env.get("VMPULSE_CLICKHOUSE_READ_URL") or None
        if store["reader_url"] is not None and not store["reader_url"].startswith(
            ("chdb:", "http://", "https://")
        ):
            errors.append(
                f"{sources['VMPULSE_CLICKHOUSE_READ_URL']} must start with chdb://, http:// "
                "or https://"
            )

        gateway: dict[str, Any] = groups["gateway"]
        gateway_addr = _addr(env, "VMPULSE_GATEWAY_ADDR", errors)
        if gateway_addr is not None:  # unset: the declared defaults
            gateway["host"], gateway["port"] = gateway_addr
        cors_text = env.get("VMPULSE_CORS_ORIGINS")
        if cors_text is not None:
            gateway["cors_origins"] = tuple(o.strip() for o in cors_text.split(",") if o.strip())

        tokens: dict[str, Any] = groups["tokens"]
        _read_tokens(env, tokens, errors, sources["VMPULSE_JWT_SECRET"])

        bridge: dict[str, Any] = groups["bridge"]
        bridge["socket_dir"] = Path(
            env.get("VMPULSE_SOCKET_DIR") or data_dir / "sockets"
        ).absolute()
        tcp_addr = _addr(env, "VMPULSE_AGENT_TCP_ADDR", errors)
        if tcp_addr is not None:  # unset: no TCP listener
            bridge["tcp_host"], bridge["tcp_port"] = tcp_addr
        max_line, max_buffer = bridge["max_line"], bridge["max_buffer"]
        if max_buffer < max_line:
            errors.append(
                f"VMPULSE_AGENT_MAX_BUFFER must be >= VMPULSE_AGENT_MAX_LINE ({max_line}), "
                f"got {max_buffer}"
            )
        if max_line > MAX_BATCH_BYTES // 2:
            # a line is one record, and its dead letter up to 4/3 of it (schemas/dlq.py)
            errors.append(
                f"VMPULSE_AGENT_MAX_LINE must be <= {MAX_BATCH_BYTES // 2} (a line and its "
                f"dead letter must fit a {MAX_BATCH_BYTES}-byte record), got {max_line}"
            )
        bridge["socket_owners"] = _owners(env.get("VMPULSE_SOCKET_OWNER") or "", errors)

        kafka: dict[str, Any] = groups["kafka"]
        kafka["partitions"] = _int(
            env,
            "VMPULSE_PARTITIONS",
            kafka["partitions"] if kafka["bootstrap"] else LOCAL_PARTITIONS,
            errors,
            minimum=1,
        )
        _read_kafka_auth(env, kafka, errors)
        jars_text = env.get("VMPULSE_KAFKA_JARS") or ""
        kafka["jars_dir"] = Path(jars_text).absolute() if jars_text else None
        if kafka["jars_dir"] is not None and not kafka["jars_dir"].is_dir():
            errors.append(f"VMPULSE_KAFKA_JARS must name a directory of jars, got {jars_text!r}")
        health = _addr(env, "VMPULSE_HEALTH_ADDR", errors)

        libvirt_uri = env.get("VMPULSE_LIBVIRT_URI") or None
        log_format = (env.get("VMPULSE_LOG_FORMAT") or "text").strip().lower()
        if log_format not in LOG_FORMATS:
            errors.append(f"VMPULSE_LOG_FORMAT must be text or json, got {log_format!r}")
        if errors:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
        built = {name: _GROUPS[name](**values) for name, values in groups.items()}
        return cls(
            data_dir=data_dir,
            libvirt_uri=libvirt_uri,
            health_host=health[0] if health else None,
            health_port=health[1] if health else 0,
            log_format=log_format,
            **built,
        )

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed: a top-level field, a whole group, or some
        fields of a group as a mapping (``settings.replace(gateway={"max_connections": 2})``)."""
        resolved: dict[str, Any] = {}
        for name, value in changes.items():
            if name in _GROUPS and isinstance(value, Mapping):
                value = dataclasses.replace(getattr(self, name), **value)
            resolved[name] = value
        return dataclasses.replace(self, **resolved)


def _read_tokens(
    env: Mapping[str, str], tokens: dict[str, Any], errors: list[str], source: str
) -> None:
    text = env.get("VMPULSE_JWT_ALGORITHMS") or ",".join(_default(TokenSettings, "algorithms"))
    algorithms = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in algorithms if a not in _JWT_ALGORITHMS]
    if not algorithms or unknown:
        errors.append(
            "VMPULSE_JWT_ALGORITHMS must list algorithms among "
            f"{', '.join(sorted(_JWT_ALGORITHMS))}, got {env.get('VMPULSE_JWT_ALGORITHMS')!r}"
        )
    tokens["algorithms"] = algorithms
    jwt_secret = env.get("VMPULSE_JWT_SECRET") or DEV_JWT_SECRET
    # Unset means development: the default key, announced as such at start. A
    # key someone chose is held to HS256's minimum; its value is never echoed.
    secret_bytes = len(jwt_secret.encode("utf-8"))
    if jwt_secret != DEV_JWT_SECRET and secret_bytes < MIN_JWT_SECRET_BYTES:
        errors.append(
            f"{source} must be at least {MIN_JWT_SECRET_BYTES} bytes, got "
            f"{secret_bytes} (e.g. python3 -c 'import secrets; print(secrets.token_hex(32))')"
        )
    tokens["secret"] = Secret(jwt_secret)
    key_text = env.get("VMPULSE_JWT_PUBLIC_KEY") or ""
    public_key = Path(key_text).absolute() if key_text else None
    if public_key is not None and not public_key.is_file():
        errors.append(f"VMPULSE_JWT_PUBLIC_KEY must name a PEM file, got {key_text!r}")
    if public_key is None and any(not a.startswith("HS") for a in algorithms):
        errors.append("VMPULSE_JWT_ALGORITHMS has RS/ES/PS algorithms: set VMPULSE_JWT_PUBLIC_KEY")
    tokens["public_key"] = public_key


def _read_kafka_auth(env: Mapping[str, str], kafka: dict[str, Any], errors: list[str]) -> None:
    """The Kafka clients' protocol, mechanism and CA file, checked together; never the password."""
    protocol = (env.get("VMPULSE_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").strip().upper()
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        errors.append(
            "VMPULSE_KAFKA_SECURITY_PROTOCOL must be one of "
            f"{', '.join(KAFKA_SECURITY_PROTOCOLS)}, got {protocol!r}"
        )
    kafka["security_protocol"] = protocol
    if protocol != "PLAINTEXT" and not kafka["bootstrap"]:
        errors.append(
            f"VMPULSE_KAFKA_SECURITY_PROTOCOL={protocol} needs VMPULSE_KAFKA_BOOTSTRAP (the "
            "local broker of `up` speaks PLAINTEXT)"
        )
    mechanism = (env.get("VMPULSE_KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").strip().upper()
    if mechanism not in KAFKA_SASL_MECHANISMS:
        errors.append(
            "VMPULSE_KAFKA_SASL_MECHANISM must be one of "
            f"{', '.join(KAFKA_SASL_MECHANISMS)}, got {mechanism!r}"
        )
    kafka["sasl_mechanism"] = mechanism
    wants = KafkaAuth(protocol)  # which protocols mean SASL and TLS: KafkaAuth's rule
    has_user = kafka["sasl_username"] is not None or kafka["sasl_password"] is not None
    if wants.sasl and (kafka["sasl_username"] is None or kafka["sasl_password"] is None):
        errors.append(
            f"VMPULSE_KAFKA_SECURITY_PROTOCOL={protocol} needs VMPULSE_KAFKA_SASL_USERNAME "
            "and VMPULSE_KAFKA_SASL_PASSWORD"
        )
    elif has_user and not wants.sasl:
        # a user the clients would not send: the operator meant SASL, so say so at start
        errors.append(
            "VMPULSE_KAFKA_SASL_USERNAME / _PASSWORD are set but "
            f"VMPULSE_KAFKA_SECURITY_PROTOCOL is {protocol}: use SASL_SSL or SASL_PLAINTEXT"
        )
    for name in ("cafile", "certfile", "keyfile"):
        variable = f"VMPULSE_KAFKA_SSL_{name.upper()}"
        text = env.get(variable) or ""
        kafka[f"ssl_{name}"] = path = Path(text).absolute() if text else None
        if path is None:
            continue
        if not path.is_file():
            errors.append(f"{variable} must name a PEM file, got {text!r}")
        elif not wants.tls:
            errors.append(
                f"{variable} is set but VMPULSE_KAFKA_SECURITY_PROTOCOL is "
                f"{protocol}: use SSL or SASL_SSL"
            )
    if (kafka["ssl_certfile"] is None) != (kafka["ssl_keyfile"] is None):
        errors.append("VMPULSE_KAFKA_SSL_CERTFILE and VMPULSE_KAFKA_SSL_KEYFILE go together")


SECRET_VARIABLES = (
    "VMPULSE_JWT_SECRET",
    "VMPULSE_AGENT_SECRET",
    "VMPULSE_CLICKHOUSE_URL",
    "VMPULSE_CLICKHOUSE_READ_URL",
    "VMPULSE_KAFKA_SASL_PASSWORD",
)
"""Variables that hold secrets (keys, URLs with passwords); each may be given as
``<NAME>_FILE``, the path of a file that holds the value (a mounted secret)."""


def _with_secret_files(
    env: Mapping[str, str], errors: list[str]
) -> tuple[Mapping[str, str], dict[str, str]]:
    """The environment with every ``<NAME>_FILE`` read into ``<NAME>``, and per secret the
    variable it came from (for messages, which name a variable, never a value).

    A file's trailing newline is not part of the secret (``echo key > file`` is the usual
    way to write one). Setting both forms is an error: which one wins would be a guess.
    """
    merged = dict(env)
    sources = {name: name for name in SECRET_VARIABLES}
    for name in SECRET_VARIABLES:
        file_var = f"{name}_FILE"
        path = env.get(file_var) or ""
        if not path:
            continue
        sources[name] = file_var
        if env.get(name):
            errors.append(f"set {name} or {file_var}, not both")
            continue
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            errors.append(f"{file_var}: cannot read {path!r}: {reason}")
            continue
        if not value:
            errors.append(f"{file_var}: {path!r} is empty")
            continue
        merged[name] = value
    return merged, sources


def _scheme(url: str) -> str:
    """How a store URL starts, for an error message: never the rest, which may hold a password."""
    scheme, sep, _ = url.partition("://")
    return f"{scheme!r}://..." if sep and "@" not in scheme else "a value without a scheme"


def _addr(env: Mapping[str, str], name: str, errors: list[str]) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` too); unset or empty = None."""
    text = env.get(name) or ""
    if not text:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        errors.append(f"{name} must be host:port, got {text!r}")
        return None
    return host.strip("[]"), int(port)


def _default(group: type, name: str) -> Any:
    """A field's declared default (with slots, the class attribute is not the default)."""
    return next(f.default for f in dataclasses.fields(group) if f.name == name)


_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _read(group: type, env: Mapping[str, str], errors: list[str]) -> dict[str, Any]:
    """The values of a group's plain fields from ``env``; ``special`` ones keep their default
    (``from_env`` reads those). Unset or empty means the field's default."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(group):
        meta = field.metadata
        name, kind, default = meta["env"], meta["kind"], cast(Any, field.default)
        raw = env.get(name)
        if kind == "special" or raw is None or (raw == "" and kind != "text"):
            values[field.name] = default
        elif kind in ("text", "optional"):
            values[field.name] = raw
        elif kind == "secret":
            values[field.name] = Secret(raw)
        elif kind == "flag":
            flag = raw.strip().lower()
            if flag not in _FLAGS:
                errors.append(f"{name} must be 1 or 0, got {flag!r}")
            values[field.name] = _FLAGS.get(flag, default)
        elif kind == "float":
            values[field.name] = _float(env, name, default, errors, float(meta["minimum"]))
        else:  # int, optional_int; a scale turns the integer into seconds (ms / 1000)
            # on an error the default stands in, so checks across settings stay quiet
            fallback = 0 if default is None else round(default * meta["scale"])
            number = _int(env, name, fallback, errors, minimum=int(meta["minimum"]))
            if meta["scale"] != 1:
                values[field.name] = number / meta["scale"]
            else:
                values[field.name] = float(number) if isinstance(default, float) else number
    return values


def _int(env: Mapping[str, str], name: str, default: int, errors: list[str], minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        errors.append(f"{name} must be an integer, got {raw!r}")
        return default
    if value < minimum:
        errors.append(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(
    env: Mapping[str, str], name: str, default: float, errors: list[str], minimum: float
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        errors.append(f"{name} must be a number, got {raw!r}")
        return default
    if not value >= minimum or value == float("inf"):
        errors.append(f"{name} must be a finite number >= {minimum}, got {raw!r}")
    return value


def _owners(text: str, errors: list[str]) -> frozenset[int] | None:
    """``VMPULSE_SOCKET_OWNER``: user names or numeric uids, comma-separated; empty = None."""
    import pwd

    owners: set[int] = set()
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        if item.isdigit():
            owners.add(int(item))
            continue
        try:
            owners.add(pwd.getpwnam(item).pw_uid)
        except KeyError:
            errors.append(f"VMPULSE_SOCKET_OWNER names an unknown user: {item!r}")
    return frozenset(owners) if owners else None
