"""A start failure the operator fixes from its message is logged as that message, on one line;
any other failure keeps its traceback. Real sockets for the bind, the real log handler."""

from __future__ import annotations

import io
import json
import logging
import socket

import pytest

from infra.startup import StartError, listening
from vmpulse.logs import OWN_LOGGERS, configure_logging


def _logged(log_format: str, exc: BaseException) -> str:
    """What the process's handler writes for mode's "Error: %r" with the exception."""
    out = io.StringIO()
    loggers = [logging.getLogger(), *map(logging.getLogger, OWN_LOGGERS)]
    levels = [logger.level for logger in loggers]
    handler = configure_logging(log_format, stream=out)
    try:
        try:
            raise exc
        except BaseException:
            logging.getLogger("mode.worker").exception("Error: %r", exc)
    finally:
        logging.getLogger().removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    return out.getvalue()


def test_a_start_error_is_one_line_without_its_traceback() -> None:
    text = _logged("text", StartError("Kafka at k:9092 did not answer within 1 s"))
    assert text.count("\n") == 1, text
    assert text.rstrip().endswith("ERROR mode.worker: cannot start: Kafka at k:9092 did not "
                                  "answer within 1 s"), text  # fmt: skip
    entry = json.loads(_logged("json", StartError("the port is taken")))
    assert entry["message"] == "cannot start: the port is taken" and "exception" not in entry


def test_any_other_failure_keeps_its_traceback() -> None:
    text = _logged("text", ValueError("a bug"))
    assert "Error: ValueError('a bug')" in text and "Traceback" in text, text
    entry = json.loads(_logged("json", ValueError("a bug")))
    assert "Traceback" in entry["exception"]


def test_a_taken_port_names_the_setting_and_the_reason() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(StartError) as failed,
            listening("browsers", "127.0.0.1", port, "VMPULSE_GATEWAY_ADDR"),
            socket.socket() as second,
        ):
            second.bind(("127.0.0.1", port))
    assert str(failed.value) == (
        f"cannot listen for browsers on 127.0.0.1:{port} (VMPULSE_GATEWAY_ADDR): "
        "Address already in use"
    )
    assert isinstance(failed.value.__cause__, OSError)
