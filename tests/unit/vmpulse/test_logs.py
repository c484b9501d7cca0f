"""Logs: vmpulse's lifecycle at INFO by default, libraries from WARNING; JSON lines on request."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from infra.config import ConfigError, Settings
from vmpulse.cli import main
from vmpulse.logs import JsonFormatter, configure_logging

SECRET = "json-log-test-secret-" + "s" * 24


def _record() -> logging.LogRecord:
    record = logging.LogRecord(
        "vmpulse.up", logging.INFO, __file__, 1, "vmpulse is up: gateway %s", ("http://h:1",), None
    )
    record.created = 1_796_000_000.25  # 2026-11-30T00:53:20.250Z
    return record


def test_a_json_record_is_one_object_on_one_line() -> None:
    text = JsonFormatter().format(_record())
    assert "\n" not in text
    assert json.loads(text) == {
        "time": "2026-11-30T00:53:20.250Z",
        "level": "INFO",
        "logger": "vmpulse.up",
        "message": "vmpulse is up: gateway http://h:1",
    }


def test_an_exception_travels_in_its_record() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord(
            "gateway.api", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    text = JsonFormatter().format(record)
    assert "\n" not in text
    entry = json.loads(text)
    assert entry["level"] == "ERROR" and entry["message"] == "failed"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: boom\nsecond line")


def test_default_levels_show_vmpulse_info_and_only_library_warnings() -> None:
    out = io.StringIO()
    configure_logging("text", stream=out)
    logging.getLogger("vmpulse.up").info("vmpulse is up")
    logging.getLogger("agents.bridge").info("bridge watching /s")
    logging.getLogger("agents.bridge").debug("a detail")
    logging.getLogger("aiokafka.consumer").info("their internals")
    logging.getLogger("aiokafka.consumer").warning("their trouble")
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "INFO vmpulse.up: vmpulse is up",
        "INFO agents.bridge: bridge watching /s",
        "WARNING aiokafka.consumer: their trouble",
    ]
    out = io.StringIO()
    configure_logging("json", verbose=True, stream=out)
    logging.getLogger("aiokafka.consumer").debug("everything with -v")
    (entry,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (entry["level"], entry["logger"]) == ("DEBUG", "aiokafka.consumer")
    mine = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]
    assert len(mine) == 1  # replaced, never stacked


def test_a_json_log_of_the_settings_shows_no_secret() -> None:
    out = io.StringIO()
    configure_logging("json", verbose=True, stream=out)
    settings = Settings.from_env(
        {"VMPULSE_JWT_SECRET": SECRET, "VMPULSE_CLICKHOUSE_URL": f"http://u:{SECRET}@ch:8123/db"}
    )
    logging.getLogger("vmpulse").debug("settings: %r", settings.tokens)
    try:
        raise RuntimeError(f"token key {settings.tokens.secret}")
    except RuntimeError:
        logging.getLogger("vmpulse").exception("failed with %s", settings.tokens.secret)
    text = out.getvalue()
    assert len(text.splitlines()) == 2 and "Secret('***')" in text
    assert SECRET not in text and SECRET[:20] not in text


def test_the_log_format_is_a_setting_checked_at_start() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"VMPULSE_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="VMPULSE_LOG_FORMAT must be text or json, got 'xml'"):
        Settings.from_env({"VMPULSE_LOG_FORMAT": "xml"})


def test_vmpulse_logs_json_when_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VMPULSE_LOG_FORMAT", "json")
    assert main(["token", "--user", "alice"]) == 0
    formatters = [h.formatter for h in logging.getLogger().handlers]
    assert any(isinstance(f, JsonFormatter) for f in formatters)
    assert capsys.readouterr().out.count(".") == 2  # a command's output stays plain
