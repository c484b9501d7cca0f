"""docs/DEPLOYMENT.md says what `vmpulse reader-grants` grants the readers' user: all of it."""

from __future__ import annotations

import re
from pathlib import Path

from store.reader import ReadLimits
from store.reader_grants import render_reader_grants
from store.sql_policy import SYSTEM_TABLES

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "DEPLOYMENT.md"
USER, DB = "vmpulse_reader", "vmpulse"


def _clickhouse_section() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index("## ClickHouse: the store, its users and grants")
    end = text.index("\n## ", start + 1)
    return " ".join(text[start:end].split())  # one line: wrapped code spans still match


def test_the_guide_names_every_grant_and_limit_the_statements_make() -> None:
    statements = render_reader_grants(f"https://{USER}:pw@h:8443/{DB}", ReadLimits())
    guide = _clickhouse_section()
    profile = next(s for s in statements if s.startswith("CREATE SETTINGS PROFILE"))
    limits = re.findall(r"^\s+(\w+) = .* READONLY,?$", profile, re.MULTILINE)
    assert len(limits) >= 7
    for setting in limits:
        assert f"`{setting}`" in guide, f"the guide does not name the limit {setting}"
    assert "`readonly = 1`" in guide and "`READONLY` constraints" in guide
    assert f"CREATE SETTINGS PROFILE OR REPLACE {USER}_profile" in profile
    assert "`<user>_profile`" in guide
    assert any(s.startswith("REVOKE ALL ON *.*") for s in statements) and "`REVOKE ALL`" in guide
    system_tables = set()
    for statement in (s for s in statements if s.startswith("GRANT ")):
        assert statement.endswith(f" TO {USER}"), statement
        grant = statement.removesuffix(f" TO {USER}")
        if m := re.fullmatch(r"GRANT SELECT ON system\.(\w+)", grant):
            system_tables.add(m.group(1))
            continue
        shown = grant.replace(f"ON {DB}.*", "ON <db>.*").removeprefix("GRANT ")
        assert shown in guide, f"the guide does not name: {grant}"
    # "the system tables the SQL policy allows": exactly those
    assert system_tables == set(SYSTEM_TABLES)
    assert "`SYSTEM_TABLES`" in guide
    assert "sha256" in statements[1].lower() and "SHA-256 only" in guide
