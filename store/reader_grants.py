"""The SQL that creates the readers' ClickHouse user on a server (``vmpulse reader-grants``).

The statements come from ``infra/clickhouse/reader_grants.sql`` with the
user, the password's SHA-256 and the database taken from the read URL and
the limits from :class:`~store.reader.ReadLimits`. Names are refused
unless they are plain identifiers, so nothing from the URL can change the
statements' meaning.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from store.reader import ReadLimits
from store.sql_policy import SYSTEM_TABLES

__all__ = ["TEMPLATE", "render_reader_grants"]

TEMPLATE = Path(__file__).resolve().parents[1] / "infra" / "clickhouse" / "reader_grants.sql"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def render_reader_grants(read_url: str, limits: ReadLimits) -> list[str]:
    """The statements, in order; raises ValueError for a URL they cannot be made from."""
    parts = urlsplit(read_url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the read URL must name a ClickHouse server (http:// or https://)")
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    database = parts.path.strip("/") or "default"
    for what, value in (("user", user), ("database", database)):
        if not _IDENTIFIER.fullmatch(value):
            raise ValueError(f"the read URL's {what} must be a plain identifier, got {value!r}")
    if not password:
        raise ValueError("the read URL must carry the reader's password")
    engine = limits.engine_settings()
    text = TEMPLATE.read_text().format(
        profile=f"{user}_profile",
        user=user,
        database=database,
        password_sha256=hashlib.sha256(password.encode()).hexdigest(),
        max_execution_time=engine["max_execution_time"],
        max_memory_usage=engine["max_memory_usage"],
        max_result_rows=engine["max_result_rows"],
        max_result_bytes=engine["max_result_bytes"],
        max_threads=engine["max_threads"],
        os_thread_priority=engine["os_thread_priority"],
        system_grants="\n".join(
            f"GRANT SELECT ON system.{table} TO {user};" for table in sorted(SYSTEM_TABLES)
        ),
    )
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    statements = (s.strip() for s in "\n".join(lines).split(";"))
    return [s for s in statements if s]
