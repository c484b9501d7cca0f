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

__all__ = [
    "DEV_AGENT_SECRET",
    "DEV_JWT_SECRET",
    "MIN_JWT_SECRET_BYTES",
    "ConfigError",
    "Secret",
    "Settings",
]

DEV_JWT_SECRET = "vmpulse-development-jwt-key-do-not-use-in-production"
DEV_AGENT_SECRET = "vmpulse-development-agent-key-do-not-use-in-production"

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


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Process-wide configuration (see DESIGN.md, Configuration)."""

    data_dir: Path = Path(".vmpulse")
    kafka_bootstrap: str | None = None
    clickhouse_url: str = ""
    jwt_secret: Secret = Secret(DEV_JWT_SECRET)
    agent_secret: Secret = Secret(DEV_AGENT_SECRET)
    socket_dir: Path = Path(".vmpulse/sockets")
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    topic_prefix: str = ""
    partitions: int = 12
    replication_factor: int | None = None  # unset: from the cluster (kafka_io.durability)
    live_interval_s: float = 1.0
    libvirt_uri: str | None = None
    # Scale-out (issue 14): `vmpulse up` without VMPULSE_KAFKA_BOOTSTRAP starts this many
    # local brokers (1, or a KRaft cluster of 3 from infra/cluster.py).
    local_brokers: int = 1
    # The store's cluster form (issue 14): a ClickHouse server cluster's name; unset: one node.
    clickhouse_cluster: str | None = None
    # Several bridges over one socket directory (issue 14.3): each owns the VMs of the
    # agent.raw partitions a Kafka group gives it (agents/ownership.py); off: one reads all.
    bridge_shared: bool = False
    # Gateway (issue 6): token rules, CORS, limits, resume window, buffers.
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_public_key: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    cors_origins: tuple[str, ...] | None = None
    gateway_max_connections: int = 10_000
    gateway_max_connections_per_user: int = 20
    gateway_client_events_per_minute: int = 100
    gateway_max_payload_bytes: int = 65_536
    gateway_resume_window_s: float = 600.0
    gateway_resume_max_events: int = 100_000
    gateway_recent_samples: int = 1_000
    # Gateway send path (issue 10.5): per-socket send bound, CONNECT deadline, resume rate.
    gateway_send_buffer_bytes: int = 4 * 1024 * 1024
    gateway_connect_timeout_s: float = 5.0
    gateway_resumes_per_minute: int = 30
    agent_tcp_host: str | None = None
    """Where the development TCP agent listener binds; None (the default) = no TCP."""
    agent_tcp_port: int = 0
    vsock_port: int | None = None
    """AF_VSOCK port the bridge listens on; None = no vsock listener."""
    agent_max_line: int = 4 * 1024 * 1024
    agent_max_buffer: int = 8 * 1024 * 1024
    """A line running past this many bytes closes its connection (PROTOCOL.md)."""
    agent_idle_timeout_s: float = 120.0
    agent_max_connections: int = 10_000
    bridge_metrics_port: int | None = None
    """Port of the bridge's own Prometheus /metrics endpoint; None = not served."""
    # presence and alerts (streams/presence.py, streams/alerts.py)
    agent_interval_s: float = 30.0
    alert_cpu_percent: float = 90.0
    alert_cpu_for_s: float = 300.0
    alert_memory_percent: float = 95.0
    alert_memory_for_s: float = 300.0
    alert_disk_percent: float = 90.0
    # worker group membership: a dead worker's partitions move after the session
    # timeout; a worker restarted with the same instance id takes them back at once
    kafka_session_timeout_s: float = 10.0
    # how long the worker gathers agent.raw before one insert per partition
    store_batch_s: float = 1.0
    worker_instance_id: str | None = None
    # retention (streams/retention.py)
    raw_ttl_days: int = 30
    rollup_ttl_days: int = 365
    # browser edge (issue 10): a token without `exp` never expires, so it is refused unless allowed
    jwt_allow_no_exp: bool = False
    # bridge admission (issue 10.7, agents/listeners.py, agents/socket_watcher.py)
    agent_hello_timeout_s: float = 5.0
    agent_max_identifying: int = 256
    agent_max_identifying_per_peer: int = 8
    agent_max_connections_per_vm: int = 4
    socket_owners: frozenset[int] | None = None
    """uids that may own a VM's socket; None = the bridge's own user and root."""
    # reads (issue 10; store/reader.py): history and admin SQL on their own connections
    clickhouse_read_url: str | None = None
    """The readers' store URL (a server's read-only user); None = clickhouse_url."""
    read_concurrency: int = 4
    read_concurrency_per_user: int = 2
    read_requests_per_minute: int = 600
    read_timeout_s: float = 30.0
    read_max_memory_mb: int = 1024
    read_max_result_mb: int = 64
    read_max_threads: int = 1

    @property
    def jwt_secret_is_dev(self) -> bool:
        return self.jwt_secret.reveal() == DEV_JWT_SECRET

    @property
    def agent_secret_is_dev(self) -> bool:
        return self.agent_secret.reveal() == DEV_AGENT_SECRET

    @property
    def gateway_url(self) -> str:
        return f"http://{self.gateway_host}:{self.gateway_port}"

    @property
    def uses_embedded_store(self) -> bool:
        return self.clickhouse_url.startswith("chdb:")

    @property
    def read_url(self) -> str:
        """Where reads go: VMPULSE_CLICKHOUSE_READ_URL, else the store itself."""
        return self.clickhouse_read_url or self.clickhouse_url

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping, reporting every error at once."""
        errors: list[str] = []
        data_dir = Path(env.get("VMPULSE_DATA_DIR") or ".vmpulse").absolute()
        ch_url = env.get("VMPULSE_CLICKHOUSE_URL") or f"chdb://{data_dir / 'clickhouse'}"
        if not ch_url.startswith(("chdb:", "http://", "https://")):
            errors.append(
                "VMPULSE_CLICKHOUSE_URL must start with chdb://, http:// or https://, "
                f"got {ch_url!r}"
            )
        socket_dir = Path(env.get("VMPULSE_SOCKET_DIR") or data_dir / "sockets").absolute()
        addr = env.get("VMPULSE_GATEWAY_ADDR") or "127.0.0.1:8080"
        host, _, port_text = addr.rpartition(":")
        port = 0
        if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            errors.append(f"VMPULSE_GATEWAY_ADDR must be host:port, got {addr!r}")
        else:
            port = int(port_text)
        partitions = _int(env, "VMPULSE_PARTITIONS", 12, errors, minimum=1)
        replication = _int(env, "VMPULSE_REPLICATION_FACTOR", 0, errors, minimum=1) or None
        local_brokers = _int(env, "VMPULSE_LOCAL_BROKERS", 1, errors, minimum=1)
        shared = (env.get("VMPULSE_BRIDGE_SHARED") or "0").lower()
        if shared not in ("0", "1", "true", "false", "yes", "no"):
            errors.append(f"VMPULSE_BRIDGE_SHARED must be 0 or 1, got {shared!r}")
        ch_cluster = env.get("VMPULSE_CLICKHOUSE_CLUSTER") or None
        if ch_cluster is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ch_cluster):
            errors.append(f"VMPULSE_CLICKHOUSE_CLUSTER must be an identifier, got {ch_cluster!r}")
        if ch_cluster is not None and ch_url.startswith("chdb:"):
            errors.append("VMPULSE_CLICKHOUSE_CLUSTER needs a ClickHouse server, not chdb://")
        live_ms = _int(env, "VMPULSE_LIVE_INTERVAL_MS", 1000, errors, minimum=0)
        algorithms = tuple(
            a.strip()
            for a in (env.get("VMPULSE_JWT_ALGORITHMS") or "HS256").split(",")
            if a.strip()
        )
        unknown = [a for a in algorithms if a not in _JWT_ALGORITHMS]
        if not algorithms or unknown:
            errors.append(
                "VMPULSE_JWT_ALGORITHMS must list algorithms among "
                f"{', '.join(sorted(_JWT_ALGORITHMS))}, got {env.get('VMPULSE_JWT_ALGORITHMS')!r}"
            )
        jwt_secret = env.get("VMPULSE_JWT_SECRET") or DEV_JWT_SECRET
        # Unset means development: the default key, announced as such at start. A
        # key someone chose is held to HS256's minimum; its value is never echoed.
        secret_bytes = len(jwt_secret.encode("utf-8"))
        if jwt_secret != DEV_JWT_SECRET and secret_bytes < MIN_JWT_SECRET_BYTES:
            errors.append(
                f"VMPULSE_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes, got "
                f"{secret_bytes} (e.g. python3 -c 'import secrets; print(secrets.token_hex(32))')"
            )
        key_text = env.get("VMPULSE_JWT_PUBLIC_KEY") or ""
        public_key = Path(key_text).absolute() if key_text else None
        if public_key is not None and not public_key.is_file():
            errors.append(f"VMPULSE_JWT_PUBLIC_KEY must name a PEM file, got {key_text!r}")
        if public_key is None and any(not a.startswith("HS") for a in algorithms):
            errors.append(
                "VMPULSE_JWT_ALGORITHMS has RS/ES/PS algorithms: set VMPULSE_JWT_PUBLIC_KEY"
            )
        cors_text = env.get("VMPULSE_CORS_ORIGINS")
        cors = (
            tuple(o.strip() for o in cors_text.split(",") if o.strip())
            if cors_text is not None
            else None
        )
        max_conn = _int(env, "VMPULSE_GATEWAY_MAX_CONNECTIONS", 10_000, errors, minimum=1)
        max_user = _int(env, "VMPULSE_GATEWAY_MAX_CONNECTIONS_PER_USER", 20, errors, minimum=1)
        rate = _int(env, "VMPULSE_GATEWAY_CLIENT_EVENTS_PER_MINUTE", 100, errors, minimum=1)
        payload = _int(env, "VMPULSE_GATEWAY_MAX_PAYLOAD_BYTES", 65_536, errors, minimum=1024)
        window = _int(env, "VMPULSE_GATEWAY_RESUME_WINDOW_S", 600, errors, minimum=0)
        resume_max = _int(env, "VMPULSE_GATEWAY_RESUME_MAX_EVENTS", 100_000, errors, minimum=0)
        recent = _int(env, "VMPULSE_GATEWAY_RECENT_SAMPLES", 1_000, errors, minimum=1)
        send_buffer = _int(
            env, "VMPULSE_GATEWAY_SEND_BUFFER_BYTES", 4 * 1024 * 1024, errors, minimum=65_536
        )
        connect_timeout = _float(env, "VMPULSE_GATEWAY_CONNECT_TIMEOUT_S", 5.0, errors, minimum=0.5)
        resumes = _int(env, "VMPULSE_GATEWAY_RESUMES_PER_MINUTE", 30, errors, minimum=1)
        tcp_host: str | None = None
        tcp_port = 0
        tcp_addr = env.get("VMPULSE_AGENT_TCP_ADDR") or ""
        if tcp_addr:
            t_host, _, t_port = tcp_addr.rpartition(":")
            if not t_host or not t_port.isdigit() or not 0 <= int(t_port) <= 65535:
                errors.append(f"VMPULSE_AGENT_TCP_ADDR must be host:port, got {tcp_addr!r}")
            else:
                tcp_host, tcp_port = t_host.strip("[]"), int(t_port)
        vsock_raw = env.get("VMPULSE_VSOCK_PORT") or ""
        vsock_port = _int(env, "VMPULSE_VSOCK_PORT", 0, errors, minimum=1) if vsock_raw else None
        max_line = _int(env, "VMPULSE_AGENT_MAX_LINE", 4 * 1024 * 1024, errors, minimum=1024)
        max_buffer = _int(env, "VMPULSE_AGENT_MAX_BUFFER", 8 * 1024 * 1024, errors, minimum=1024)
        if max_buffer < max_line:
            errors.append(
                f"VMPULSE_AGENT_MAX_BUFFER must be >= VMPULSE_AGENT_MAX_LINE ({max_line}), "
                f"got {max_buffer}"
            )
        idle_s = _int(env, "VMPULSE_AGENT_IDLE_TIMEOUT_S", 120, errors, minimum=1)
        max_conns = _int(env, "VMPULSE_AGENT_MAX_CONNECTIONS", 10_000, errors, minimum=1)
        metrics_raw = env.get("VMPULSE_BRIDGE_METRICS_PORT") or ""
        metrics_port = (
            _int(env, "VMPULSE_BRIDGE_METRICS_PORT", 0, errors, minimum=0) if metrics_raw else None
        )
        batch_ms = _int(env, "VMPULSE_STORE_BATCH_MS", 1000, errors, minimum=10)
        floats = {
            name: _float(env, f"VMPULSE_{name.upper()}", default, errors, minimum=minimum)
            for name, default, minimum in (
                ("agent_interval_s", 30.0, 0.001),
                ("alert_cpu_percent", 90.0, 0.0),
                ("alert_cpu_for_s", 300.0, 0.0),
                ("alert_memory_percent", 95.0, 0.0),
                ("alert_memory_for_s", 300.0, 0.0),
                ("alert_disk_percent", 90.0, 0.0),
                ("kafka_session_timeout_s", 10.0, 6.0),
            )
        }
        raw_ttl = _int(env, "VMPULSE_RAW_TTL_DAYS", 30, errors, minimum=1)
        rollup_ttl = _int(env, "VMPULSE_ROLLUP_TTL_DAYS", 365, errors, minimum=1)
        allow_no_exp = (env.get("VMPULSE_JWT_ALLOW_NO_EXP") or "0").strip().lower()
        if allow_no_exp not in ("0", "1", "false", "true", "no", "yes"):
            errors.append(f"VMPULSE_JWT_ALLOW_NO_EXP must be 1 or 0, got {allow_no_exp!r}")
        # bridge admission (issue 10.7)
        hello_s = _float(env, "VMPULSE_AGENT_HELLO_TIMEOUT_S", 5.0, errors, minimum=0.1)
        identifying = _int(env, "VMPULSE_AGENT_MAX_IDENTIFYING", 256, errors, minimum=1)
        per_peer = _int(env, "VMPULSE_AGENT_MAX_IDENTIFYING_PER_PEER", 8, errors, minimum=1)
        per_vm = _int(env, "VMPULSE_AGENT_MAX_CONNECTIONS_PER_VM", 4, errors, minimum=1)
        owners = _owners(env.get("VMPULSE_SOCKET_OWNER") or "", errors)
        # reads (issue 10)
        read_url = env.get("VMPULSE_CLICKHOUSE_READ_URL") or None
        if read_url is not None and not read_url.startswith(("chdb:", "http://", "https://")):
            errors.append(
                "VMPULSE_CLICKHOUSE_READ_URL must start with chdb://, http:// or https://"
            )
        read_ints = {
            name: _int(env, f"VMPULSE_{name.upper()}", default, errors, minimum=1)
            for name, default in (
                ("read_concurrency", 4),
                ("read_concurrency_per_user", 2),
                ("read_requests_per_minute", 600),
                ("read_max_memory_mb", 1024),
                ("read_max_result_mb", 64),
                ("read_max_threads", 1),
            )
        }
        read_timeout = _float(env, "VMPULSE_READ_TIMEOUT_S", 30.0, errors, minimum=0.1)
        if errors:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
        return cls(
            data_dir=data_dir,
            kafka_bootstrap=env.get("VMPULSE_KAFKA_BOOTSTRAP") or None,
            clickhouse_url=ch_url,
            jwt_secret=Secret(jwt_secret),
            agent_secret=Secret(env.get("VMPULSE_AGENT_SECRET") or DEV_AGENT_SECRET),
            socket_dir=socket_dir,
            gateway_host=host.strip("[]") if host else "127.0.0.1",
            gateway_port=port,
            topic_prefix=env.get("VMPULSE_TOPIC_PREFIX", ""),
            partitions=partitions,
            replication_factor=replication,
            local_brokers=local_brokers,
            clickhouse_cluster=ch_cluster,
            bridge_shared=shared in ("1", "true", "yes"),
            live_interval_s=live_ms / 1000.0,
            store_batch_s=batch_ms / 1000.0,
            libvirt_uri=env.get("VMPULSE_LIBVIRT_URI") or None,
            jwt_algorithms=algorithms,
            jwt_public_key=public_key,
            jwt_issuer=env.get("VMPULSE_JWT_ISSUER") or None,
            jwt_audience=env.get("VMPULSE_JWT_AUDIENCE") or None,
            cors_origins=cors,
            gateway_max_connections=max_conn,
            gateway_max_connections_per_user=max_user,
            gateway_client_events_per_minute=rate,
            gateway_max_payload_bytes=payload,
            gateway_resume_window_s=float(window),
            gateway_resume_max_events=resume_max,
            gateway_recent_samples=recent,
            gateway_send_buffer_bytes=send_buffer,
            gateway_connect_timeout_s=connect_timeout,
            gateway_resumes_per_minute=resumes,
            agent_tcp_host=tcp_host,
            agent_tcp_port=tcp_port,
            vsock_port=vsock_port,
            agent_max_line=max_line,
            agent_max_buffer=max_buffer,
            agent_idle_timeout_s=float(idle_s),
            agent_max_connections=max_conns,
            bridge_metrics_port=metrics_port,
            worker_instance_id=env.get("VMPULSE_WORKER_ID") or None,
            raw_ttl_days=raw_ttl,
            rollup_ttl_days=rollup_ttl,
            jwt_allow_no_exp=allow_no_exp in ("1", "true", "yes"),
            agent_hello_timeout_s=hello_s,
            agent_max_identifying=identifying,
            agent_max_identifying_per_peer=per_peer,
            agent_max_connections_per_vm=per_vm,
            socket_owners=owners,
            clickhouse_read_url=read_url,
            read_timeout_s=read_timeout,
            read_concurrency=read_ints["read_concurrency"],
            read_concurrency_per_user=read_ints["read_concurrency_per_user"],
            read_requests_per_minute=read_ints["read_requests_per_minute"],
            read_max_memory_mb=read_ints["read_max_memory_mb"],
            read_max_result_mb=read_ints["read_max_result_mb"],
            read_max_threads=read_ints["read_max_threads"],
            **floats,
        )

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


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
