"""Settings for containers (issue 13): secrets from mounted files, the health port, the jars.

A secret's value never appears in an error: only the variable that named it.
"""

from pathlib import Path

import pytest

from infra.config import SECRET_VARIABLES, ConfigError, Settings
from vmpulse.cli import main

JWT = "file-jwt-secret-" + "0123456789abcdef0123"  # 36 bytes
AGENT = "file-agent-secret-42"
URL = "https://vmpulse:s3cret-Pa55@clickhouse:8443/vmpulse"
KAFKA = "kafka-sasl-pa55word"


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_every_secret_variable_reads_its_file(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            # `echo key > file` leaves a newline: it is not part of the key
            "VMPULSE_JWT_SECRET_FILE": _write(tmp_path / "jwt", JWT + "\n"),
            "VMPULSE_AGENT_SECRET_FILE": _write(tmp_path / "agent", AGENT + "\r\n"),
            "VMPULSE_CLICKHOUSE_URL_FILE": _write(tmp_path / "url", URL),
            "VMPULSE_CLICKHOUSE_READ_URL_FILE": _write(tmp_path / "read", URL + "\n"),
            "VMPULSE_KAFKA_SASL_PASSWORD_FILE": _write(tmp_path / "kafka", KAFKA + "\n"),
            "VMPULSE_KAFKA_BOOTSTRAP": "kafka:9093",
            "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "VMPULSE_KAFKA_SASL_USERNAME": "vmpulse",
        }
    )
    assert s.tokens.secret.reveal() == JWT and not s.tokens.secret_is_dev
    assert s.bridge.agent_secret.reveal() == AGENT and not s.bridge.agent_secret_is_dev
    assert s.store.url == URL and s.store.reader_url == URL
    assert s.kafka.sasl_password is not None and s.kafka.sasl_password.reveal() == KAFKA
    assert JWT not in repr(s) and AGENT not in repr(s) and KAFKA not in repr(s)
    assert set(SECRET_VARIABLES) == {
        "VMPULSE_JWT_SECRET",
        "VMPULSE_AGENT_SECRET",
        "VMPULSE_CLICKHOUSE_URL",
        "VMPULSE_CLICKHOUSE_READ_URL",
        "VMPULSE_KAFKA_SASL_PASSWORD",
    }


def test_file_errors_name_the_variable_and_path_all_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                "VMPULSE_JWT_SECRET_FILE": str(tmp_path / "missing"),
                "VMPULSE_AGENT_SECRET_FILE": _write(tmp_path / "empty", "\n"),
                "VMPULSE_CLICKHOUSE_URL": URL,
                "VMPULSE_CLICKHOUSE_URL_FILE": _write(tmp_path / "url", URL),
                "VMPULSE_CLICKHOUSE_READ_URL_FILE": str(tmp_path),  # a directory
            }
        )
    text = str(info.value)
    assert f"VMPULSE_JWT_SECRET_FILE: cannot read '{tmp_path / 'missing'}'" in text
    assert "No such file or directory" in text
    assert f"VMPULSE_AGENT_SECRET_FILE: '{tmp_path / 'empty'}' is empty" in text
    assert "set VMPULSE_CLICKHOUSE_URL or VMPULSE_CLICKHOUSE_URL_FILE, not both" in text
    assert "VMPULSE_CLICKHOUSE_READ_URL_FILE: cannot read" in text
    assert "s3cret" not in text


def test_a_bad_secret_from_a_file_names_the_file_variable_never_the_value(
    tmp_path: Path,
) -> None:
    short = "short-hunter2-key"
    bad_url = "htps://vmpulse:s3cret-Pa55@clickhouse:8443/vmpulse"
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                "VMPULSE_JWT_SECRET_FILE": _write(tmp_path / "jwt", short),
                "VMPULSE_CLICKHOUSE_URL_FILE": _write(tmp_path / "url", bad_url),
            }
        )
    text = str(info.value)
    assert "VMPULSE_JWT_SECRET_FILE must be at least 32 bytes, got 17" in text
    assert "VMPULSE_CLICKHOUSE_URL_FILE must start with chdb://, http:// or https://" in text
    assert "'htps'://..." in text
    assert "hunter2" not in text and "s3cret" not in text


def test_a_malformed_url_in_the_environment_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"VMPULSE_CLICKHOUSE_URL": "vmpulse:s3cret-Pa55@clickhouse:8123"})
    assert "s3cret" not in str(info.value)
    assert "a value without a scheme" in str(info.value)


def test_the_secret_of_a_file_never_reaches_the_command_line_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VMPULSE_JWT_SECRET", raising=False)
    monkeypatch.setenv("VMPULSE_JWT_SECRET_FILE", _write(tmp_path / "jwt", "short-hunter2-key\n"))
    assert main(["token", "--user", "ann"]) == 2
    out = capsys.readouterr()
    assert "VMPULSE_JWT_SECRET_FILE must be at least 32 bytes" in out.err
    assert "hunter2" not in out.err + out.out


def test_the_health_address_and_the_jars(tmp_path: Path) -> None:
    s = Settings.from_env({"VMPULSE_HEALTH_ADDR": "0.0.0.0:8081", "VMPULSE_KAFKA_JARS": "/"})
    assert (s.health_host, s.health_port) == ("0.0.0.0", 8081)
    assert s.kafka.jars_dir == Path("/")
    assert Settings.from_env({"VMPULSE_HEALTH_ADDR": "[::1]:0"}).health_host == "::1"
    unset = Settings.from_env({})
    assert unset.health_host is None and unset.kafka.jars_dir is None
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {"VMPULSE_HEALTH_ADDR": "8081", "VMPULSE_KAFKA_JARS": str(tmp_path / "none")}
        )
    assert "VMPULSE_HEALTH_ADDR must be host:port, got '8081'" in str(info.value)
    assert "VMPULSE_KAFKA_JARS must name a directory" in str(info.value)


def test_probe_needs_the_health_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VMPULSE_HEALTH_ADDR", raising=False)
    assert main(["probe"]) == 2
    assert "VMPULSE_HEALTH_ADDR" in capsys.readouterr().err
