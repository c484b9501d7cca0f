"""The dashboard's two server parts on a running gateway: its files at ``/`` and the admin overview.

DLQ records are produced to the test's own ``agent.dlq`` on the real broker,
as the worker writes them; the overview must count them by reason. The
dashboard files are the ones ``make`` builds into gateway/static.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.dashboard import STATIC_DIR
from infra.config import Settings
from schemas.dlq import DlqOrigin, Reason, Rejection, encode_dlq_record, make_dlq_record
from schemas.topics import Topics
from tests.integration.gateway.harness import DIRECTORY, put_directory, running, token
from tests.support.kafka import produce

pytestmark = pytest.mark.integration


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers or {}) as resp:
        body = await (resp.json() if resp.content_type == "application/json" else resp.text())
        return resp.status, body, resp.headers


def _dlq_record(reason: Reason, vm_id: str) -> tuple[bytes, bytes]:
    origin = DlqOrigin(topic="agent.raw", partition=0, offset=1, vm_id=vm_id)
    record = make_dlq_record(b"{broken", Rejection(reason.value, "test"), origin)
    return vm_id.encode(), encode_dlq_record(record)


async def test_admin_overview_counts_dlq_reasons_and_refuses_non_admins(
    settings: Settings, topics_ready: Topics
) -> None:
    await put_directory(settings, *DIRECTORY)
    await produce(
        settings,
        topics_ready.agent_dlq,
        [
            _dlq_record(Reason.INVALID_JSON, "vm-a"),
            _dlq_record(Reason.INVALID_JSON, "vm-b"),
            _dlq_record(Reason.VM_MISMATCH, "vm-a"),
        ],
    )
    async with running(settings) as gw:
        url = f"{gw.url}/api/admin/overview"
        status, body, _ = await _get(url, {"Authorization": f"Bearer {token(settings, 'root')}"})
        assert status == 200, body
        assert body["dlq"]["counts"] == {"invalid_json": 2, "vm_mismatch": 1}
        assert body["dlq"]["scanned"] == 3
        assert body["dlq"]["error"] is None
        assert set(body["gateway"]) >= {"connections", "eventsIn", "eventsOut", "consumerLag"}
        assert body["deliveries"] == {}

        status, body, _ = await _get(url, {"Authorization": f"Bearer {token(settings, 'alice')}"})
        assert (status, body) == (403, {"error": "Admin role required"})
        status, body, _ = await _get(url)
        assert (status, body) == (401, {"error": "Authentication token required"})
        status, body, _ = await _get(url, {"Authorization": "Bearer not-a-jwt"})
        assert (status, body) == (401, {"error": "Authentication failed"})


async def test_the_dashboard_is_served_with_a_strict_policy(
    settings: Settings, topics_ready: Topics
) -> None:
    assert (STATIC_DIR / "index.html").is_file(), "run `make dashboard` (the install step)"
    await put_directory(settings, *DIRECTORY)
    async with running(settings) as gw:
        status, page, headers = await _get(f"{gw.url}/")
        assert status == 200
        assert headers["Content-Type"].startswith("text/html")
        assert 'src="assets/app.js"' in page
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        status, script, headers = await _get(f"{gw.url}/assets/app.js")
        assert status == 200 and headers["Content-Type"].startswith("text/javascript")
        assert "metricsUpdate" in script, "the bundle carries the client"
        status, _, headers = await _get(f"{gw.url}/assets/app.css")
        assert status == 200 and headers["Content-Type"].startswith("text/css")
        # Only the build's own files: no other name, no way out of the folder.
        for path in ("/assets/nothing.js", "/assets/index.html", "/assets/..%2Fdashboard.py"):
            status, _, _ = await _get(f"{gw.url}{path}")
            assert status == 404, path
