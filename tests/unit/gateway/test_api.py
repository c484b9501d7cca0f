"""Read-only enforcement for /api/query: one read statement, nothing that escapes the store."""

from __future__ import annotations

import pytest

from gateway.exceptions import QueryRejected
from streams.store import MAX_SQL_LENGTH, check_read_only


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", "SELECT 1"),
        ("  select * from metrics ;  ", "select * from metrics"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x"),
        ("SHOW TABLES", "SHOW TABLES"),
        ("DESCRIBE TABLE metrics", "DESCRIBE TABLE metrics"),
        ("desc metrics", "desc metrics"),
        ("EXPLAIN SELECT 1", "EXPLAIN SELECT 1"),
        ("-- why\nSELECT 1", "-- why\nSELECT 1"),
        ("/* note */ (SELECT 1)", "/* note */ (SELECT 1)"),
    ],
)
def test_read_statements_pass(sql: str, expected: str) -> None:
    assert check_read_only(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "",
        "   ;",
        "INSERT INTO t VALUES (1)",
        "DROP TABLE metrics",
        "ALTER TABLE t DELETE WHERE 1",
        "SELECT 1; DROP TABLE metrics",
        "SELECT 1;;",
        "SELECT ';'",
        "/* SELECT */ DELETE FROM t WHERE 1",
        "-- SELECT\nTRUNCATE TABLE t",
        "SET readonly = 0",
        "SYSTEM SHUTDOWN",
        "SELECT * FROM file('/etc/passwd')",
        "SELECT * FROM url ('http://x', CSV)",
        "SELECT * FROM remote('h', db.t)",
        "SELECT * FROM executable('x.sh', TSV, 'a String')",
        "SELECT 1 INTO OUTFILE '/tmp/x'",
        "SELECTION",
    ],
)
def test_everything_else_is_rejected(sql: str) -> None:
    with pytest.raises(QueryRejected):
        check_read_only(sql)


def test_overlong_query_is_rejected() -> None:
    with pytest.raises(QueryRejected):
        check_read_only("SELECT " + "1" * MAX_SQL_LENGTH)
