"""The lag of a topic from librdkafka's statistics JSON (infra/group_reader.py)."""

from __future__ import annotations

import json

from infra.group_reader import topic_lags


def _stats(partitions: dict[str, int]) -> str:
    parts = {key: {"partition": int(key), "consumer_lag": lag} for key, lag in partitions.items()}
    return json.dumps({"name": "c#1", "topics": {"raw": {"topic": "raw", "partitions": parts}}})


def test_known_lags_add_up_and_unknown_ones_are_left_out() -> None:
    # "-1" is librdkafka's internal UA partition; -1 a lag it does not know (not fetched,
    # nothing committed)
    stats = _stats({"0": 5, "1": 0, "2": -1, "-1": 7})
    assert topic_lags(stats, ["raw", "other"]) == {"raw": 5}


def test_a_topic_without_a_known_lag_has_none() -> None:
    assert topic_lags(_stats({"0": -1, "1": -1}), ["raw"]) == {}
    assert topic_lags(json.dumps({"name": "c#1"}), ["raw"]) == {}
