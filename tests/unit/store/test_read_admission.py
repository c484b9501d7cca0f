"""Admission and limits of reads, and the reader user's grants: pure logic with plain values."""

from __future__ import annotations

import pytest

from infra.config import ReadSettings, Settings
from store.exceptions import ReadBusy
from store.reader import ReadLimits, ReadSlots
from store.reader_grants import render_reader_grants


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_caps_per_user_and_per_process() -> None:
    slots = ReadSlots(3, 2, timeout_s=30, clock=Clock())
    a1, a2 = slots.take("alice"), slots.take("alice")
    with pytest.raises(ReadBusy, match="at most 2") as busy:
        slots.take("alice")
    assert busy.value.retry_after_s == 1  # nothing measured yet
    slots.take("bob")
    with pytest.raises(ReadBusy, match="busy with 3 reads"):
        slots.take("carol")
    slots.give_back("alice", a1)
    assert slots.of("alice") == 1 and slots.in_flight == 2
    slots.take("carol")
    slots.give_back("alice", a2)
    assert slots.of("alice") == 0


def test_retry_after_follows_the_recent_read_time() -> None:
    clock = Clock()
    slots = ReadSlots(1, 1, timeout_s=30, clock=clock)
    for seconds in (4.0, 6.0):
        started = slots.take("alice")
        clock.now += seconds
        slots.give_back("alice", started)
    slots.take("alice")
    with pytest.raises(ReadBusy) as busy:
        slots.take("bob")
    assert busy.value.retry_after_s == 5
    slots.give_back("alice", clock.now - 500)  # a read that ran into the time limit
    slots.take("alice")
    with pytest.raises(ReadBusy) as busy:
        slots.take("bob")
    assert busy.value.retry_after_s == 30  # never more than the time limit


def test_readonly_is_set_after_the_limits_it_locks() -> None:
    limits = ReadLimits.from_settings(
        Settings(reads=ReadSettings(timeout_s=2.5, max_memory_mb=100, max_threads=2))
    )
    settings = limits.engine_settings()
    assert list(settings)[-1] == "readonly" and settings["readonly"] == 1
    assert settings["max_execution_time"] == 4  # the backstop, after the reader's own KILL
    assert settings["max_memory_usage"] == 100 << 20
    assert settings["max_threads"] == 2
    assert settings["max_result_rows"] == 10_000
    assert settings["result_overflow_mode"] == "break"


def test_grants_cover_the_metric_database_and_carry_no_password() -> None:
    statements = render_reader_grants(
        "https://vmpulse_reader:s3cret%21@ch.example:8443/metrics", ReadLimits()
    )
    text = "\n".join(statements)
    assert "s3cret" not in text
    assert "GRANT SELECT ON metrics.* TO vmpulse_reader" in statements
    assert "GRANT SELECT ON system.numbers TO vmpulse_reader" in statements
    assert not any(" ON *.* TO " in s for s in statements)
    assert "readonly = 1" in statements[0]
    import hashlib

    assert hashlib.sha256(b"s3cret!").hexdigest() in text


@pytest.mark.parametrize(
    "url",
    [
        "chdb:///tmp/x",
        "https://reader@h/db",  # no password
        "https://bad%20user:p@h/db",
        "https://reader:p@h/db;DROP",
        "https://reader:p@h/a.b",
    ],
)
def test_grants_refuse_names_that_are_not_plain(url: str) -> None:
    with pytest.raises(ValueError):
        render_reader_grants(url, ReadLimits())
