"""Strict HTTP parameters: every bad value is a ParamError with a message, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict

from gateway.params import HISTORY_FROM, HISTORY_STEP, RECENT_COUNT, ParamError, single


def _q(*pairs: tuple[str, str]) -> MultiDict[str]:
    return MultiDict(pairs)


def test_absent_gives_the_default_and_good_values_parse() -> None:
    assert RECENT_COUNT.parse(_q()) == 10
    assert HISTORY_STEP.parse(_q()) is None
    assert RECENT_COUNT.parse(_q(("count", "1"))) == 1
    assert RECENT_COUNT.parse(_q(("count", "10000"))) == 10_000
    assert RECENT_COUNT.parse(_q(("count", "007"))) == 7
    assert HISTORY_STEP.parse(_q(("step", "2678400"))) == 2_678_400


@pytest.mark.parametrize(
    "text",
    [
        *("", " 5", "5 ", "+5", "-1", "0", "10001", "1.5", "1e3", "NaN", "inf", "0x10", "五"),
        *("²", "١٢", "1_000", "9" * 5000, "1" + "0" * 4299),
    ],
)
def test_every_bad_count_is_refused_with_the_rule(text: str) -> None:
    with pytest.raises(ParamError, match="'count' must be a whole number from 1 to 10000"):
        RECENT_COUNT.parse(_q(("count", text)))


def test_a_repeated_parameter_is_refused() -> None:
    with pytest.raises(ParamError, match="'count' given more than once"):
        RECENT_COUNT.parse(_q(("count", "1"), ("count", "2")))
    with pytest.raises(ParamError, match="'from' given more than once"):
        HISTORY_FROM.get(_q(("from", "1"), ("from", "1")))
    assert single(_q(("other", "x")), "count") is None


@pytest.mark.parametrize("text", ["", "x" * 65, "2026-01-01T00:00:00Z\x00", "é", "\n"])
def test_text_parameters_are_printable_ascii_and_bounded(text: str) -> None:
    with pytest.raises(ParamError, match="'from' must be 1 to 64 printable ASCII"):
        HISTORY_FROM.get(_q(("from", text)))


@given(st.text(max_size=6000))
def test_any_text_is_a_number_in_bounds_or_a_param_error(text: str) -> None:
    try:
        value = RECENT_COUNT.parse(_q(("count", text)))
    except ParamError:
        return
    assert value is not None and 1 <= value <= 10_000 and str(value) == text.lstrip("0")


def test_the_document_states_the_same_bounds() -> None:
    doc = RECENT_COUNT.openapi()
    assert doc["schema"] == {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 10}
    assert doc["in"] == "query" and doc["name"] == "count"
