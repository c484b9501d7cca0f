"""``GET /api/admin/overview``: what an operator's dashboard shows, in one admin-only call.

Delivery figures come from this gateway's own counters (``GatewayStats``), so
they describe this instance, like ``/metrics`` and ``/debug/deliveries``. DLQ
counts by reason are read from ``agent.dlq`` itself (the last
``DLQ_SCAN_PER_PARTITION`` records of each partition, as ``vmpulse dlq`` does),
at most once per ``DLQ_CACHE_S`` whatever the number of dashboards polling,
and never with a consumer group, so looking disturbs nothing.

Same identity rule as the rest of the API: a Bearer JWT, the role from the
directory; 401 with the refusal's message, 403 ``Admin role required``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from gateway.auth import TokenPolicy, bearer_token, verify_token
from gateway.exceptions import AuthError, UnknownUser
from gateway.stats import GatewayStats
from infra.dlq_reader import Summary
from schemas.directory import Directory

__all__ = ["DLQ_CACHE_S", "DLQ_SCAN_PER_PARTITION", "AdminOverview", "DlqCounts"]

log = logging.getLogger(__name__)

DLQ_SCAN_PER_PARTITION = 10_000
DLQ_CACHE_S = 10.0
DLQ_READ_TIMEOUT_S = 15.0
_encode = msgspec.json.Encoder().encode

DlqReader = Callable[[int], Awaitable[Summary]]
"""``await read(max_per_partition)`` -> the last records of every DLQ partition, counted."""

# (metric name in the gateway's registry, key in the answer)
_GATEWAY_FIGURES = (
    ("vmpulse_gateway_connections", "connections"),
    ("vmpulse_gateway_events_in_total", "eventsIn"),
    ("vmpulse_gateway_events_out_total", "eventsOut"),
    ("vmpulse_gateway_deliveries_failed_total", "deliveriesFailed"),
    ("vmpulse_gateway_consumer_lag", "consumerLag"),
    ("vmpulse_gateway_resume_hits_total", "resumeHits"),
    ("vmpulse_gateway_resume_misses_total", "resumeMisses"),
    ("vmpulse_gateway_replayed_events_total", "replayedEvents"),
    ("vmpulse_gateway_client_events_rate_limited_total", "clientEventsRateLimited"),
)


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


class DlqCounts:
    """DLQ counts by reason, read at most once per ``ttl_s`` (one read in flight at a time)."""

    def __init__(self, read: DlqReader, *, ttl_s: float = DLQ_CACHE_S) -> None:
        self._read = read
        self._ttl_s = ttl_s
        self._lock = asyncio.Lock()
        self._value: dict[str, Any] | None = None
        self._at = 0.0

    async def get(self) -> dict[str, Any]:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self._ttl_s:
                self._value = await self._fresh()
                self._at = time.monotonic()
            return self._value

    async def _fresh(self) -> dict[str, Any]:
        read_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        body: dict[str, Any] = {
            "counts": {},
            "scanned": 0,
            "scanLimitPerPartition": DLQ_SCAN_PER_PARTITION,
            "readAt": read_at,
            "error": None,
        }
        try:
            summary = await asyncio.wait_for(self._read(DLQ_SCAN_PER_PARTITION), DLQ_READ_TIMEOUT_S)
        except Exception as exc:
            # The rest of the overview is still worth showing; say what is missing.
            log.warning("reading the DLQ for the admin overview failed: %r", exc)
            body["error"] = "DLQ not readable right now"
            return body
        body["counts"] = summary.counts
        body["scanned"] = summary.scanned
        return body


class AdminOverview:
    """The handler of ``GET /api/admin/overview``."""

    def __init__(
        self,
        *,
        directory: Directory,
        policy: TokenPolicy,
        stats: GatewayStats,
        dlq: DlqCounts,
    ) -> None:
        self._directory = directory
        self._policy = policy
        self._stats = stats
        self._dlq = dlq

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/admin/overview", self.overview)]

    def _refusal(self, request: web.Request) -> web.Response | None:
        try:
            token = bearer_token(request.headers.get("Authorization"))
            identity = verify_token(token, self._policy)
            user = self._directory.users.get(identity.user_id)
            if user is None:
                raise UnknownUser()
        except AuthError as exc:
            return _json({"error": str(exc)}, 401)
        if not user.is_admin:
            return _json({"error": "Admin role required"}, 403)
        return None

    async def overview(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        self._stats.exposition()  # refreshes the lag gauge
        registry = self._stats.registry
        gateway = {key: int(registry.get_sample_value(name) or 0) for name, key in _GATEWAY_FIGURES}
        deliveries = {uid: d.as_dict() for uid, d in sorted(self._stats.per_user.items())}
        return _json({"gateway": gateway, "deliveries": deliveries, "dlq": await self._dlq.get()})
