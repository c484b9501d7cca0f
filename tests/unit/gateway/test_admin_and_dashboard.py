"""The admin overview's DLQ reading and the dashboard's file route, without a network.

Handlers are called with aiohttp's mocked requests; the DLQ reader is a plain
coroutine returning entries (the Kafka read itself is tested on the broker in
tests/integration/gateway/test_dashboard_and_admin.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.admin import DLQ_SCAN_PER_PARTITION, DlqCounts
from gateway.dashboard import dashboard_routes
from infra.dlq_reader import DlqEntry


def _entry(offset: int, reason: str) -> DlqEntry:
    return DlqEntry(
        partition=0, offset=offset, timestamp_ms=offset, key="vm", record={"reason": reason}
    )


async def test_dlq_counts_are_read_once_per_period_and_grouped_by_reason() -> None:
    calls: list[int] = []

    async def read(limit: int) -> list[DlqEntry]:
        calls.append(limit)
        return [_entry(1, "invalid_json"), _entry(2, "vm_mismatch"), _entry(3, "invalid_json")]

    counts = DlqCounts(read, ttl_s=60)
    first = await counts.get()
    second = await counts.get()
    assert first["counts"] == {"invalid_json": 2, "vm_mismatch": 1}
    assert first["scanned"] == 3 and first["error"] is None
    assert second is first
    assert calls == [DLQ_SCAN_PER_PARTITION], "a second look within the period reads nothing"


async def test_an_unreadable_dlq_is_said_so_and_read_again_next_time() -> None:
    attempts = 0

    async def read(limit: int) -> list[DlqEntry]:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("broker down")
        return [_entry(1, "too_large")]

    counts = DlqCounts(read, ttl_s=0)
    failed = await counts.get()
    assert failed["error"] == "DLQ not readable right now" and failed["counts"] == {}
    assert (await counts.get())["counts"] == {"too_large": 1}


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
