"""How a vmpulse process logs: levels that say what they mean, text or one JSON object a line.

Levels: INFO is what happens in the life of a stage (started, listening, up,
stopping, a VM connected); WARNING is something an operator may have to act on
(a development key in use, a broker that does not answer yet, a refused
connection); ERROR is a failure. vmpulse's own loggers show INFO by default,
libraries (aiokafka, faust, mode, aiohttp) only WARNING and above, since their
INFO is about their internals; ``-v`` shows DEBUG of everything.

``VMPULSE_LOG_FORMAT=json`` (infra/config.py) writes each record as one JSON
object on one line, for the log collectors of container platforms: ``time``
(UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message``, and
``exception`` (the traceback's text) when there is one. Records carry only
their formatted message: a secret is kept out of logs where it is held
(:class:`infra.config.Secret`, ``redact_url``), not here.

A start failure whose message says it all (:class:`infra.startup.StartError`: a broker
that does not answer, a port that is taken) is one line, without its traceback.

The stages' mode/faust workers are told to leave this configuration alone
(``override_logging=False``); otherwise they replace the root handler and turn
every ``print`` into a WARNING.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import TextIO

from infra.startup import OneLineStartErrors

__all__ = ["OWN_LOGGERS", "TEXT_FORMAT", "JsonFormatter", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

OWN_LOGGERS = ("agents", "gateway", "infra", "schemas", "store", "streams", "vmpulse")
"""The packages whose INFO records are shown by default."""


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message (+ exception, stack)."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        entry: dict[str, str] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # json.dumps escapes newlines: a traceback stays on its record's one line
        return json.dumps(entry, ensure_ascii=False)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (so a second call replaces it)."""


def configure_logging(
    log_format: str, *, verbose: bool = False, stream: TextIO | None = None
) -> logging.Handler:
    """Send every record to ``stream`` (stderr) in ``log_format`` (``text`` or ``json``).

    Replaces the handler an earlier call installed (handlers of others, such as a
    test runner's capture, stay); returns the one installed.
    """
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.addFilter(OneLineStartErrors())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler
