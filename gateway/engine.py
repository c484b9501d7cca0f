"""Engine.IO sessions of the gateway: lean sockets that write straight to their transport.

python-engineio's ``AsyncSocket`` gives every connection an ``asyncio.Queue``,
a writer task woken once per packet (one ``send`` system call per frame), a
ping task sleeping 25 s, and a task plus a timer per received message. At
thousands of sockets those tasks and queues were most of the memory per
connection and much of the CPU at fan-out. :class:`EngineSocket` speaks the
same protocol (Engine.IO v4, both transports and the upgrade between them)
with ``__slots__`` and no task of its own:

- what it must send waits in an :class:`~gateway.outbox.Outbox` bounded in
  bytes. A websocket's packets are written by one flush per event-loop turn
  for all sockets that got something (:class:`Flusher`): the frames a socket
  got during a batch of outbound events leave in one ``write``, and a frame
  shared by a room is built once (:class:`Frame`). A transport that cannot
  take more (the peer does not read) makes the socket wait for it to drain,
  without a task until then; past the byte bound the session ends as a slow
  consumer: its backlog is dropped, a farewell packet and CLOSE are written,
  and the transport is aborted if the peer has not gone after
  :data:`CLOSE_GRACE_S`.
- the receive loop runs in the aiohttp request's own task, without a task
  and a timer per message; pings and the deadlines are the server's
  (gateway/server.py), one heartbeat for all sessions.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSMsgType, web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import payload as eio_payload

from gateway.outbox import Outbox, encode_frame
from gateway.socketio_internals import websocket_transport

__all__ = ["CLOSE_GRACE_S", "PING", "EngineSocket", "Flusher", "Frame"]

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 2.0
"""After the server closes a websocket, how long the peer has to read the goodbye and go."""

_MAX_WRITE_BATCH = 256 * 1024
"""About the most one write carries; a socket with this much waiting is written at once."""


class Frame(eio_packet.Packet):  # type: ignore[misc]
    """An Engine.IO packet that carries its websocket frame, built once.

    Sent to many sockets (a room's event, a ping), the frame bytes are shared.
    """

    def __init__(self, packet_type: int = eio_packet.NOOP, data: Any = None) -> None:
        super().__init__(packet_type, data)
        self.ws_frame = _build_frame(self)


def _build_frame(pkt: eio_packet.Packet) -> bytes:
    encoded = pkt.encode()
    if isinstance(encoded, bytes | bytearray):
        return encode_frame(bytes(encoded), binary=True)
    return encode_frame(encoded.encode("utf-8"))


def _frame_of(pkt: eio_packet.Packet) -> bytes:
    if type(pkt) is Frame:
        frame: bytes = pkt.ws_frame
        return frame
    return _build_frame(pkt)


PING = Frame(eio_packet.PING)


def _decode(data: str | bytes) -> eio_packet.Packet:
    """A received websocket message as an Engine.IO packet.

    A MESSAGE (nearly all of them) is taken as it is: engine.io's own decoder
    first tries it as JSON, which fails, for every message.
    """
    if isinstance(data, str) and data[:1] == "4":
        return eio_packet.Packet(eio_packet.MESSAGE, data[1:])
    return eio_packet.Packet(encoded_packet=data)


class Flusher:
    """Writes every socket that got packets this turn, once, after the turn's work."""

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[EngineSocket] = []
        self._scheduled = False

    def mark(self, sock: EngineSocket) -> None:
        self._dirty.append(sock)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for sock in dirty:
            try:
                sock.flush()
            except Exception:
                log.exception("writing to socket %s failed", sock.sid)


class EngineSocket:
    """One Engine.IO session: the interface python-engineio's server expects, lean.

    Public to engine.io: ``sid``, ``connected``, ``upgrading``, ``upgraded``,
    ``closing``, ``closed``, ``session``, :meth:`send`, :meth:`close`,
    :meth:`handle_get_request`, :meth:`handle_post_request`. Public to the
    gateway: :meth:`push` (synchronous send, used by fan-out), :meth:`backlog`,
    ``outbox``, ``overflowed``; the server's heartbeat keeps ``last_ping``,
    ``ping_stamp``, ``connect_stamp`` and ``knocked``.
    """

    __slots__ = (
        "_dirty",
        "_draining",
        "_ended",
        "_protocol",
        "_session",
        "_transport",
        "_waiter",
        "closed",
        "closing",
        "connect_stamp",
        "connected",
        "knocked",
        "last_ping",
        "outbox",
        "overflowed",
        "ping_stamp",
        "server",
        "sid",
        "upgraded",
        "upgrading",
    )

    upgrade_protocols = ("websocket",)

    def __init__(self, server: Any, sid: str, limit: int) -> None:
        self.server = server
        self.sid = sid
        self.outbox = Outbox(limit)
        self.connected = False
        self.upgrading = False
        self.upgraded = False
        self.closing = False
        self.closed = False
        self.overflowed = False
        self.knocked = False  # has sent a Socket.IO CONNECT (accepted or not)
        self.last_ping: float | None = None
        self.ping_stamp = 0.0
        self.connect_stamp = 0.0
        self._session: dict[str, Any] | None = None
        self._transport: asyncio.Transport | None = None
        self._protocol: Any = None
        self._waiter: asyncio.Future[None] | None = None
        self._dirty = False
        self._draining = False
        self._ended: asyncio.Future[None] | None = None

    @property
    def session(self) -> dict[str, Any]:
        if self._session is None:
            self._session = {}
        return self._session

    @session.setter
    def session(self, value: dict[str, Any]) -> None:
        self._session = value

    # -- sending ---------------------------------------------------------------

    def push(self, pkt: eio_packet.Packet) -> bool:
        """Queue ``pkt`` to be written; False if the session is ending or went over its bound."""
        if self.closed or self.closing or self.overflowed:
            return False
        frame = _frame_of(pkt)
        transport = self._transport
        paused = transport is not None and self._protocol.writing_paused
        # While the peer is not reading, what its transport still holds counts too.
        extra = transport.get_write_buffer_size() if paused and transport is not None else 0
        if not self.outbox.push(pkt, len(frame), extra=extra):
            self._overflow()
            return False
        if transport is not None and not paused and self.outbox.pending_bytes >= _MAX_WRITE_BATCH:
            # A burst (one Kafka batch of big events) does not wait for the end of
            # the turn: only what the peer does not take may count against the bound.
            self.flush()
        else:
            self._wake()
        return True

    def backlog(self) -> int:
        """Bytes given to this socket that its peer has not taken: outbox and transport buffer."""
        transport = self._transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return self.outbox.pending_bytes + buffered

    async def send(self, pkt: eio_packet.Packet) -> None:
        """engine.io's send: the same as :meth:`push` (it never has to wait)."""
        self.push(pkt)

    def _force(self, pkt: eio_packet.Packet) -> None:
        self.outbox.force(pkt, len(_frame_of(pkt)))
        self._wake()

    def _wake(self) -> None:
        if self._transport is not None:
            if not self._dirty:
                self._dirty = True
                self.server.flusher.mark(self)
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def flush(self, *, force: bool = False) -> None:
        """Write what is waiting to the websocket, unless its peer is not reading."""
        self._dirty = False
        transport = self._transport
        if transport is None or not self.outbox:
            return
        if transport.is_closing():
            self.outbox.clear()
            return
        if self._protocol.writing_paused and not force:
            self._wait_for_drain()
            return
        items = self.outbox.take()
        if len(items) == 1:
            transport.write(_frame_of(items[0]))
            return
        chunk: list[bytes] = []
        size = 0
        for pkt in items:
            frame = _frame_of(pkt)
            chunk.append(frame)
            size += len(frame)
            if size >= _MAX_WRITE_BATCH:
                transport.write(b"".join(chunk))
                chunk, size = [], 0
        if chunk:
            transport.write(b"".join(chunk))

    def _wait_for_drain(self) -> None:
        if self._draining or self._protocol is None:
            return
        self._draining = True
        self.server.start_background_task(self._drain)

    async def _drain(self) -> None:
        try:
            # aiohttp's protocol resolves this when the transport's buffer drains,
            # or fails it when the connection is lost.
            await self._protocol._drain_helper()
        except (ConnectionError, RuntimeError):
            return
        finally:
            self._draining = False
        self.flush()

    def _overflow(self) -> None:
        """Over the byte bound: drop the backlog, say why, and end the session."""
        self.overflowed = True
        self.outbox.clear()
        self.server.slow_consumer(self)

    # -- long polling ----------------------------------------------------------

    async def poll(self) -> list[eio_packet.Packet]:
        """Wait for packets for a long-polling GET; [] once the session is closed."""
        if not self.outbox:
            if self.closed:
                return []
            if self._waiter is not None:
                # Two GETs of one session at once: the client is broken (Node's
                # engine.io closes such a session too).
                raise eio_exceptions.QueueEmpty()
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            except asyncio.CancelledError:
                raise eio_exceptions.QueueEmpty() from None
            finally:
                self._waiter = None
        return self.outbox.take()

    async def handle_get_request(self, environ: dict[str, Any]) -> Any:
        connections = [s.strip() for s in environ.get("HTTP_CONNECTION", "").lower().split(",")]
        transport = environ.get("HTTP_UPGRADE", "").lower()
        if "upgrade" in connections and transport in self.upgrade_protocols:
            return await self.serve_websocket(environ)
        if self.upgrading or self.upgraded:
            # Upgrading to websocket: the polling endpoint returns nothing more.
            return [eio_packet.Packet(eio_packet.NOOP)]
        try:
            return await self.poll()
        except eio_exceptions.QueueEmpty:
            await self.close(wait=False, reason=self.server.reason.TRANSPORT_ERROR)
            raise

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        length = int(environ.get("CONTENT_LENGTH", "0"))
        if length > self.server.max_http_buffer_size:
            raise eio_exceptions.ContentTooLongError()
        body = (await environ["wsgi.input"].read(length)).decode("utf-8")
        for pkt in eio_payload.Payload(encoded_payload=body).packets:
            await self.receive(pkt)

    # -- receiving -------------------------------------------------------------

    async def receive(self, pkt: eio_packet.Packet) -> None:
        kind = pkt.packet_type
        if kind == eio_packet.PONG:
            # Only the answer to our own ping counts: unsolicited pongs must not
            # add deadlines (a client could otherwise grow the heartbeat queue).
            if self.last_ping is not None:
                self.last_ping = None
                self.server.heartbeat_answered(self)
        elif kind == eio_packet.MESSAGE:
            await self.server._trigger_event(
                "message", self.sid, pkt.data, run_async=self.server.async_handlers
            )
        elif kind == eio_packet.UPGRADE:
            self.push(eio_packet.Packet(eio_packet.NOOP))
        elif kind == eio_packet.CLOSE:
            await self.close(wait=False, abort=True, reason=self.server.reason.CLIENT_DISCONNECT)
        else:
            raise eio_exceptions.UnknownPacketError()

    # -- websocket -------------------------------------------------------------

    async def serve_websocket(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        """Upgrade the request to a websocket and receive on it until it ends.

        One coroutine for the whole life of the websocket, and no helper
        coroutine awaited inside the loop: every frame on the request's stack
        lives as long as the connection, once per connection.
        """
        if self.upgraded:
            raise OSError("Socket has been upgraded already")
        # No permessage-deflate: aiohttp would deflate every frame separately for
        # every socket (the same small JSON once per recipient); Node's socket.io
        # server ships with perMessageDeflate off too.
        ws = web.WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False, timeout=CLOSE_GRACE_S
        )
        await ws.prepare(environ["aiohttp.request"])
        del environ  # the request's headers need not live as long as the socket
        if self.connected:
            # An upgrade from long polling: a probe, then the UPGRADE packet.
            self.upgrading = True
            msg = await ws.receive()
            if msg.type is not WSMsgType.TEXT or msg.data != "2probe":
                self.upgrading = False
                return ws
            await ws.send_str("3probe")
            self._force(eio_packet.Packet(eio_packet.NOOP))  # ends the pending long poll
            msg = await ws.receive()
            if msg.type is not WSMsgType.TEXT or msg.data != "5":
                self.upgrading = False
                return ws
            self.upgraded = True
            self.upgrading = False
        else:
            self.connected = True
            self.upgraded = True
        self._attach(ws)
        if self.closed:  # closed during the handshake: CLOSE is written, the peer must go
            self._end_websocket()
        try:
            while True:
                msg = await ws.receive()
                if msg.type is not WSMsgType.TEXT and msg.type is not WSMsgType.BINARY:
                    break
                try:
                    pkt = _decode(msg.data)
                except (ValueError, IndexError, TypeError):
                    self.server.on_malformed()
                    break  # not Engine.IO: a protocol error ends the session
                try:
                    await self.receive(pkt)
                except eio_exceptions.UnknownPacketError:
                    pass
                except eio_exceptions.SocketIsClosedError:
                    break
                except Exception:
                    log.exception("socket %s: receive failed", self.sid)
        finally:
            self._detach()
            await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
            if self._ended is not None and not self._ended.done():
                self._ended.set_result(None)
        return ws

    def _attach(self, ws: web.WebSocketResponse) -> None:
        self._transport, self._protocol = websocket_transport(ws)
        if self.outbox:
            self._dirty = True
            self.flush()

    def _detach(self) -> None:
        self._transport = None
        self._protocol = None

    def _end_websocket(self) -> None:
        """Write what is left (the CLOSE packet last) and let the peer close.

        Clients close the websocket on the CLOSE packet; one that has not
        within :data:`CLOSE_GRACE_S` (it does not read, or ignores it) has its
        transport aborted. Aborting a transport that closed already is a no-op.
        """
        transport = self._transport
        if transport is None:
            return
        self.flush(force=True)
        asyncio.get_running_loop().call_later(CLOSE_GRACE_S, transport.abort)

    # -- closing ---------------------------------------------------------------

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        """End the session; ``wait``: until a websocket's closing handshake is over.

        (Bounded: the peer has :data:`CLOSE_GRACE_S` to close. A long poll is
        not waited for, it may never come back.)
        """
        if self.closed or self.closing:
            return
        self.closing = True
        await self.server._trigger_event(
            "disconnect", self.sid, reason or self.server.reason.SERVER_DISCONNECT, run_async=False
        )
        if not abort:
            self._force(eio_packet.Packet(eio_packet.CLOSE))
        self.closed = True
        self.server.forget(self)
        if self._transport is not None:
            if abort:
                self.outbox.clear()
            ended = None
            if wait:
                ended = self._ended = asyncio.get_running_loop().create_future()
            self._end_websocket()
            if ended is not None:
                await asyncio.wait([ended], timeout=CLOSE_GRACE_S + 1.0)
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
