"""The Socket.IO namespace: who a socket is, which rooms it may join, and resume.

A socket is identified once, at connect, from its JWT and the directory; its
user id is kept server-side per sid and every later request (``subscribe``,
``metrics:recent``) is judged on that, never on anything in the request except
the VM id, which is only a lookup key. Handlers never raise on client input:
they answer ``{ok: false, error}`` so a malformed message cannot kill a task.

Access is re-judged when it changes, not only at connect: a socket is
disconnected when its token expires or its user leaves the directory, leaves
``admin`` when demoted, and leaves ``vm:<id>`` rooms it may no longer watch.

Connection lifecycle is the server's alone (gateway/dispatch.py): client
events arrive through :meth:`GatewayNamespace.client_event` and only the names
of the contract dispatch; ``connect``, ``disconnect`` and every other name are
refused (``{ok: false, error}`` when the client asked for an ack) and counted.

A client that connects with ``auth.lastPosition`` resumes (docs/SOCKETIO.md):
it is sent what it missed from the replay log and then joins its rooms, so
each event reaches it exactly once. The replay goes in chunks of at most
:data:`REPLAY_CHUNK` events, each under the outbound consumer's lock, with the
lock released (live events flowing) and the socket's send backlog drained
between chunks; the last chunk and the joining of the rooms share one hold.
Resumes are rate-limited per user (``resumes_per_minute``): past it the
client gets ``resync`` without a replay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NoReturn

import socketio

from gateway.auth import TokenPolicy, VerifiedTokens, handshake_token
from gateway.consumer import OutboundConsumer, positioned
from gateway.deliveries import route
from gateway.dispatch import ClientEventServer
from gateway.exceptions import AuthError, UnknownUser
from gateway.fanout import send_backlog, send_to_sid, send_to_sid_now
from gateway.limits import RATE_LIMITED, RateLimiter
from gateway.recent import RecentMetrics
from gateway.resume import Logged, ResumeStatus, advance
from gateway.rooms import parse_vm_id
from gateway.stats import GatewayStats
from schemas.directory import Directory, User
from schemas.events import ADMIN_ROOM, vm_room

__all__ = [
    "CONNECTED_EVENT",
    "DEFAULT_RECENT_COUNT",
    "RESERVED_EVENTS",
    "RESUMED_EVENT",
    "RESYNC_EVENT",
    "SESSION_ENDED_EVENT",
    "SLOW_CONSUMER",
    "TOO_MANY_CONNECTIONS",
    "TOO_MANY_USER_CONNECTIONS",
    "GatewayNamespace",
]

log = logging.getLogger(__name__)

CONNECTED_EVENT = "connected"
RESUMED_EVENT = "resumed"
RESYNC_EVENT = "resync"
SESSION_ENDED_EVENT = "session:ended"
SLOW_CONSUMER = "slow consumer"  # the session:ended reason of a socket dropped for not reading
DEFAULT_RECENT_COUNT = 10
MAX_RESUME_VMS = 1000
# A client may come back with a position this instance has not reached yet
# (it was on a faster instance); wait this long for it before giving up.
RESUME_AHEAD_WAIT_S = 5.0
# Events of the replay log examined per hold of the consumer's lock.
REPLAY_CHUNK = 500
# Between chunks a replay waits for the socket's backlog to fall below half its
# bound, at most this long; a client that does not read by then is dropped.
REPLAY_DRAIN_WAIT_S = 30.0
_RESYNC_REASONS = {
    ResumeStatus.GAP: "gap older than the resume window",
    ResumeStatus.AHEAD: "position not reached by this server",
    ResumeStatus.INVALID: "invalid position",
    ResumeStatus.RATE_LIMITED: "resume rate limit exceeded",
}
TOO_MANY_CONNECTIONS = "Too many connections"
TOO_MANY_USER_CONNECTIONS = "Too many connections for this user"
TOKEN_EXPIRED = "Token expired"
_DENIED = "Access denied"  # one answer for "no such VM" and "not yours": no probing
_BAD_VM_ID = "Invalid vmId"
_NOT_CONNECTED = "Not connected"
_LIFECYCLE = frozenset({"connect", "disconnect"})
# Names Socket.IO keeps for itself (socket.io-parser's RESERVED_EVENTS): a
# client sending one is attempting something, not making a typo.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
_RESERVED_EVENT = "Reserved event name"
_UNKNOWN_EVENT = "Unknown event"
_ClientHandler = Callable[..., Awaitable[dict[str, Any]]]


def _ack(ok: bool, error: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"ok": ok, "error": error, **extra}


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclasses.dataclass(slots=True)
class _Conn:
    user_id: str
    connected_at: str
    transport: str
    subscriptions: set[str] = dataclasses.field(default_factory=set)
    expiry: asyncio.TimerHandle | None = None


class GatewayNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """Handlers for ``/``: connect, subscribe, unsubscribe, metrics:recent, disconnect."""

    def __init__(
        self,
        *,
        directory: Directory,
        policy: TokenPolicy,
        namespace_of: Callable[[str], str],
        recent: RecentMetrics | None = None,
        stats: GatewayStats | None = None,
        max_connections: int = 10_000,
        max_connections_per_user: int = 20,
        client_events_per_minute: int = 100,
        resumes_per_minute: int = 30,
        waiting_sessions: Callable[[], int] = lambda: 0,
        namespace: str = "/",
    ) -> None:
        super().__init__(namespace)
        self._directory = directory
        self._policy = policy
        self._tokens = VerifiedTokens(policy)
        self._namespace_of = namespace_of
        self._recent = recent
        self._stats = stats if stats is not None else GatewayStats()
        self._max_connections = max_connections
        # Engine.IO sessions that have not sent a CONNECT yet hold a slot too.
        self._waiting_sessions = waiting_sessions
        self._max_per_user = max_connections_per_user
        self._limiter = RateLimiter(client_events_per_minute)
        # Not forgotten when a user's last socket closes (a reconnect loop would
        # get a full bucket each time); refilled buckets are pruned instead.
        self._resume_limiter = RateLimiter(resumes_per_minute)
        self._prune_resumes_at = 1024
        self.replay_chunk = REPLAY_CHUNK
        self._conns: dict[str, _Conn] = {}
        self._by_user: dict[str, set[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.consumer: OutboundConsumer | None = None
        # The allow-list: the only client events that reach a handler. Rate-limit
        # buckets are keyed by these names, so the table stays bounded.
        self._client_handlers: dict[str, _ClientHandler] = {
            "subscribe": self.on_subscribe,
            "unsubscribe": self.on_unsubscribe,
            "metrics:recent": self.on_metrics_recent,
        }

    @property
    def connected_sids(self) -> int:
        return len(self._conns)

    def user_of(self, sid: str) -> str | None:
        conn = self._conns.get(sid)
        return conn.user_id if conn else None

    def subscriptions_of(self, sid: str) -> frozenset[str]:
        conn = self._conns.get(sid)
        return frozenset(conn.subscriptions) if conn else frozenset()

    def connections(self) -> list[dict[str, Any]]:
        """For ``GET /debug/connections`` (admins only)."""
        return [
            {
                "sid": sid,
                "user": conn.user_id,
                "transport": conn.transport,
                "connectedAt": conn.connected_at,
                "subscriptions": sorted(conn.subscriptions),
            }
            for sid, conn in self._conns.items()
        ]

    def _set_server(self, server: object) -> None:
        # A plain socketio.AsyncServer sends client frames through trigger_event,
        # where a spoofed "disconnect" cannot be told from the real one.
        if not isinstance(server, ClientEventServer):
            raise TypeError("GatewayNamespace needs a gateway.dispatch.ClientEventServer")
        super()._set_server(server)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """The lifecycle door: python-socketio's own connect and disconnect, nothing else."""
        if event not in _LIFECYCLE:
            return self.server.not_handled
        return await super().trigger_event(event, *args)

    async def client_event(self, sid: str, event: str, args: tuple[Any, ...]) -> dict[str, Any]:
        """The client door: an event of the allow-list, rate-limited per user, else refused."""
        handler = self._client_handlers.get(event)
        if handler is None:
            reason = "reserved" if event in RESERVED_EVENTS else "unknown"
            self._stats.client_events_refused.labels(reason).inc()
            log.debug("refused client event %.64r from %s (%s)", event, sid, reason)
            return _ack(False, _RESERVED_EVENT if reason == "reserved" else _UNKNOWN_EVENT)
        conn = self._conns.get(sid)
        if conn is not None and not self._limiter.allow(conn.user_id, event):
            self._stats.client_events_limited.inc()
            return _ack(False, RATE_LIMITED)
        return await handler(sid, *args)

    def _refuse(self, sid: str, reason: str, message: str) -> NoReturn:
        self._stats.connections_refused.labels(reason).inc()
        log.info("refused socket %s: %s", sid, message)
        raise socketio.exceptions.ConnectionRefusedError(message)

    async def on_connect(self, sid: str, environ: Mapping[str, Any], auth: object = None) -> None:
        if len(self._conns) + self._waiting_sessions() >= self._max_connections:
            self._refuse(sid, "process_limit", TOO_MANY_CONNECTIONS)
        try:
            identity = self._tokens.verify(handshake_token(auth, environ))
            user = self._directory.users.get(identity.user_id)
            if user is None:
                raise UnknownUser()
        except AuthError as exc:
            self._refuse(sid, type(exc).__name__, str(exc))
        if len(self._by_user.get(user.id, ())) >= self._max_per_user:
            self._refuse(sid, "user_limit", TOO_MANY_USER_CONNECTIONS)
        query = environ.get("QUERY_STRING", "")
        transport = "websocket" if "transport=websocket" in str(query) else "polling"
        conn = _Conn(user_id=user.id, connected_at=_utc_now(), transport=transport)
        self._conns[sid] = conn
        self._by_user.setdefault(user.id, set()).add(sid)
        self._stats.connections.set(len(self._conns))
        if identity.expires_at is not None:
            delay = max(0.0, identity.expires_at - time.time())
            conn.expiry = asyncio.get_running_loop().call_later(delay, self._expired, sid)
        last = auth.get("lastPosition") if isinstance(auth, Mapping) else None
        if last is not None and self.consumer is not None:
            assert isinstance(auth, Mapping)
            allowed = self._resume_allowed(user.id)
            self._spawn(
                self._resume(sid, user, last, auth.get("vmIds"), allowed=allowed), f"resume-{sid}"
            )
            return
        for room in self._base_rooms(user):
            await self.enter_room(sid, room)
        position = self.consumer.log.position if self.consumer is not None else None
        # The CONNECT packet is queued after this handler returns, in the same step
        # of this task; a callback scheduled now runs after that step, so
        # `connected` follows CONNECT, as clients expect (no task needed for it).
        asyncio.get_running_loop().call_soon(self._greet, sid, user, position)

    def _base_rooms(self, user: User) -> list[str]:
        rooms = [self._namespace_of(user.id)]
        if user.is_admin:
            rooms.append(ADMIN_ROOM)
        return rooms

    def _greet(self, sid: str, user: User, position: str | None) -> None:
        greeting = {
            "message": "Connected to vmpulse",
            "namespace": self._namespace_of(user.id),
            "user": {"id": user.id, "name": user.name, "role": user.role},
            "timestamp": _utc_now(),
        }
        if position is not None:
            greeting["position"] = position
        send_to_sid_now(self.server, sid, CONNECTED_EVENT, greeting)

    def _resume_allowed(self, user_id: str) -> bool:
        limiter = self._resume_limiter
        if len(limiter) >= self._prune_resumes_at:
            limiter.prune()
            self._prune_resumes_at = max(1024, 2 * len(limiter))
        if limiter.allow(user_id, "resume"):
            return True
        self._stats.resumes_limited.inc()
        return False

    async def _resume(
        self, sid: str, user: User, last: object, vm_ids: object, *, allowed: bool = True
    ) -> None:
        consumer = self.consumer
        assert consumer is not None
        self._greet(sid, user, None)
        wanted = (
            [v for v in (parse_vm_id(x) for x in vm_ids[:MAX_RESUME_VMS]) if v is not None]
            if isinstance(vm_ids, list)
            else []
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESUME_AHEAD_WAIT_S
        cursor: tuple[int, ...] | None = None
        replayed = 0
        while True:
            ahead = False
            async with consumer.lock:
                conn = self._conns.get(sid)
                if conn is None:
                    return  # gone while we waited
                if not allowed:
                    await self._finish_resume(sid, conn, ResumeStatus.RATE_LIMITED, wanted, 0)
                    return
                self._stats.replay_chunks.inc()
                result = (
                    consumer.log.since(last, limit=self.replay_chunk)
                    if cursor is None
                    else consumer.log.since_offsets(cursor, limit=self.replay_chunk)
                )
                if result.status is ResumeStatus.AHEAD and loop.time() < deadline:
                    ahead = True
                elif result.status is not ResumeStatus.OK:
                    await self._finish_resume(sid, conn, result.status, wanted, replayed)
                    return
                else:
                    # Not in its rooms yet: events handled between chunks reach the
                    # socket through the log, after the cursor. A chunk stops early
                    # when the socket's backlog reaches half its bound; the chunk
                    # that ends the log, taken whole, is followed by the rooms in
                    # the same hold of the lock.
                    taken, sent = self._replay(sid, conn, result.entries, wanted)
                    replayed += sent
                    if taken == len(result.entries) and not result.more:
                        await self._finish_resume(sid, conn, result.status, wanted, replayed)
                        return
                    cursor = advance(result.start, result.entries[:taken])
            if ahead:
                try:
                    await asyncio.wait_for(consumer.wait_progress(), deadline - loop.time())
                except TimeoutError:
                    pass
            elif not await self._drained(sid):
                await self._end_session(sid, SLOW_CONSUMER)
                return

    def _resume_rooms(self, conn: _Conn, wanted: list[str]) -> tuple[User, list[str], set[str]]:
        """The user, the wanted VMs they may watch, and the rooms a resume fills."""
        user = self._directory.users.get(conn.user_id)
        if user is None:
            raise UnknownUser()
        allowed = [v for v in dict.fromkeys(wanted) if self._directory.may_watch(user.id, v)]
        return user, allowed, set(self._base_rooms(user)) | {vm_room(v) for v in allowed}

    def _replay(
        self, sid: str, conn: _Conn, entries: tuple[Logged, ...], wanted: list[str]
    ) -> tuple[int, int]:
        """Send ``entries``' deliveries for the socket's rooms-to-be.

        Returns (entries taken, deliveries sent): it stops after the entry that
        brought the socket's backlog to half its bound.
        """
        try:
            _, _, rooms = self._resume_rooms(conn, wanted)
        except UnknownUser:
            return 0, 0
        sent = 0
        for taken, entry in enumerate(entries, 1):
            if not entry.may_reach(rooms):
                continue  # not decoded: most of the log is other VMs' live updates
            for d in route(entry.event, self._directory, self._namespace_of):
                if d.room in rooms:
                    payload = positioned(d.payload, entry.position)
                    if not send_to_sid_now(self.server, sid, d.event, payload):
                        return taken, sent
                    sent += 1
            backlog = send_backlog(self.server, sid)
            if backlog is None or backlog[0] > backlog[1] // 2:
                return taken, sent
        return len(entries), sent

    async def _drained(self, sid: str) -> bool:
        """Wait until the socket's send backlog is below half its bound; False if it stays."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLAY_DRAIN_WAIT_S
        await asyncio.sleep(0)  # lets the engine write what the chunk queued
        while True:
            backlog = send_backlog(self.server, sid)
            if backlog is None:
                return True  # gone: the next chunk finds no connection
            used, limit = backlog
            if used <= limit // 2:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def _finish_resume(
        self, sid: str, conn: _Conn, status: ResumeStatus, wanted: list[str], replayed: int
    ) -> None:
        """Runs under the consumer lock, after the last chunk: the rooms, then the answer."""
        consumer = self.consumer
        assert consumer is not None
        try:
            _, allowed, rooms = self._resume_rooms(conn, wanted)
        except UnknownUser:
            await self.disconnect(sid)
            return
        if status is ResumeStatus.OK:
            self._stats.resume_hits.inc()
            self._stats.replayed.inc(replayed)
        else:
            self._stats.resume_misses.inc()
        for room in rooms:
            await self.enter_room(sid, room)
        conn.subscriptions.update(allowed)
        position = consumer.log.position
        denied = [v for v in dict.fromkeys(wanted) if v not in allowed]
        if status is ResumeStatus.OK:
            body = {"replayed": replayed, "position": position, "vmIds": allowed, "denied": denied}
            await send_to_sid(self.server, sid, RESUMED_EVENT, body)
        else:
            reason = _RESYNC_REASONS[status]
            body = {"reason": reason, "position": position, "vmIds": allowed, "denied": denied}
            await send_to_sid(self.server, sid, RESYNC_EVENT, body)

    async def on_disconnect(self, sid: str, reason: object = None) -> None:
        conn = self._conns.pop(sid, None)
        if conn is None:
            return
        if conn.expiry is not None:
            conn.expiry.cancel()
        sids = self._by_user.get(conn.user_id)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self._by_user[conn.user_id]
                self._limiter.forget(conn.user_id)
        self._stats.connections.set(len(self._conns))

    def _conn_and_vm(self, sid: str, data: object) -> tuple[_Conn, str] | dict[str, Any]:
        """The connection and the ``vmId`` it named, or the refusing ack."""
        conn = self._conns.get(sid)
        if conn is None:
            return _ack(False, _NOT_CONNECTED)
        vm_id = parse_vm_id(data.get("vmId") if isinstance(data, Mapping) else None)
        if vm_id is None:
            return _ack(False, _BAD_VM_ID)
        return conn, vm_id

    async def on_subscribe(self, sid: str, data: object = None, *_: object) -> dict[str, Any]:
        found = self._conn_and_vm(sid, data)
        if isinstance(found, dict):
            return found
        conn, vm_id = found
        if not self._directory.may_watch(conn.user_id, vm_id):
            return _ack(False, _DENIED)
        await self.enter_room(sid, vm_room(vm_id))
        conn.subscriptions.add(vm_id)
        return _ack(True)

    async def on_unsubscribe(self, sid: str, data: object = None, *_: object) -> dict[str, Any]:
        found = self._conn_and_vm(sid, data)
        if isinstance(found, dict):
            return found
        conn, vm_id = found
        if vm_id in conn.subscriptions:
            conn.subscriptions.discard(vm_id)
            await self.leave_room(sid, vm_room(vm_id))
        return _ack(True)

    async def on_metrics_recent(self, sid: str, data: object = None, *_: object) -> dict[str, Any]:
        conn = self._conns.get(sid)
        if conn is None:
            return _ack(False, _NOT_CONNECTED)
        if not isinstance(data, Mapping):
            return _ack(False, _BAD_VM_ID)
        vm_id = parse_vm_id(data.get("vmId"))
        if vm_id is None:
            return _ack(False, _BAD_VM_ID)
        if not self._directory.may_watch(conn.user_id, vm_id):
            return _ack(False, _DENIED)
        if self._recent is None:
            return _ack(False, "not implemented")
        count = data.get("count", DEFAULT_RECENT_COUNT)
        if isinstance(count, bool) or not isinstance(count, int):
            count = DEFAULT_RECENT_COUNT
        return _ack(True, vmId=vm_id, samples=self._recent.latest(vm_id, count))

    def _expired(self, sid: str) -> None:
        self._spawn(self._end_session(sid, TOKEN_EXPIRED), f"expire-{sid}")

    async def _end_session(self, sid: str, reason: str) -> None:
        if sid not in self._conns:
            return
        await send_to_sid(self.server, sid, SESSION_ENDED_EVENT, {"reason": reason})
        await self.disconnect(sid)

    async def apply_directory_change(self, key: str) -> int:
        """Re-judge the sockets a directory change may affect; returns rooms left/sockets ended.

        ``user:<id>`` deleted: its sockets are disconnected; changed: ``admin``
        follows the role. Any user or VM change re-checks ``vm:<id>`` rooms.
        """
        changed = 0
        kind, _, ident = key.partition(":")
        if kind == "user" and ident in self._by_user:
            user = self._directory.users.get(ident)
            for sid in list(self._by_user.get(ident, ())):
                if user is None:
                    await self._end_session(sid, "User not found")
                    changed += 1
                    continue
                in_admin = ADMIN_ROOM in self.rooms(sid)
                if user.is_admin and not in_admin:
                    await self.enter_room(sid, ADMIN_ROOM)
                elif not user.is_admin and in_admin:
                    await self.leave_room(sid, ADMIN_ROOM)
                    changed += 1
        if kind == "user":
            changed += await self.revoke_lost_access(self._by_user.get(ident, ()))
        elif kind == "vm":
            watching = [sid for sid, c in self._conns.items() if ident in c.subscriptions]
            changed += await self.revoke_lost_access(watching)
        return changed

    async def revoke_lost_access(self, sids: Iterable[str] | None = None) -> int:
        """Leave every ``vm:<id>`` room whose user may no longer watch the VM (of ``sids``)."""
        dropped = 0
        chosen = list(self._conns) if sids is None else list(sids)
        for sid in chosen:
            conn = self._conns.get(sid)
            if conn is None:
                continue
            for vm_id in list(conn.subscriptions):
                if not self._directory.may_watch(conn.user_id, vm_id):
                    conn.subscriptions.discard(vm_id)
                    await self.leave_room(sid, vm_room(vm_id))
                    dropped += 1
        return dropped

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("namespace task %s failed: %r", task.get_name(), task.exception())

    async def close(self) -> None:
        """Cancel the tasks and timers this namespace started and wait for them."""
        for conn in self._conns.values():
            if conn.expiry is not None:
                conn.expiry.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
