"""Hostile and harmless admin SQL, shared by the reader's and the running gateway's tests.

Each attack is a template: ``{secret}`` is a file whose content must never come
back, ``{outfile}`` a path that must never be written, ``{url}`` a local
listener that must never be contacted, ``{otherdb}`` a database beside the
metric one that holds a secret row. :class:`Traps` makes them and checks
afterwards that nothing reached them. Where a rule should name itself, the
attack carries the start of the message; ``""`` accepts any refusal (an
engine syntax error is a refusal too).
"""

from __future__ import annotations

import dataclasses
import socket
import uuid
from pathlib import Path

__all__ = ["ALLOWED", "ATTACKS", "SECRET_ROW", "Traps"]

SECRET_ROW = "otherdb-secret-" + uuid.uuid4().hex

_NOT_SELECT = "only SELECT queries are allowed"
_OUTFILE = "INTO OUTFILE is not allowed"
_FORMAT = "FORMAT is not allowed"
_SETTINGS = "SETTINGS are not allowed"
_TF = "table function "
_FN = "function "
_TABLE = "table "
_SYNTAX = "not one valid statement"
_PARAMS = "query parameters"

_STATEMENTS = [
    ("INSERT INTO system_metrics (vm_id) VALUES ('x')", _NOT_SELECT),
    ("insert into system_metrics select * from system_metrics", _NOT_SELECT),
    ("INSERT INTO FUNCTION file('{outfile}', 'LineAsString') SELECT 'x'", _NOT_SELECT),
    ("ALTER TABLE system_metrics DELETE WHERE 1", _NOT_SELECT),
    ("ALTER TABLE system_metrics UPDATE dialect = 9 WHERE 1", _NOT_SELECT),
    ("CREATE TABLE evil (a UInt8) ENGINE = Memory", _NOT_SELECT),
    ("CREATE TEMPORARY TABLE evil (a UInt8)", _NOT_SELECT),
    ("CREATE FUNCTION evil AS x -> x", _NOT_SELECT),
    ("CREATE USER evil", _NOT_SELECT),
    ("GRANT ALL ON *.* TO default", _NOT_SELECT),
    ("DROP TABLE system_metrics", _NOT_SELECT),
    ("DROP DATABASE {otherdb}", _NOT_SELECT),
    ("TRUNCATE TABLE system_metrics", _NOT_SELECT),
    ("RENAME TABLE system_metrics TO gone", _NOT_SELECT),
    ("DETACH TABLE system_metrics", _NOT_SELECT),
    ("KILL QUERY WHERE 1", _NOT_SELECT),
    ("KILL MUTATION WHERE 1", _NOT_SELECT),
    ("SYSTEM SHUTDOWN", _NOT_SELECT),
    ("SYSTEM DROP DNS CACHE", _NOT_SELECT),
    ("OPTIMIZE TABLE system_metrics FINAL", _NOT_SELECT),
    ("SET readonly = 0", _NOT_SELECT),
    ("USE system", _NOT_SELECT),
    ("BACKUP TABLE system_metrics TO File('{outfile}')", _NOT_SELECT),
    ("SHOW TABLES", _NOT_SELECT),
    ("SHOW PROCESSLIST", _NOT_SELECT),
    ("DESCRIBE TABLE system_metrics", _NOT_SELECT),
    ("EXISTS TABLE system_metrics", _NOT_SELECT),
    ("EXPLAIN SYNTAX SELECT 1", _NOT_SELECT),
    ("explain ast select * from file('{secret}')", _NOT_SELECT),
]

_OUTPUT = [
    ("SELECT 1 INTO OUTFILE '{outfile}'", _OUTFILE),
    ("SELECT 1 INTO/**/OUTFILE '{outfile}'", _OUTFILE),
    ("select 1 into outfile '{outfile}' and stdout", _OUTFILE),
    ("SELECT 1 INTO OUTFILE '{outfile}' TRUNCATE", _OUTFILE),
    ("SELECT 1 INTO OUTFILE '{outfile}' COMPRESSION 'gzip'", _OUTFILE),
    ("(SELECT 1) INTO OUTFILE '{outfile}'", _OUTFILE),
    ("SELECT 1 UNION ALL SELECT 2 INTO OUTFILE '{outfile}'", _OUTFILE),
    ("SELECT 1 FORMAT JSON", _FORMAT),
    ("SELECT 1 FORMAT Template SETTINGS format_template_resultset = '{secret}'", ""),
]

