import re
from pathlib import Path
from typing import Any

import pytest

from infra.config import (
    DEV_JWT_SECRET,
    LOCAL_PARTITIONS,
    SECRET_VARIABLES,
    BridgeSettings,
    ConfigError,
    KafkaSettings,
    Secret,
    Settings,
    StoreSettings,
    TokenSettings,
)
from tests.support.settings import settings_fields
from vmpulse.child import child_env
from vmpulse.cli import main

GOOD_SECRET = "hunter2-very-secret-" + "0123456789abcdef"  # 36 bytes


def test_defaults_work_with_an_empty_environment(tmp_path: Path) -> None:
    s = Settings.from_env({"VMPULSE_DATA_DIR": str(tmp_path)})
    assert s.kafka.bootstrap is None
    assert s.store.url == f"chdb://{tmp_path / 'clickhouse'}"
    assert s.bridge.socket_dir == tmp_path / "sockets"
    assert (s.gateway.host, s.gateway.port) == ("127.0.0.1", 8080)
    assert s.tokens.secret_is_dev and s.bridge.agent_secret_is_dev
    assert s.kafka.partitions == LOCAL_PARTITIONS


def test_partitions_default_to_few_on_a_local_broker_and_12_on_a_cluster() -> None:
    cluster = {"VMPULSE_KAFKA_BOOTSTRAP": "kafka-1:9092"}
    assert Settings.from_env({}).kafka.partitions == LOCAL_PARTITIONS < 12
    assert Settings.from_env(cluster).kafka.partitions == 12
    assert Settings.from_env({**cluster, "VMPULSE_PARTITIONS": "48"}).kafka.partitions == 48
    assert Settings.from_env({"VMPULSE_PARTITIONS": "7"}).kafka.partitions == 7


def test_a_child_of_up_keeps_the_partitions_up_decided(tmp_path: Path) -> None:
    # `up` tells a child its broker; without the partitions it would take a cluster's 12
    local = Settings.from_env({"VMPULSE_DATA_DIR": str(tmp_path)})
    started = local.replace(kafka={"bootstrap": "127.0.0.1:9092"})
    child = Settings.from_env(child_env(started, {}))
    assert child.kafka.partitions == local.kafka.partitions == LOCAL_PARTITIONS


def test_every_error_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                "VMPULSE_CLICKHOUSE_URL": "mysql://x",
                "VMPULSE_GATEWAY_ADDR": "nope",
                "VMPULSE_PARTITIONS": "zero",
            }
        )
    text = str(info.value)
    assert "VMPULSE_CLICKHOUSE_URL" in text
    assert "VMPULSE_GATEWAY_ADDR" in text
    assert "VMPULSE_PARTITIONS" in text


def test_secrets_do_not_show_in_repr() -> None:
    s = Settings.from_env({"VMPULSE_JWT_SECRET": GOOD_SECRET})
    assert "hunter2" not in repr(s)
    assert s.tokens.secret.reveal() == GOOD_SECRET
    assert not s.tokens.secret_is_dev
    assert repr(Secret("x")) == "Secret('***')"


def test_a_short_jwt_secret_is_refused_without_showing_it() -> None:
    short = "hunter2-short-key"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"VMPULSE_JWT_SECRET": short, "VMPULSE_PARTITIONS": "0"})
    text = str(info.value)
    assert "VMPULSE_JWT_SECRET must be at least 32 bytes, got 17" in text
    assert "VMPULSE_PARTITIONS" in text  # reported with the other errors, at once
    assert short not in text and short not in repr(info.value)
    assert "hunter2" not in text


def test_the_jwt_secret_minimum_counts_bytes() -> None:
    assert Settings.from_env({"VMPULSE_JWT_SECRET": "k" * 32}).tokens.secret.reveal() == "k" * 32
    assert not Settings.from_env({"VMPULSE_JWT_SECRET": "é" * 16}).tokens.secret_is_dev  # 32 bytes
    with pytest.raises(ConfigError, match="at least 32 bytes, got 31"):
        Settings.from_env({"VMPULSE_JWT_SECRET": "k" * 31})
    with pytest.raises(ConfigError, match="at least 32 bytes, got 30"):
        Settings.from_env({"VMPULSE_JWT_SECRET": "é" * 15})


def test_the_development_jwt_key_still_works_unset_or_empty() -> None:
    for env in ({}, {"VMPULSE_JWT_SECRET": ""}):
        s = Settings.from_env(env)
        assert s.tokens.secret_is_dev and s.tokens.secret.reveal() == DEV_JWT_SECRET


