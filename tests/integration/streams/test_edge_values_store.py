"""Whatever the worker accepts, the store takes: edge values of every field, inserted into chDB.

The worker retries a batch whose insert failed until it succeeds (streams/ingest.py): right
for a store that is down, but a line that passed validation and that ClickHouse then
refused would stall storage for every VM behind it, for good. So the schemas' bounds
(schemas/limits.py) must be at least as tight as the columns' types (store/sql). This
attacks that from the outside: each field of every example message of both dialects, in
turn, set to the edges of the JSON values a guest can write (integers past every
unsigned and signed width, floats past Float32 and at the subnormals, NUL and astral
characters, strings at and past the length limits, timestamps outside DateTime64's
range), through the worker's own decoding (``process_batch``) and into the session's
chDB through clickhouse-connect, one insert per table as the worker makes them.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import struct
import uuid
from collections.abc import Iterator
from typing import Any

from schemas.limits import BLOB_MAX, NAME_MAX, TEXT_MAX
from store.clickhouse import ClickHouseStore
from streams.pipeline import TABLE_COLUMNS, RawRecord, process_batch
from streams.rows import Row
from tests.support import examples as ex

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
T = NOW.timestamp()

INTS = [
    -1, 2**8, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1,
    2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**31) - 1, -(2**63) - 1, 10**30,
]  # fmt: skip
FLOATS = [-0.0, 5e-324, 1e-300, 3.4e38, 3.5e38, 1e19, 1e308, -1e308, -273.15, 1e12 + 1]
TIMES = [
    0, 1e10, T * 1000, T * 1e6, T * 1e9, 253402300800, 10413792000, -62135596800,
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2262-04-11T23:47:17Z",
    "2300-01-01T00:00:00Z", "1899-12-31T23:59:59Z", "1969-12-31T23:59:59.999999999Z",
    "2026-13-45T99:99:99Z", NOW.isoformat().replace("+00:00", "+14:00"),
]  # fmt: skip
STRINGS = [
    "", "\u0000", "a\u0000b", "\U0001f600" * 70, "é" * NAME_MAX, "a" * NAME_MAX,
    "a" * (NAME_MAX + 1), "a" * TEXT_MAX, "a" * (TEXT_MAX + 1), "\\N", "\t\n\r",
    "'); DROP TABLE system_metrics; --", "18446744073709551616", "NaN", "-Infinity",
]  # fmt: skip


Path = tuple[str | int, ...]


def _leaves(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every scalar of a message, with its path (the first two items of each list)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:2]):
            yield from _leaves(item, (*path, i))
    else:
        yield path, value


def _with(message: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(message)
    parent: Any = changed
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return changed


def _candidates(value: Any) -> list[Any]:
    """Edge values for a field: of its own JSON type first, then of the others a guest may send."""
    if isinstance(value, str):
        return [*STRINGS, *TIMES, 0, 1.5, None]
    if isinstance(value, bool) or value is None:
        return [0, 1, "x", 2**64, None]
    return [*INTS, *FLOATS, *TIMES, "1", None]


def edge_lines(vm_id: str) -> list[tuple[str, bytes]]:
    """(what was changed, the line) for each field of each example set to each edge value."""
    blob = b'{"type":"x","data":"' + b"a" * BLOB_MAX + b'"}'
    out: list[tuple[str, bytes]] = [("an unknown type with a big body", blob)]
    for name, message in ex.all_examples(vm_id, T):
        for path, value in _leaves(message):
            for edge in _candidates(value):
                changed = _with(message, path, edge)
                text = json.dumps(changed, separators=(",", ":"), ensure_ascii=False)
                where = f"{name} {'.'.join(map(str, path))} = {edge!r:.60}"
                out.append((where, text.encode()))
    return out


async def _insert(store: ClickHouseStore, table: str, rows: list[Row]) -> None:
    await store.insert(table, rows, TABLE_COLUMNS[table], token=None)


async def test_every_accepted_edge_value_is_stored(chdb_store: ClickHouseStore) -> None:
    vm_id = str(uuid.uuid4())
    lines = edge_lines(vm_id)
    received = str(int(T * 1000)).encode()
    records = [
        RawRecord("agent.raw", 0, offset, vm_id.encode(), line, {"received_at": received})
        for offset, (_, line) in enumerate(lines)
    ]
    result = process_batch(records)
    accepted = len(result.activity)
    # both kinds are many: the edges reach past the schemas' bounds and stay within them
    assert accepted > 2_000, accepted
    assert len(result.rejects) > 2_000, len(result.rejects)
    assert accepted + len(result.rejects) == len(lines)

    for table, rows in result.rows.items():
        if not rows:
            continue
        try:
            await _insert(chdb_store, table, rows)
        except Exception as exc:
            culprit = await _first_refused(chdb_store, table, records, lines)
            raise AssertionError(f"{table} refused an accepted line: {culprit}") from exc
        # stored as given: ClickHouse wraps an integer past its column's width (65,536 in a
        # UInt16 is 0) and turns a float past Float32's range into inf, without an error
        columns = TABLE_COLUMNS[table]
        types = await _column_types(chdb_store, table)
        got = await chdb_store.query(
            f"SELECT {', '.join(columns)} FROM {table} WHERE vm_id = {{vm:String}}",
            {"vm": vm_id},
            max_rows=len(rows) + 1,
        )
        assert len(got["rows"]) == len(rows), table
        expected = sorted(repr(_as_stored(row, columns, types)) for row in rows)
        stored = sorted(repr(tuple(row)) for row in got["rows"])
        missing = sorted(set(expected) - set(stored))
        assert not missing, f"{table}: {len(missing)} rows not stored as given, e.g. {missing[0]}"
        assert expected == stored, table


async def _column_types(store: ClickHouseStore, table: str) -> dict[str, str]:
    got = await store.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
        "AND table = {table:String}",
        {"table": table},
    )
    return {name: type_ for name, type_ in got["rows"]}


def _as_stored(row: Row, columns: tuple[str, ...], types: dict[str, str]) -> tuple[Any, ...]:
    """A row as reading it back must show it (the store's query gives JSON-like values)."""
    return tuple(_value(v, types[c]) for v, c in zip(row, columns, strict=True))


def _value(value: Any, type_: str) -> Any:
    for wrapper in ("LowCardinality(", "Nullable("):
        if type_.startswith(wrapper):
            return None if value is None else _value(value, type_[len(wrapper) : -1])
    if type_.startswith("Array("):
        return [_value(item, type_[len("Array(") : -1]) for item in value]
    if type_.startswith("DateTime64(3"):
        at = value.astimezone(dt.UTC).replace(tzinfo=None)
        return at.replace(microsecond=at.microsecond // 1000 * 1000).isoformat()
    if type_ == "Float32":
        try:
            return struct.unpack("<f", struct.pack("<f", value))[0]
        except OverflowError:
            return f"{value!r} is past Float32"
    if type_ == "Float64":
        return float(value)
    return value


async def _first_refused(
    store: ClickHouseStore, table: str, records: list[RawRecord], lines: list[tuple[str, bytes]]
) -> str:
    """The first line whose rows alone the store refuses: what to tell the developer."""
    for record, (where, _) in zip(records, lines, strict=True):
        rows = process_batch([record]).rows[table]
        if not rows:
            continue
        try:
            await _insert(store, table, rows)
        except Exception as exc:
            return f"{where}: {exc}"
    return "no single line is refused alone"