_SEVERAL = [
    ("SELECT 1; DROP TABLE system_metrics", _SYNTAX),
    ("SELECT 1;DROP TABLE system_metrics", _SYNTAX),
    ("SELECT 1; SELECT 2", _SYNTAX),
    ("SELECT ';'; DROP TABLE system_metrics", _SYNTAX),
    ("SELECT 1 -- \n; DROP TABLE system_metrics", _SYNTAX),
    ("SELECT 1 /* ; */ ; SELECT file('{secret}')", _SYNTAX),
    ("SELECT 1\uff1b DROP TABLE system_metrics", _SYNTAX),  # fullwidth semicolon
]

_LIMITS = [
    ("SELECT 1 SETTINGS readonly = 0", _SETTINGS),
    ("SELECT 1 SETTINGS max_execution_time = 100000", _SETTINGS),
    ("SELECT 1 SETTINGS max_memory_usage = 0, max_result_rows = 0", _SETTINGS),
    ("SELECT * FROM (SELECT 1 SETTINGS max_result_rows = 0)", _SETTINGS),
    ("SELECT 1 UNION ALL SELECT 2 SETTINGS max_threads = 64", _SETTINGS),
    ("WITH x AS (SELECT 1 SETTINGS readonly = 0) SELECT * FROM x", _SETTINGS),
    ("SELECT {{p:String}}", _PARAMS),
    ("SELECT * FROM {{t:Identifier}}", _PARAMS),
]

# The same file read, spelled every way the engine may accept.
_FILE_READS = [
    "SELECT * FROM file('{secret}', 'LineAsString')",
    "SELECT * FROM file/**/('{secret}', 'LineAsString')",
    "SELECT * FROM `file`('{secret}', 'LineAsString')",
    "SELECT * FROM \"file\"('{secret}', 'LineAsString')",
    "select * from FILE('{secret}', 'LineAsString')",
    "SELECT * FROM fIlE('{secret}', 'LineAsString')",
    "SELECT * FROM\tfile\n(\n'{secret}'\n,'LineAsString')",
    "SELECT * FROM -- note\nfile('{secret}', 'LineAsString')",
    "/* SELECT 1 */ SELECT * FROM file('{secret}', 'LineAsString') -- ; ",
    "SELECT * FROM file(\u00a0'{secret}', 'LineAsString')",  # no-break space
    "SELECT * FROM f\u200bile('{secret}', 'LineAsString')",  # zero-width space
    "SELECT * FROM \uff46\uff49\uff4c\uff45('{secret}', 'LineAsString')",  # fullwidth
    "SELECT * FROM (SELECT * FROM (SELECT * FROM file('{secret}', 'LineAsString')))",
    "SELECT * FROM view(SELECT * FROM file('{secret}', 'LineAsString'))",
    "SELECT 1 UNION ALL SELECT * FROM file('{secret}', 'LineAsString')",
    "SELECT count() FROM system_metrics JOIN file('{secret}', 'LineAsString') AS f ON 1",
    "SELECT 1 WHERE 'x' IN (SELECT * FROM file('{secret}', 'LineAsString'))",
    "WITH f AS (SELECT * FROM file('{secret}', 'LineAsString')) SELECT * FROM f",
    "SELECT file('{secret}')",
    "SELECT FILE('{secret}')",
    "SELECT `file`('{secret}')",
    "SELECT * APPLY(file) FROM (SELECT '{secret}' AS p)",
    "SELECT * APPLY(x -> file(x)) FROM (SELECT '{secret}' AS p)",
    "SELECT arrayMap(x -> file(x), ['{secret}'])",
    "SELECT (SELECT file('{secret}'))",
    "SELECT throwIf(1, file('{secret}'))",
    "SELECT 1 WHERE file('{secret}') != ''",
    "SELECT count() FROM system_metrics WHERE vm_id = file('{secret}')",
    "SELECT vm_id FROM system_metrics ORDER BY file('{secret}')",
    "WITH file('{secret}') AS f SELECT f",
    "SELECT * FROM view(SELECT file('{secret}'))",
    "SELECT count() OVER (PARTITION BY file('{secret}'))",
    "SELECT 1 EXCEPT SELECT length(file('{secret}'))",
    "SELECT * FROM sqlite('{secret}', 't')",
    "SELECT * FROM fileCluster('default', '{secret}', 'LineAsString')",
    "SELECT * FROM icebergLocal('{secret}')",
    "SELECT * FROM deltaLakeLocal('{secret}')",
    "SELECT * FROM filesystem('/etc')",
]