def test_vmpulse_refuses_to_start_with_a_short_jwt_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VMPULSE_JWT_SECRET", "hunter2-short-key")
    assert main(["token", "--user", "alice"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "VMPULSE_JWT_SECRET must be at least 32 bytes" in err
    assert "hunter2" not in err
    monkeypatch.delenv("VMPULSE_JWT_SECRET")
    assert main(["token", "--user", "alice"]) == 0  # the development key
    assert capsys.readouterr().out.count(".") == 2  # a JWT: header.payload.signature


def test_gateway_settings_defaults_and_errors(tmp_path: Path) -> None:
    s = Settings.from_env({})
    assert s.tokens.algorithms == ("HS256",) and s.tokens.public_key is None
    assert s.gateway.cors_origins is None
    assert (s.gateway.max_connections, s.gateway.max_connections_per_user) == (10_000, 20)
    assert s.gateway.client_events_per_minute == 100
    assert s.gateway.resume_window_s == 600.0 and s.gateway.recent_samples == 1_000
    s = Settings.from_env(
        {"VMPULSE_CORS_ORIGINS": "https://a.example, https://b.example", "VMPULSE_JWT_ISSUER": "i"}
    )
    assert s.gateway.cors_origins == ("https://a.example", "https://b.example")
    assert s.tokens.issuer == "i" and s.tokens.audience is None
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                "VMPULSE_JWT_ALGORITHMS": "RS256,none",
                "VMPULSE_JWT_PUBLIC_KEY": str(tmp_path / "missing.pem"),
                "VMPULSE_GATEWAY_MAX_CONNECTIONS": "0",
            }
        )
    text = str(info.value)
    for name in ("VMPULSE_JWT_ALGORITHMS", "VMPULSE_JWT_PUBLIC_KEY", "MAX_CONNECTIONS"):
        assert name in text


def test_presence_alert_and_retention_settings() -> None:
    s = Settings.from_env(
        {
            "VMPULSE_AGENT_INTERVAL_S": "5",
            "VMPULSE_ALERT_CPU_PERCENT": "80.5",
            "VMPULSE_ALERT_CPU_FOR_S": "60",
            "VMPULSE_RAW_TTL_DAYS": "7",
            "VMPULSE_ROLLUP_TTL_DAYS": "90",
        }
    )
    assert (s.worker.agent_interval_s, s.alerts.cpu_percent, s.alerts.cpu_for_s) == (
        5.0,
        80.5,
        60.0,
    )
    assert (s.alerts.memory_percent, s.alerts.disk_percent) == (95.0, 90.0)
    assert (s.store.raw_ttl_days, s.store.rollup_ttl_days) == (7, 90)


def test_bad_presence_and_alert_settings_are_all_reported() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(
            {
                "VMPULSE_AGENT_INTERVAL_S": "0",
                "VMPULSE_ALERT_CPU_PERCENT": "nan",
                "VMPULSE_RAW_TTL_DAYS": "x",
            }
        )
    text = str(err.value)
    assert "VMPULSE_AGENT_INTERVAL_S" in text
    assert "VMPULSE_ALERT_CPU_PERCENT" in text
    assert "VMPULSE_RAW_TTL_DAYS" in text


def test_tokens_without_exp_are_refused_unless_a_setting_allows_them() -> None:
    assert Settings.from_env({}).tokens.allow_no_exp is False
    assert Settings.from_env({"VMPULSE_JWT_ALLOW_NO_EXP": "1"}).tokens.allow_no_exp is True
    assert Settings.from_env({"VMPULSE_JWT_ALLOW_NO_EXP": "false"}).tokens.allow_no_exp is False
    with pytest.raises(ConfigError, match="VMPULSE_JWT_ALLOW_NO_EXP"):
        Settings.from_env({"VMPULSE_JWT_ALLOW_NO_EXP": "maybe"})


@pytest.mark.parametrize("command", [["gateway"], ["up", "--vms", "0"]])
def test_gateway_and_up_refuse_the_development_key_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: list[str],
) -> None:
    monkeypatch.delenv("VMPULSE_JWT_SECRET", raising=False)
    monkeypatch.setenv("VMPULSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VMPULSE_GATEWAY_ADDR", "0.0.0.0:0")
    # Refused before anything starts: no broker, no store, nothing in the data dir.
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "VMPULSE_JWT_SECRET" in err and "development JWT key" in err
    assert list(tmp_path.iterdir()) == []


