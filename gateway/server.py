"""The gateway's Engine.IO and Socket.IO servers: one heartbeat, caps and deadlines.

:class:`EngineServer` is python-engineio's server with
:class:`~gateway.engine.EngineSocket` sessions:

- pings, pong deadlines and the deadline for a Socket.IO CONNECT are kept by
  one heartbeat task for the whole server (gateway/deadlines.py), not a task
  per socket. A session that has not connected a namespace within
  ``connect_timeout_s`` (just opened, refused, or left by its namespace) is
  closed and counted.
- sessions that have not sent a CONNECT yet are counted (:attr:`EngineServer.waiting`)
  so that the namespace's connection cap counts them with the connected ones;
  and every session, whatever its state, counts against ``max_sessions``:
  past it the handshake itself is refused (HTTP 503), so sessions that never
  connect (or were refused) cannot pile up.

:class:`SocketIOServer` plugs it under python-socketio, keeps only the
handshake fields that the namespace reads of each session's environ, and
uses :class:`RoomManager`, which knows each connection's rooms, so that a
disconnect or a room lookup does not scan every room of the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import engineio
import msgspec
import socketio
from aiohttp import web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet

from gateway.deadlines import Deadlines
from gateway.dispatch import ClientEventServer
from gateway.engine import PING, EngineSocket, Flusher, Frame
from gateway.stats import GatewayStats
from gateway.transport import checked_translate_request

__all__ = [
    "HEARTBEAT_TICK_S",
    "TOO_MANY_SESSIONS",
    "EngineServer",
    "RoomManager",
    "SocketIOServer",
]

log = logging.getLogger(__name__)

HEARTBEAT_TICK_S = 0.5
"""Resolution of pings, pong deadlines and CONNECT deadlines."""
TOO_MANY_SESSIONS = "Too many connections"

# The environ keys a session keeps after its handshake: what the namespace reads
# (token header, transport) and what a log line may want. The full environ holds
# every request header and is the biggest per-session object python-socketio keeps.
_ENVIRON_KEYS = (
    "REQUEST_METHOD",
    "QUERY_STRING",
    "PATH_INFO",
    "REMOTE_ADDR",
    "HTTP_AUTHORIZATION",
    "HTTP_ORIGIN",
    "HTTP_USER_AGENT",
    "HTTP_X_FORWARDED_FOR",
)
_encode = msgspec.json.Encoder().encode

# The request headers engine.io, python-socketio and the namespace read; the
# environ of a websocket's handshake lives as long as the websocket.
_HEADERS = {
    name: "HTTP_" + name.upper().replace("-", "_")
    for name in (
        "Host",
        "Origin",
        "Upgrade",
        "Connection",
        "Authorization",
        "Accept-Encoding",
        "Access-Control-Request-Method",
        "Access-Control-Request-Headers",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "User-Agent",
    )
}


def _translate_request(request: web.Request) -> dict[str, Any]:
    """engine.io's aiohttp environ, with only the fields something here reads."""
    environ: dict[str, Any] = {
        "wsgi.input": request.content,
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query_string or "",
        "PATH_INFO": request.path,
        "REMOTE_ADDR": "127.0.0.1",
        "aiohttp.request": request,
    }
    headers = request.headers
    for name, key in _HEADERS.items():
        value = headers.get(name)
        if value is not None:
            environ[key] = value
    for name, key in (("Content-Type", "CONTENT_TYPE"), ("Content-Length", "CONTENT_LENGTH")):
        value = headers.get(name)
        if value is not None:
            environ[key] = value
    environ["wsgi.url_scheme"] = environ.get("HTTP_X_FORWARDED_PROTO", "http")
    return environ


class EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server with :class:`EngineSocket` sessions and one heartbeat.

    Settings beyond engine.io's: ``max_sessions`` (the hard ceiling on
    sessions in any state), ``outbox_limit`` (bytes per session),
    ``connect_timeout_s``. :attr:`waiting` counts the sessions that have not
    sent a Socket.IO CONNECT yet. Also remembers the tasks it starts so that
    the service's stop can cancel them.
    """

    def __init__(
        self,
        *args: Any,
        max_sessions: int = 10_000,
        outbox_limit: int = 4 * 1024 * 1024,
        connect_timeout_s: float = 5.0,
        stats: GatewayStats | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs["monitor_clients"] = False  # the heartbeat task replaces engine.io's
        super().__init__(*args, **kwargs)
        self.background_tasks: set[asyncio.Future[Any]] = set()
        # A copy: the driver table is module-level and shared with other servers.
        # Counts input that is not Engine.IO (set by gateway.dispatch.ClientEventServer);
        # polling bodies are checked before engine.io decodes them (gateway/transport.py)
        self.on_malformed: Callable[[], None] = lambda: None
        self._async = {
            **self._async,  # type: ignore[has-type]
            "translate_request": checked_translate_request(
                _translate_request, lambda: self.on_malformed()
            ),
        }
        self.max_sessions = max_sessions
        self.waiting = 0
        self.outbox_limit = outbox_limit
        self.stats = stats if stats is not None else GatewayStats()
        self.flusher = Flusher()
        self.is_admitted: Callable[[str], bool] = lambda sid: True
        self.farewell: eio_packet.Packet | None = None
        """Written to a slow consumer before it is dropped (set by the Socket.IO layer)."""
        self._pings: Deadlines[EngineSocket] = Deadlines(self.ping_interval)
        self._pongs: Deadlines[EngineSocket] = Deadlines(self.ping_timeout)
        self._connects: Deadlines[EngineSocket] = Deadlines(connect_timeout_s)
        self._heartbeat: asyncio.Future[Any] | None = None

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        task = super().start_background_task(target, *args, **kwargs)
        self.background_tasks.add(task)
        task.add_done_callback(self.background_tasks.discard)
        return task

    async def _handle_connect(
        self, environ: dict[str, Any], transport: str, jsonp_index: int | None = None
    ) -> Any:
        """engine.io's handshake, with the session cap and an :class:`EngineSocket`."""
        if len(self.sockets) >= self.max_sessions:
            self.stats.connections_refused.labels("process_limit").inc()
            return {
                "status": "503 SERVICE UNAVAILABLE",
                "headers": [("Content-Type", "application/json")],
                "response": eio_packet.Packet.json.dumps({"message": TOO_MANY_SESSIONS}).encode(),
            }
        if self._heartbeat is None:
            self._heartbeat = self.start_background_task(self._beat)
        sid = self.generate_id()
        sock = EngineSocket(self, sid, self.outbox_limit)
        self.sockets[sid] = sock
        self.waiting += 1
        handshake = {
            "sid": sid,
            "upgrades": self._upgrades(sid, transport),
            "pingTimeout": int(self.ping_timeout * 1000),
            "pingInterval": int(self.ping_interval + self.ping_interval_grace_period) * 1000,
            "maxPayload": self.max_http_buffer_size,
        }
        sock.push(Frame(eio_packet.OPEN, _encode(handshake).decode()))
        del handshake  # this frame lives as long as a websocket: keep it small
        ret = await self._trigger_event("connect", sid, environ, run_async=False)
        if ret is not None and ret is not True:
            self.forget(sock)
            return self._unauthorized(ret or None)
        now = time.monotonic()
        sock.ping_stamp = self._pings.set(sock, now)
        sock.connect_stamp = self._connects.set(sock, now)
        if transport == "websocket":
            # engine.io checked that this is an upgrade request.
            ret = await sock.serve_websocket(environ)
            if sock.closed:
                self.forget(sock)
            return ret
        sock.connected = True
        try:
            return self._ok(await sock.poll(), jsonp_index=jsonp_index)
        except eio_exceptions.QueueEmpty:
            return self._bad_request()

    def forget(self, sock: EngineSocket) -> None:
        """A closed session leaves the table at once, so it stops counting against the caps."""
        if self.sockets.get(sock.sid) is sock:
            del self.sockets[sock.sid]
            self.knocked(sock)

    def knocked(self, sock: EngineSocket) -> None:
        """The session sent its first Socket.IO CONNECT (or left): it no longer waits."""
        if not sock.knocked:
            sock.knocked = True
            self.waiting -= 1

    def expect_connect(self, sid: str) -> None:
        """(Re)start the CONNECT deadline of a session that has no namespace now."""
        sock = self.sockets.get(sid)
        if sock is not None and not (sock.closed or sock.closing):
            sock.connect_stamp = self._connects.set(sock, time.monotonic())

    def heartbeat_answered(self, sock: EngineSocket) -> None:
        sock.ping_stamp = self._pings.set(sock, time.monotonic())

    def slow_consumer(self, sock: EngineSocket) -> None:
        """Called by a socket over its bound, from inside a send: end it in a task."""
        self.stats.slow_consumers.inc()
        log.info("socket %s does not read what it is sent: ending it (slow consumer)", sock.sid)
        self.start_background_task(self._end_slow_consumer, sock)

    async def _end_slow_consumer(self, sock: EngineSocket) -> None:
        if sock.closed:
            return
        if self.farewell is not None:
            sock._force(self.farewell)
        await sock.close(wait=False, reason=self.reason.TRANSPORT_ERROR)
        if sock._waiter is None and sock._transport is None:
            # Long polling: what is left is for a GET that may never come.
            sock.outbox.clear()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_TICK_S)
            try:
                await self._beat_once(time.monotonic())
            except Exception:
                log.exception("heartbeat failed")

    async def _beat_once(self, now: float) -> None:
        for sock, stamp in self._pings.due(now):
            if sock.closed or sock.ping_stamp != stamp or sock.last_ping is not None:
                continue
            sock.last_ping = self._pongs.set(sock, now)
            sock.push(PING)
        for sock, stamp in self._pongs.due(now):
            if not sock.closed and sock.last_ping == stamp:
                await sock.close(wait=False, reason=self.reason.PING_TIMEOUT)
        for sock, stamp in self._connects.due(now):
            if sock.closed or sock.connect_stamp != stamp or self.is_admitted(sock.sid):
                continue
            self.stats.connect_timeouts.inc()
            await sock.close(wait=False, reason=self.reason.TRANSPORT_ERROR)

    async def shutdown(self) -> None:
        await super().shutdown()
        for deadlines in (self._pings, self._pongs, self._connects):
            deadlines.clear()


class RoomManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's room table plus, per connection, the rooms it is in.

    The stock manager finds a connection's rooms by scanning every room of the
    namespace (one per connection, plus users' and VMs' rooms): a disconnect
    cost O(connections), a disconnect storm O(connections²). The index is a
    short list per connection (its own room, its user's, a few VMs').
    """

    def __init__(self) -> None:
        super().__init__()
        self._rooms_of: dict[str, dict[str, list[Any]]] = {}

    def basic_enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        rooms = self._rooms_of.setdefault(namespace, {}).setdefault(sid, [])
        if room not in rooms:
            rooms.append(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        rooms = self._rooms_of.get(namespace, {}).get(sid)
        if rooms is not None and room in rooms:
            rooms.remove(room)

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        """The stock disconnect, leaving only the rooms the connection is in."""
        if namespace not in self.rooms:
            return
        for room in list(self._rooms_of.get(namespace, {}).pop(sid, ())):
            super().basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return [r for r in self._rooms_of.get(namespace, {}).get(sid, ()) if r is not None]


class SocketIOServer(ClientEventServer):
    """python-socketio on :class:`EngineServer`.

    A session counts as admitted while it has a Socket.IO connection on ``/``.
    When that connection ends (client DISCONNECT, the server's disconnect) the
    session gets a new CONNECT deadline; a refused CONNECT does not restart the
    deadline set at the handshake, so retrying bad tokens cannot keep a
    session alive.
    """

    def __init__(self, *args: Any, engine_options: dict[str, Any] | None = None, **kwargs: Any):
        # python-socketio builds its engine.io server inside its own __init__.
        self._engine_options = dict(engine_options or {})
        kwargs.setdefault("client_manager", RoomManager())
        super().__init__(*args, **kwargs)
        self.eio.is_admitted = self._admitted

    def _engineio_server_class(self) -> Callable[..., EngineServer]:
        options = self._engine_options

        def make(*args: Any, **kwargs: Any) -> EngineServer:
            return EngineServer(*args, **options, **kwargs)

        return make

    def _admitted(self, eio_sid: str) -> bool:
        return self.manager.sid_from_eio_sid(eio_sid, "/") is not None

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        sock = self.eio.sockets.get(eio_sid)
        if sock is not None:
            self.eio.knocked(sock)
        await super()._handle_connect(eio_sid, namespace, data)

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await super()._handle_eio_connect(eio_sid, environ)
        self.environ[eio_sid] = {k: environ[k] for k in _ENVIRON_KEYS if k in environ}

    async def _handle_disconnect(
        self, eio_sid: str, namespace: str | None, reason: Any = None
    ) -> None:
        await super()._handle_disconnect(eio_sid, namespace, reason)
        self.eio.expect_connect(eio_sid)

    async def disconnect(
        self, sid: str, namespace: str | None = None, ignore_queue: bool = False
    ) -> None:
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace or "/")
        await super().disconnect(sid, namespace, ignore_queue)
        if eio_sid is not None:
            self.eio.expect_connect(eio_sid)
