"""The admin overview's DLQ reading and the dashboard's file route, without a network.

Handlers are called with aiohttp's mocked requests; the DLQ reader is a plain
coroutine returning a summary (the Kafka read itself is tested on the broker in
tests/integration/gateway/test_dashboard_and_admin.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.admin import DLQ_SCAN_PER_PARTITION, DlqCounts
from gateway.dashboard import dashboard_routes
from infra.dlq_reader import RAW_SHOWN, Summary, Tally


@dataclass
class Rec:
    """A consumed agent.dlq record, as aiokafka gives it (what :class:`Tally` reads)."""

    value: bytes
    offset: int
    partition: int = 0
    key: bytes = b"vm"

    @property
    def timestamp(self) -> int:
        return 1_000 + self.offset


def _summary(*reasons: str, latest: int = 0) -> Summary:
    tally = Tally(latest)
    for offset, reason in enumerate(reasons):
        tally.add(Rec(json.dumps({"reason": reason, "raw": f"line {offset}"}).encode(), offset))
    return tally.summary()


async def test_dlq_counts_are_read_once_per_period_and_grouped_by_reason() -> None:
    calls: list[int] = []

    async def read(limit: int) -> Summary:
        calls.append(limit)
        return _summary("invalid_json", "vm_mismatch", "invalid_json")

    counts = DlqCounts(read, ttl_s=60)
    first = await counts.get()
    second = await counts.get()
    assert first["counts"] == {"invalid_json": 2, "vm_mismatch": 1}
    assert first["scanned"] == 3 and first["error"] is None
    assert second is first
    assert calls == [DLQ_SCAN_PER_PARTITION], "a second look within the period reads nothing"


async def test_an_unreadable_dlq_is_said_so_and_read_again_next_time() -> None:
    attempts = 0

    async def read(limit: int) -> Summary:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("broker down")
        return _summary("too_large")

    counts = DlqCounts(read, ttl_s=0)
    failed = await counts.get()
    assert failed["error"] == "DLQ not readable right now" and failed["counts"] == {}
    assert (await counts.get())["counts"] == {"too_large": 1}


def test_the_tally_keeps_only_the_newest_and_cuts_their_lines() -> None:
    # a guest may fill the DLQ with 4 MiB lines on purpose: counting 10,000 of them per
    # partition must not hold them (the overview once kept every record it scanned)
    tally = Tally(2)
    huge = "x" * (4 * 1024 * 1024)
    for offset in range(50):
        tally.add(Rec(json.dumps({"reason": "invalid_json", "raw": huge}).encode(), offset))
    tally.add(Rec(b"not json", 50))
    summary = tally.summary()
    assert summary.scanned == 51
    assert summary.counts == {"invalid_json": 50, "unreadable_dlq_record": 1}
    assert [e.offset for e in summary.latest] == [49, 50]
    kept = summary.latest[0].record
    assert kept["raw"] == "x" * RAW_SHOWN and kept["raw_length"] == len(huge)


def _handler(routes: list[web.RouteDef], path: str) -> Any:
    return next(r.handler for r in routes if r.path == path)


async def test_without_a_build_the_page_says_how_to_build_it(tmp_path: Path) -> None:
    index = _handler(dashboard_routes(tmp_path), "/")
    response = await index(make_mocked_request("GET", "/"))
    assert response.status == 503
    assert "make dashboard" in response.text


@pytest.mark.parametrize("name", ["secret.txt", ".env.js", "app.py", "missing.js"])
async def test_assets_are_only_the_builds_scripts_and_styles(tmp_path: Path, name: str) -> None:
    (tmp_path / "secret.txt").write_text("no")
    (tmp_path / ".env.js").write_text("no")
    (tmp_path / "app.py").write_text("no")
    asset = _handler(dashboard_routes(tmp_path), "/assets/{name}")
    request = make_mocked_request("GET", f"/assets/{name}", match_info={"name": name})
    with pytest.raises(web.HTTPNotFound):
        await asset(request)