def test_vmpulse_token_mints_tokens_that_expire(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import jwt

    monkeypatch.delenv("VMPULSE_JWT_SECRET", raising=False)
    assert main(["token", "--user", "alice", "--ttl-hours", "2"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), DEV_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 2 * 3600


def test_gateway_send_path_settings() -> None:
    s = Settings.from_env({})
    assert s.gateway.send_buffer_bytes == 4 * 1024 * 1024
    assert s.gateway.connect_timeout_s == 5.0 and s.gateway.resumes_per_minute == 30
    s = Settings.from_env(
        {
            "VMPULSE_GATEWAY_SEND_BUFFER_BYTES": "1048576",
            "VMPULSE_GATEWAY_CONNECT_TIMEOUT_S": "2.5",
            "VMPULSE_GATEWAY_RESUMES_PER_MINUTE": "5",
        }
    )
    assert s.gateway.send_buffer_bytes == 1_048_576
    assert s.gateway.connect_timeout_s == 2.5 and s.gateway.resumes_per_minute == 5
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                "VMPULSE_GATEWAY_SEND_BUFFER_BYTES": "1000",
                "VMPULSE_GATEWAY_CONNECT_TIMEOUT_S": "nan",
                "VMPULSE_GATEWAY_RESUMES_PER_MINUTE": "0",
            }
        )
    text = str(info.value)
    for name in ("SEND_BUFFER_BYTES", "CONNECT_TIMEOUT_S", "RESUMES_PER_MINUTE"):
        assert name in text


# Variables the docs name that are not settings of the product: benchmark knobs
# (tests/bench), the browser tests' Chromium, the crash test's seed, and the
# example client's own environment (docs/CLIENT.md).
NOT_SETTINGS = {"VMPULSE_CHROMIUM", "VMPULSE_CRASH_SEED", "VMPULSE_TOKEN", "VMPULSE_URL"}
# infra/compose.yaml's own variables (the published port, the simulated fleet's size)
NOT_SETTINGS |= {"VMPULSE_HTTP_PORT", "VMPULSE_VMS"}
# the failover test's knobs (tests/integration/infra/test_failover.py)
NOT_SETTINGS |= {"VMPULSE_FAILOVER_VMS", "VMPULSE_FAILOVER_INTERVAL_S"}
# <NAME>_FILE of each secret: read into <NAME> (tests/unit/infra/test_deploy_settings.py)
SECRET_FILES = {f"{name}_FILE" for name in SECRET_VARIABLES}

# A valid value other than the default for the variables a generic one does not fit.
SAMPLES = {
    "VMPULSE_DATA_DIR": "/tmp/vmpulse-elsewhere",
    "VMPULSE_CLICKHOUSE_URL": "http://u:p@ch.example:8123/db",
    "VMPULSE_CLICKHOUSE_READ_URL": "http://reader:p@ch.example:8123/db",
    "VMPULSE_GATEWAY_ADDR": "127.0.0.1:9090",
    "VMPULSE_AGENT_TCP_ADDR": "127.0.0.1:7000",
    "VMPULSE_AGENT_MAX_BUFFER": str(16 * 1024 * 1024),
    "VMPULSE_JWT_SECRET": GOOD_SECRET,
    "VMPULSE_AGENT_SECRET": GOOD_SECRET,
    "VMPULSE_TOPIC_PREFIX": "p.",
    "VMPULSE_STORE_BATCH_MS": "1500",
    "VMPULSE_LIVE_INTERVAL_MS": "1500",
    "VMPULSE_JWT_ALGORITHMS": "HS256,HS512",
    "VMPULSE_JWT_PUBLIC_KEY": __file__,  # any existing file
    "VMPULSE_JWT_ALLOW_NO_EXP": "1",
    "VMPULSE_CORS_ORIGINS": "https://a.example",
    "VMPULSE_SOCKET_OWNER": "0",
    "VMPULSE_SOCKET_DIR": "/tmp/vmpulse-sockets",
    "VMPULSE_KAFKA_SESSION_TIMEOUT_S": "7",
    "VMPULSE_CLICKHOUSE_CLUSTER": "metrics",
    "VMPULSE_HEALTH_ADDR": "127.0.0.1:8081",
    "VMPULSE_BRIDGE_SHARED": "1",
    "VMPULSE_KAFKA_JARS": str(Path(__file__).parent),  # any existing directory
    "VMPULSE_LOG_FORMAT": "json",
}
# What a variable needs beside it to be valid at all (set on both sides of the comparison).
NEEDS = {"VMPULSE_CLICKHOUSE_CLUSTER": {"VMPULSE_CLICKHOUSE_URL": "http://u:p@ch.example:8123/db"}}
# the Kafka clients' security: a cluster, and a user for the SASL protocols (infra/config.py)
_SASL = {
    "VMPULSE_KAFKA_BOOTSTRAP": "kafka.example:9093",
    "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "VMPULSE_KAFKA_SASL_USERNAME": "vmpulse",
    "VMPULSE_KAFKA_SASL_PASSWORD": "pw",
}
# the client certificate and key go together: both set, each then changed alone
_OTHER_FILE = str(Path(__file__).parent / "__init__.py")
_CLIENT_CERT = {
    **_SASL,
    "VMPULSE_KAFKA_SSL_CERTFILE": _OTHER_FILE,
    "VMPULSE_KAFKA_SSL_KEYFILE": _OTHER_FILE,
}
SAMPLES |= {
    "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SSL",
    "VMPULSE_KAFKA_SASL_MECHANISM": "PLAIN",
    "VMPULSE_KAFKA_SASL_USERNAME": "someone",
    "VMPULSE_KAFKA_SASL_PASSWORD": "other",
    "VMPULSE_KAFKA_SSL_CAFILE": __file__,  # any existing file
    "VMPULSE_KAFKA_SSL_CERTFILE": __file__,
    "VMPULSE_KAFKA_SSL_KEYFILE": __file__,
}
NEEDS |= {
    "VMPULSE_KAFKA_SECURITY_PROTOCOL": {"VMPULSE_KAFKA_BOOTSTRAP": "kafka.example:9093"},
    "VMPULSE_KAFKA_SASL_MECHANISM": _SASL,
    "VMPULSE_KAFKA_SASL_USERNAME": _SASL,
    "VMPULSE_KAFKA_SASL_PASSWORD": _SASL,
    "VMPULSE_KAFKA_SSL_CAFILE": _SASL,
    "VMPULSE_KAFKA_SSL_CERTFILE": _CLIENT_CERT,
    "VMPULSE_KAFKA_SSL_KEYFILE": _CLIENT_CERT,
}


