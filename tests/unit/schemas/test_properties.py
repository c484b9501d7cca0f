"""Property tests: whatever a guest writes, decoding ends in facts or one rejection, never an
exception (hypothesis prints the falsifying input and its seed on failure)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.dlq import Rejection
from schemas.normalize import normalize_line
from tests.support import examples as ex

VM = "3f0c9a52-6d7e-4b1a-9c1e-2b7f4e8d9a01"
T = 1_764_064_800.0
RX = dt.datetime.fromtimestamp(T, dt.UTC)
VALID = [ex.line(m) for _, m in ex.all_examples(VM, T)]

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(raw: bytes) -> list[Any] | Rejection:
    result = normalize_line(raw, VM, RX)
    assert isinstance(result, (list, Rejection))
    if isinstance(result, Rejection):
        assert result.reason and isinstance(result.detail, str)
    return result


@FAST
@given(st.binary(max_size=2048))
@example(b"\x00")
@example(b"{}")
@example(b'{"type":null}')
def test_random_bytes_never_raise(raw: bytes) -> None:
    outcome(raw)


@FAST
@given(st.sampled_from(VALID), st.data())
def test_truncated_lines_are_rejected(line: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(line) - 1))
    assert isinstance(outcome(line[:cut]), Rejection)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out += _paths(v, (*prefix, i))
    return out


@FAST
@given(st.sampled_from(ex.all_examples(VM, T)), st.data())
def test_mutated_valid_messages_never_raise(
    named: tuple[str, dict[str, Any]], data: st.DataObject
) -> None:
    msg = json.loads(json.dumps(named[1]))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(msg) if p]
        path = data.draw(st.sampled_from(paths))
        node = msg
        for key in path[:-1]:
            node = node[key]
        if data.draw(st.booleans()):
            node[path[-1]] = data.draw(json_values)
        elif isinstance(node, dict):
            del node[path[-1]]
    outcome(json.dumps(msg).encode())


@FAST
@given(st.sampled_from(VALID), st.data())
def test_flipped_bytes_never_raise(line: bytes, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(line) - 1))
    byte = data.draw(st.integers(0, 255))
    outcome(line[:pos] + bytes([byte]) + line[pos + 1 :])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200_000), st.sampled_from([b"[", b'{"a":']))
def test_deep_nesting_is_rejected(depth: int, opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    nested = opener * depth + b"1" + closer * depth
    result = outcome(
        b'{"type":"agent_event","severity":"info","message":"m","context":' + nested + b"}"
    )
    if depth > 16:
        assert isinstance(result, Rejection)
    outcome(nested)


@FAST
@given(
    st.one_of(
        st.integers(min_value=-(2**200), max_value=2**200),
        st.floats(allow_nan=False, allow_infinity=False),
        st.just("1e999"),
        st.just("-1e999"),
        st.just("123456789012345678901234567890.5"),
    ),
    st.sampled_from(
        [
            ("data", "system", "cpu", "usage_percent"),
            ("data", "system", "memory", "total_kb"),
            ("data", "system", "processes", 0, "id"),
            ("data", "system", "ports", 0, "port"),
            ("timestamp",),
        ]
    ),
)
def test_huge_numbers_never_raise(number: object, path: tuple[Any, ...]) -> None:
    msg = ex.d2_metrics(VM, T)
    node: Any = msg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "__N__"
    text = json.dumps(msg).replace(
        '"__N__"', str(number) if not isinstance(number, float) else repr(number)
    )
    outcome(text.encode())
