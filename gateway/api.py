"""HTTP API beside Socket.IO: health, the caller's VMs, metrics, admin SQL and debugging.

Same identity rules as the socket: a Bearer JWT names the user, the directory
says what they may see and whether they are an admin. Error bodies are
``{"error": message}`` with the same messages as Socket.IO refusals. A VM the
caller may not watch answers 404 "Access denied", the same as a VM that does
not exist, so ids cannot be probed.

Query parameters are declared, parsed strictly and documented in
:mod:`gateway.params` (a bad one is a 400 naming it, never a 500); the OpenAPI
document (:mod:`gateway.openapi`) is served at ``/openapi.json``.

History and admin SQL are reads (:class:`store.reader.Reader`): their own
connections, never the worker's, at most a few at once per process and per
user (429 with ``Retry-After`` past that), a per-user rate, and a time limit
that stops the statement in the engine (504). Admin SQL is judged by
:mod:`store.sql_policy` on the engine's own parse and runs ``readonly=1``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.auth import TokenPolicy, bearer_token, verify_token
from gateway.exceptions import AuthError, UnknownUser
from gateway.history import fetch_history, parse_time, plan_history
from gateway.limits import RATE_LIMITED, RateLimiter
from gateway.openapi import openapi_json
from gateway.params import HISTORY_FROM, HISTORY_STEP, HISTORY_TO, RECENT_COUNT, ParamError
from gateway.recent import RecentMetrics
from gateway.rooms import parse_vm_id
from gateway.stats import GatewayStats
from gateway.vmstate import VmStates
from schemas.directory import Directory, User
from store.exceptions import QueryRejected, ReadBusy, ReadError, ReadFailed, ReadTimeout
from store.reader import Reader

__all__ = ["GatewayApi", "cors_middleware", "json_errors_middleware"]

log = logging.getLogger(__name__)

_DENIED = "Access denied"
_ADMIN_ONLY = "Admin role required"
_JSON_ERROR_PATHS = ("/api/", "/debug/")
_encode = msgspec.json.Encoder().encode


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _retry(message: str, seconds: int) -> web.Response:
    response = _error(429, message)
    response.headers["Retry-After"] = str(seconds)
    return response


def cors_middleware(origins: Sequence[str] | None) -> Any:
    """Answer CORS for the HTTP API: the listed origins (or ``*``) only."""
    allowed = frozenset(origins or ())

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        ok = origin is not None and ("*" in allowed or origin in allowed)
        if request.method == "OPTIONS" and ok and request.path.startswith("/api/"):
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        if ok and request.path.startswith(("/api/", "/healthz", "/readyz")):
            assert origin is not None
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return middleware


@web.middleware
async def json_errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own refusals (404, 405, 413) in the API's shape: ``{"error": reason}``.

    Only under the API's paths; Socket.IO and anything else keep aiohttp's answers.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith(_JSON_ERROR_PATHS):
            raise
        response = _error(exc.status, exc.reason)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response


class GatewayApi:
    """The aiohttp handlers, bound to the gateway's state and an optional query store."""

    def __init__(
        self,
        *,
        directory: Directory,
        policy: TokenPolicy,
        is_live: Callable[[], bool],
        is_ready: Callable[[], bool],
        stats: GatewayStats,
        recent: RecentMetrics,
        vm_states: VmStates,
        connections: Callable[[], list[dict[str, Any]]],
        reader: Reader | None = None,
        reads_per_minute: int = 600,
    ) -> None:
        self._directory = directory
        self._policy = policy
        self._is_live = is_live
        self._is_ready = is_ready
        self._stats = stats
        self._recent = recent
        self._vm_states = vm_states
        self._connections = connections
        self._reader = reader
        self._reads_per_minute = reads_per_minute
        self._read_limiter = RateLimiter(reads_per_minute)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.metrics),
            web.get("/api/vms", self.list_vms),
            web.get("/api/vms/{vm_id}/metrics/recent", self.recent_metrics),
            web.get("/api/vms/{vm_id}/metrics", self.metric_history),
            web.post("/api/query", self.run_query),
            web.get("/debug/connections", self.debug_connections),
            web.get("/debug/deliveries", self.debug_deliveries),
            web.get("/openapi.json", self.openapi),
        ]

    def _caller(self, request: web.Request) -> User:
        """The directory user behind the request's Bearer token; raises AuthError."""
        token = bearer_token(request.headers.get("Authorization"))
        identity = verify_token(token, self._policy)
        user = self._directory.users.get(identity.user_id)
        if user is None:
            raise UnknownUser()
        return user

    def _watched_vm(self, request: web.Request) -> str | web.Response:
        """The VM of the path if the caller may watch it, else the refusal to send.

        An unknown VM and a VM the caller may not watch get the same 404.
        """
        try:
            user = self._caller(request)
        except AuthError as exc:
            return _error(401, str(exc))
        vm_id = parse_vm_id(request.match_info.get("vm_id"))
        if vm_id is None or not self._directory.may_watch(user.id, vm_id):
            return _error(404, _DENIED)
        return vm_id

    async def openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI 3.1 document of this API (also checked in as schemas/openapi.json)."""
        return web.Response(body=openapi_json(), content_type="application/json")

    async def healthz(self, request: web.Request) -> web.Response:
        if self._is_live():
            return _json({"status": "ok"})
        return _json({"status": "stopped"}, 503)

    async def readyz(self, request: web.Request) -> web.Response:
        if self._is_ready():
            return _json({"status": "ready"})
        return _json({"status": "catching up"}, 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._stats.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def list_vms(self, request: web.Request) -> web.Response:
        try:
            user = self._caller(request)
        except AuthError as exc:
            return _error(401, str(exc))
        vms = []
        for vm in self._directory.visible_vms(user.id):
            state = self._vm_states.get(vm.id)
            vms.append(
                {
                    "id": vm.id,
                    "name": vm.name,
                    "owner": vm.owner,
                    "department": vm.department,
                    "powerState": state.power_state,
                    "agentState": state.agent_state,
                    "stateUpdatedAt": state.updated_at,
                }
            )
        return _json({"vms": vms})

    async def recent_metrics(self, request: web.Request) -> web.Response:
        vm_id = self._watched_vm(request)
        if isinstance(vm_id, web.Response):
            return vm_id
        try:
            count = RECENT_COUNT.parse(request.query)
        except ParamError as exc:
            return _error(400, str(exc))
        assert count is not None  # it has a default
        samples = self._recent.latest(vm_id, count)
        return _json({"vmId": vm_id, "samples": samples})

    async def metric_history(self, request: web.Request) -> web.Response:
        vm_id = self._watched_vm(request)
        if isinstance(vm_id, web.Response):
            return vm_id
        try:
            user = self._caller(request)  # whose reads count: checked again, it is cheap
        except AuthError as exc:
            return _error(401, str(exc))
        now = dt.datetime.now(dt.UTC)
        try:
            end = parse_time(HISTORY_TO.get(request.query), now)
            start = parse_time(HISTORY_FROM.get(request.query), end - dt.timedelta(hours=1))
            plan = plan_history(start, end, HISTORY_STEP.parse(request.query))
        except ParamError as exc:
            return _error(400, str(exc))
        if self._reader is None:
            return _error(503, "No metric store configured")
        refusal = self._rate_limited(user)
        if refusal is not None:
            return self._counted("history", "rate_limited", refusal)
        try:
            async with self._reader.session(user.id) as read:
                body = await fetch_history(read.query, vm_id, plan)
        except ReadError as exc:
            if isinstance(exc, ReadFailed):
                log.warning("history of %s failed: %s", vm_id, exc)
                return self._counted("history", "failed", _error(502, "metric store failed"))
            return self._refused("history", exc)
        except Exception:
            log.exception("history of %s failed", vm_id)
            return self._counted("history", "failed", _error(502, "metric store failed"))
        return self._counted("history", "ok", _json(body))

    async def run_query(self, request: web.Request) -> web.Response:
        try:
            user = self._caller(request)
        except AuthError as exc:
            return _error(401, str(exc))
        if not user.is_admin:
            return _error(403, _ADMIN_ONLY)
        if self._reader is None:
            return _error(503, "No metric store configured")
        try:
            # The bytes, not request.json(): a bogus charset in Content-Type made
            # aiohttp's text decoding fail before the JSON was even looked at.
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            return _error(400, 'Body must be JSON: {"sql": "SELECT ..."}')
        sql = body.get("sql") if isinstance(body, dict) else None
        if not isinstance(sql, str):
            return _error(400, 'Body must be JSON: {"sql": "SELECT ..."}')
        refusal = self._rate_limited(user)
        if refusal is not None:
            return self._counted("query", "rate_limited", refusal)
        try:
            async with self._reader.session(user.id) as read:
                result = await read.admin_query(sql)
        except ReadError as exc:
            if isinstance(exc, ReadFailed):
                # The engine's own message (syntax error, unknown column) is what an
                # admin needs to fix the query; only its first line goes back.
                log.info("admin query by %s failed: %s", user.id, exc)
                return self._counted("query", "failed", _error(400, f"query failed: {exc}"))
            if isinstance(exc, QueryRejected):
                log.warning("admin query by %s refused: %s", user.id, exc)
            return self._refused("query", exc)
        except Exception:
            log.exception("admin query by %s failed", user.id)
            return self._counted("query", "failed", _error(502, "metric store failed"))
        return self._counted("query", "ok", _json(result))

    def _rate_limited(self, user: User) -> web.Response | None:
        """The per-user rate of reads (history and admin SQL share one allowance)."""
        if self._read_limiter.allow(user.id, "read"):
            return None
        per_minute = self._reads_per_minute
        return _retry(
            f"{RATE_LIMITED}: at most {per_minute} reads a minute",
            max(1, math.ceil(60 / per_minute)),
        )

    def _refused(self, kind: str, exc: ReadError) -> web.Response:
        if isinstance(exc, ReadBusy):
            return self._counted(kind, "busy", _retry(str(exc), exc.retry_after_s))
        if isinstance(exc, ReadTimeout):
            return self._counted(kind, "timeout", _error(504, str(exc)))
        return self._counted(kind, "rejected", _error(400, str(exc)))

    def _counted(self, kind: str, outcome: str, response: web.Response) -> web.Response:
        self._stats.reads.labels(kind, outcome).inc()
        return response

    async def _admin(self, request: web.Request) -> web.Response | None:
        try:
            user = self._caller(request)
        except AuthError as exc:
            return _error(401, str(exc))
        if not user.is_admin:
            return _error(403, _ADMIN_ONLY)
        return None

    async def debug_connections(self, request: web.Request) -> web.Response:
        refusal = await self._admin(request)
        if refusal is not None:
            return refusal
        conns = self._connections()
        return _json({"count": len(conns), "connections": conns})

    async def debug_deliveries(self, request: web.Request) -> web.Response:
        refusal = await self._admin(request)
        if refusal is not None:
            return refusal
        users = {uid: d.as_dict() for uid, d in sorted(self._stats.per_user.items())}
        return _json({"users": users})