def _documented_variables() -> set[str]:
    root = Path(__file__).resolve().parents[3]
    docs = [root / "README.md", root / "CHANGELOG.md"]
    docs += sorted((root / "docs").glob("*.md"))
    found = {m for doc in docs for m in re.findall(r"VMPULSE_[A-Z0-9_]*[A-Z0-9]", doc.read_text())}
    # "VMPULSE_READ_*" (CHANGELOG.md) names the reads' group
    groups = {d for d in found if d + "_*" in " ".join(doc.read_text() for doc in docs)}
    found |= {v for v in _declared_variables() if any(v.startswith(g + "_") for g in groups)}
    found = {v for v in found - groups if not v.startswith("VMPULSE_BENCH_")}
    return found - NOT_SETTINGS - SECRET_FILES


def _declared_variables() -> set[str]:
    return {f.metadata["env"] for f in settings_fields() if "env" in f.metadata}


def test_every_documented_variable_is_declared_by_a_setting() -> None:
    documented = _documented_variables()
    assert "VMPULSE_PARTITIONS" in documented and "VMPULSE_READ_TIMEOUT_S" in documented
    assert documented <= _declared_variables(), documented - _declared_variables()


@pytest.mark.parametrize("name", sorted(_documented_variables()))
def test_every_documented_variable_is_read(name: str) -> None:
    # Set alone to a valid value that is not its default, it changes the settings.
    field = next(f for f in settings_fields() if f.metadata.get("env") == name)
    value = SAMPLES.get(name)
    if value is None:
        default: Any = field.default
        value = "4321" if default is None else str(int(default) + 7)
    base = {"VMPULSE_DATA_DIR": "/tmp/vmpulse-here", **NEEDS.get(name, {})}
    assert Settings.from_env({**base, name: value}) != Settings.from_env(base)


def test_each_default_is_the_one_its_field_declares(tmp_path: Path) -> None:
    s = Settings.from_env({"VMPULSE_DATA_DIR": str(tmp_path)})
    # Groups without defaults that depend on the data dir are exactly their declared defaults.
    for group in (s.reads, s.worker, s.alerts, s.gateway):
        assert group == type(group)(), group
    assert s.kafka == KafkaSettings(partitions=LOCAL_PARTITIONS)  # no bootstrap: a local broker
    assert s.tokens == TokenSettings(secret=Secret(DEV_JWT_SECRET))
    assert s.store == StoreSettings(url=f"chdb://{tmp_path / 'clickhouse'}")
    assert s.bridge == BridgeSettings(socket_dir=tmp_path / "sockets")


def test_replace_changes_one_field_of_a_group() -> None:
    s = Settings()
    t = s.replace(gateway={"max_connections": 2}, kafka=KafkaSettings(partitions=3))
    assert t.gateway.max_connections == 2 and t.gateway.port == s.gateway.port
    assert t.kafka.partitions == 3 and s.gateway.max_connections == 10_000


def test_a_line_limit_whose_dead_letter_would_not_fit_a_record_is_refused() -> None:
    assert Settings.from_env({"VMPULSE_AGENT_MAX_LINE": str(8 << 20)}).bridge.max_line == 8 << 20
    with pytest.raises(ConfigError, match=r"VMPULSE_AGENT_MAX_LINE must be <= 8388608"):
        Settings.from_env(
            {"VMPULSE_AGENT_MAX_LINE": str(9 << 20), "VMPULSE_AGENT_MAX_BUFFER": str(16 << 20)}
        )