_REACH_OUT = [
    "SELECT * FROM url('{url}/x', 'LineAsString')",
    "SELECT * FROM `url`('{url}/x', 'LineAsString')",
    "SELECT * FROM urlCluster('default', '{url}/x', 'LineAsString')",
    "SELECT * FROM s3('{url}/bucket/key', 'CSV')",
    "SELECT * FROM s3Cluster('default', '{url}/bucket/key', 'CSV')",
    "SELECT * FROM gcs('{url}/bucket/key', 'CSV')",
    "SELECT * FROM azureBlobStorage('{url}', 'c', 'b')",
    "SELECT * FROM hdfs('hdfs://127.0.0.1:1/x', 'CSV')",
    "SELECT * FROM iceberg('{url}/t')",
    "SELECT * FROM deltaLake('{url}/t')",
    "SELECT * FROM hudi('{url}/t')",
    "SELECT * FROM remote('127.0.0.1:1', system.one)",
    "SELECT * FROM remoteSecure('127.0.0.1:1', system.one)",
    "SELECT * FROM cluster('default', system.one)",
    "SELECT * FROM clusterAllReplicas('default', system.one)",
    "SELECT * FROM mysql('127.0.0.1:1', 'db', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:1', 'db', 't', 'u', 'p')",
    "SELECT * FROM mongodb('127.0.0.1:1', 'db', 'c', 'u', 'p', 'a String')",
    "SELECT * FROM redis('127.0.0.1:1', 'k', 'k String')",
    "SELECT * FROM jdbc('jdbc:x', 'db', 't')",
    "SELECT * FROM odbc('DSN=x', 'db', 't')",
    "SELECT * FROM executable('cat', 'LineAsString', 'x String')",
    "SELECT * FROM executable('id', 'LineAsString', 'x String', (SELECT 1))",
    "SELECT * FROM input('x String')",
    "SELECT * FROM dictionary('d')",
    "SELECT * FROM merge('system', '^tables$')",
    "SELECT * FROM merge('{otherdb}', '.*')",
    "SELECT * FROM merge(REGEXP('.*'), '.*')",
    "SELECT * FROM loop(system.tables)",
    "SELECT * FROM python('x')",
    "SELECT * FROM Python(settings)",
    "SELECT * FROM format(JSONEachRow, '{{\"a\": 1}}')",
    "SELECT * FROM mergeTreeIndex(currentDatabase(), system_metrics)",
    "SELECT * FROM viewIfPermitted(SELECT 1 ELSE null('a UInt8'))",
    "SELECT * FROM viewExplain('EXPLAIN AST', '', (SELECT 1))",
    "SELECT * FROM zeros(1)",
    "SELECT * FROM null('a UInt8')",
    "SELECT dictGet('d', 'a', toUInt64(1))",
    "SELECT dictGetString('d', 'a', toUInt64(1))",
    "SELECT dictHas('d', toUInt64(1))",
    "SELECT joinGet('{otherdb}.j', 'v', 1)",
    "SELECT hostName()",
    "SELECT hostname()",
    "SELECT FQDN()",
    "SELECT fullHostName()",
    "SELECT getMacro('shard')",
    "SELECT getServerSetting('path')",
    "SELECT getMergeTreeSetting('index_granularity')",
    "SELECT filesystemAvailable()",
    "SELECT showCertificate()",
    "SELECT getOSKernelVersion()",
    "SELECT tcpPort()",
    "SELECT serverUUID()",
    "SELECT displayName()",
    "SELECT hasColumnInTable('system', 'tables', 'name')",
    "SELECT hasColumnInTable('127.0.0.1:1', 'u', 'p', 'db', 't', 'c')",
    "SELECT logTrace('written to the server log')",
    "SELECT addressToSymbol(toUInt64(1))",
    "SELECT demangle('x')",
    "SELECT aiGenerate('say hi')",
    "SELECT generateSerialID('x')",
    "SELECT zookeeperSessionUptime()",
    "SELECT getClientHTTPHeader('Authorization')",
]

