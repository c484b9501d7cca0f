"""HTTP API beside Socket.IO: health, the caller's VMs, and admin read-only SQL.

Same identity rules as the socket: a Bearer JWT names the user, the directory
says what they may see and whether they are an admin. Error bodies are
``{"error": message}`` with the same messages as Socket.IO refusals.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from aiohttp import web

from gateway.auth import DEFAULT_ALGORITHMS, bearer_token, verify_token
from gateway.exceptions import AuthError, QueryRejected, UnknownUser
from schemas.directory import Directory, User
from vmpulse.config import Secret

__all__ = ["MAX_SQL_LENGTH", "GatewayApi", "Query", "check_read_only"]

log = logging.getLogger(__name__)

Query = Callable[[str], Awaitable[dict[str, Any]]]
"""``await query(sql)`` -> ``{"columns": [...], "rows": [[...], ...]}``."""

MAX_SQL_LENGTH = 20_000
_READ_ONLY_VERBS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"})
_LEADING_NOISE = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/|\()*", re.DOTALL)
# Reads that reach outside the store (files, URLs, other servers, processes) or
# write files; ClickHouse's readonly setting does not stop all of them.
_FORBIDDEN = re.compile(
    r"\bINTO\s+OUTFILE\b"
    r"|\b(?:file|url|s3|s3Cluster|gcs|azureBlobStorage|hdfs|remote|remoteSecure|cluster"
    r"|clusterAllReplicas|mysql|postgresql|mongodb|redis|sqlite|jdbc|odbc|executable"
    r"|input|iceberg|deltaLake|hudi|urlCluster|fileCluster)\s*\(",
    re.IGNORECASE,
)
_encode = msgspec.json.Encoder().encode


def check_read_only(sql: str) -> str:
    """Return ``sql`` without a trailing ``;`` if it is one read-only statement.

    Deliberately conservative: any ``;`` inside the text (even in a string
    literal) is refused rather than parsed, because a wrong guess here runs a
    write. The store should also execute with ``readonly=1``; this is the
    first line, not the only one.
    """
    text = sql.strip()
    if not text:
        raise QueryRejected("empty query")
    if len(text) > MAX_SQL_LENGTH:
        raise QueryRejected(f"query longer than {MAX_SQL_LENGTH} characters")
    if text.endswith(";"):
        text = text[:-1].rstrip()
    if ";" in text:
        raise QueryRejected("only a single statement is allowed")
    body = _LEADING_NOISE.sub("", text, count=1)
    verb = re.match(r"[A-Za-z]+", body)
    if verb is None or verb.group(0).upper() not in _READ_ONLY_VERBS:
        raise QueryRejected("only SELECT, WITH, SHOW, DESCRIBE and EXPLAIN statements are allowed")
    if _FORBIDDEN.search(text):
        raise QueryRejected("table functions and INTO OUTFILE are not allowed")
    return text


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


class GatewayApi:
    """The aiohttp handlers, bound to the directory and an optional query store."""

    def __init__(
        self,
        *,
        directory: Directory,
        jwt_secret: Secret,
        is_ready: Callable[[], bool],
        query: Query | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
    ) -> None:
        self._directory = directory
        self._secret = jwt_secret
        self._is_ready = is_ready
        self._query = query
        self._algorithms = tuple(algorithms)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/api/vms", self.list_vms),
            web.post("/api/query", self.run_query),
        ]

    def _caller(self, request: web.Request) -> User:
        """The directory user behind the request's Bearer token; raises AuthError."""
        token = bearer_token(request.headers.get("Authorization"))
        identity = verify_token(token, self._secret, algorithms=self._algorithms)
        user = self._directory.users.get(identity.user_id)
        if user is None:
            raise UnknownUser()
        return user

    async def healthz(self, request: web.Request) -> web.Response:
        if self._is_ready():
            return _json({"status": "ok"})
        return _json({"status": "starting"}, 503)

    async def list_vms(self, request: web.Request) -> web.Response:
        try:
            user = self._caller(request)
        except AuthError as exc:
            return _error(401, str(exc))
        vms = [
            {"id": vm.id, "name": vm.name, "owner": vm.owner, "department": vm.department}
            for vm in self._directory.visible_vms(user.id)
        ]
        return _json({"vms": vms})

    async def run_query(self, request: web.Request) -> web.Response:
        try:
            user = self._caller(request)
        except AuthError as exc:
            return _error(401, str(exc))
        if not user.is_admin:
            return _error(403, "Admin role required")
        if self._query is None:
            return _error(503, "No metric store configured")
        try:
            body = await request.json(loads=msgspec.json.decode)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return _error(400, 'Body must be JSON: {"sql": "SELECT ..."}')
        sql = body.get("sql") if isinstance(body, dict) else None
        if not isinstance(sql, str):
            return _error(400, 'Body must be JSON: {"sql": "SELECT ..."}')
        try:
            statement = check_read_only(sql)
        except QueryRejected as exc:
            return _error(400, str(exc))
        try:
            result = await self._query(statement)
        except Exception as exc:
            # The store's own message (syntax error, unknown column) is what an
            # admin needs to fix the query; only its text goes back, truncated.
            log.info("admin query by %s failed: %s", user.id, type(exc).__name__)
            return _error(400, f"query failed: {str(exc)[:1000]}")
        return _json(result)