_TABLES = [
    "SELECT * FROM system.tables",
    "SELECT * FROM `system`.`tables`",
    'SELECT * FROM "system"."tables"',
    "SELECT * FROM system . tables",
    "SELECT data_paths FROM system.databases",
    "SELECT query FROM system.processes",
    "SELECT query FROM system.query_log",
    "SELECT * FROM system.settings",
    "SELECT * FROM system.server_settings",
    "SELECT * FROM system.disks",
    "SELECT path FROM system.parts",
    "SELECT * FROM system.users",
    "SELECT * FROM system.grants",
    "SELECT * FROM system.macros",
    "SELECT * FROM system.clusters",
    "SELECT * FROM system.build_options",
    "SELECT * FROM system.stack_trace",
    "SELECT * FROM system.dictionaries",
    "SELECT * FROM SYSTEM.tables",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM INFORMATION_SCHEMA.TABLES",
    "SELECT * FROM {otherdb}.t",
    "SELECT * FROM `{otherdb}`.t",
    "SELECT * FROM {otherdb}.`t`",
    "SELECT 1 WHERE 1 IN {otherdb}.t",
    "SELECT 1 WHERE 'x' NOT IN {otherdb}.t",
    "SELECT 1 WHERE 'x' GLOBAL IN {otherdb}.t",
    "SELECT count() FROM system_metrics WHERE vm_id IN (SELECT * FROM {otherdb}.t)",
    "WITH system_metrics AS (SELECT * FROM {otherdb}.t) SELECT * FROM system_metrics",
    "SELECT (SELECT any(s) FROM {otherdb}.t)",
    "SELECT * FROM system_metrics AS m JOIN {otherdb}.t AS s ON 1",
    "SELECT throwIf(count() > 0) FROM {otherdb}.t",
    "SELECT 1 WHERE 1 IN system.tables",
]

ATTACKS: list[tuple[str, str]] = [
    *_STATEMENTS,
    *_OUTPUT,
    *_SEVERAL,
    *_LIMITS,
    *((sql, "") for sql in _FILE_READS),
    *((sql, "") for sql in _REACH_OUT),
    *((sql, "") for sql in _TABLES),
]
"""(SQL template, start of the refusal's message or "" for any refusal)."""

ALLOWED: list[tuple[str, list[list[object]] | None]] = [
    ("SELECT 1", [[1]]),
    ("  select 1 ;  ", [[1]]),
    ("-- why\nSELECT 1", [[1]]),
    ("/* note */ (SELECT 1)", [[1]]),
    ("SELECT 'file(''{secret}'')' AS s LIMIT 0", []),  # text about a file is data
    ("SELECT `file` FROM (SELECT 1 AS `file`)", [[1]]),  # so is a column named file
    ("SELECT hostname FROM (SELECT 'x' AS hostname)", [["x"]]),
    ("SELECT count() > -1 FROM system_metrics", [[True]]),
    ("SELECT count() > -1 FROM default.system_metrics", [[True]]),
    ("SELECT vm_id, avgMerge(cpu_avg) FROM system_metrics_1m GROUP BY vm_id LIMIT 0", []),
    ("WITH r AS (SELECT vm_id FROM system_metrics) SELECT count() > -1 FROM r", [[True]]),
    ("SELECT name FROM system.columns WHERE table = 'system_metrics' AND name = 'ts'", None),
    ("SELECT number FROM numbers(3)", [[0], [1], [2]]),
    ("SELECT * FROM system.numbers LIMIT 2", [[0], [1]]),
    ("SELECT count() FROM (SELECT * FROM generateRandom('a UInt8', 1) LIMIT 5)", [[5]]),
    ("SELECT * FROM values('v UInt8', 1, 2)", [[1], [2]]),
    ("SELECT 1 UNION ALL SELECT 2 ORDER BY 1", [[1], [2]]),
    ("SELECT 1 EXCEPT SELECT 2", [[1]]),
    ("SELECT name FROM system.functions WHERE name = 'file'", [["file"]]),
    (
        "SELECT count() > -1 FROM system_metrics "
        "WHERE vm_id IN (SELECT vm_id FROM system_metrics_1m)",
        [[True]],
    ),
]
"""(SQL, expected rows or None for "any rows") that a read may do."""


@dataclasses.dataclass
class Traps:
    """The things attacks aim at, and the checks that none of them was reached."""

    secret: Path
    outfile: Path
    listener: socket.socket
    otherdb: str

    @classmethod
    def make(cls, directory: Path, otherdb: str) -> Traps:
        secret = directory / "secret.txt"
        secret.write_text(f"host-secret-{uuid.uuid4().hex}\n")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.setblocking(False)
        return cls(secret, directory / "written.txt", listener, otherdb)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def fill(self, template: str) -> str:
        return template.format(
            secret=self.secret, outfile=self.outfile, url=self.url, otherdb=self.otherdb
        )

    def leaked(self, text: str) -> bool:
        """True if a response carries the secret file's or the other database's data."""
        return self.secret.read_text().strip() in text or SECRET_ROW in text

    def untouched(self) -> None:
        """Raise AssertionError if a file was written or the listener was contacted."""
        assert not self.outfile.exists(), f"{self.outfile} was written"
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.close()
        raise AssertionError("the engine connected to the listener (a URL was fetched)")

    def close(self) -> None:
        self.listener.close()
