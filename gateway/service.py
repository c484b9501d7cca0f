"""GatewayService: the gateway as one ``mode.Service`` (start, serve, stop).

It owns, in start order: the directory tail (who exists, who may see what),
the Socket.IO server and its namespace, the aiohttp site, and the outbound
consumer. The site opens only after the directory has caught up, so a user
who exists is never refused as unknown because the gateway had just started.
It can run alone (``vmpulse gateway``) or beside the worker in one Faust
process (``faust.Worker(app, gateway_service)``).
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Sequence
from typing import Any

import engineio
import mode
import socketio
from aiohttp import web
from engineio.async_drivers import aiohttp as engineio_aiohttp

from gateway.api import GatewayApi, cors_middleware
from gateway.auth import TokenPolicy
from gateway.consumer import OutboundConsumer, RecentMetrics
from gateway.fanout import emit_to_room
from gateway.namespace import GatewayNamespace
from gateway.rooms import namespace_function
from gateway.stats import GatewayStats
from gateway.vmstate import VmStates
from schemas.directory import Directory
from schemas.topics import Topics
from vmpulse.config import Settings
from vmpulse.kafka_io import DirectoryTail
from vmpulse.reader import Reader

__all__ = ["GatewayService"]

log = logging.getLogger(__name__)


async def _poll_without_task(socket: Any) -> list[Any]:
    """engine.io's ``AsyncSocket.poll`` for a websocket, without a task or timer per wake-up.

    The original waits with ``asyncio.wait_for(queue.get(), ping_interval +
    ping_timeout)``: on Python 3.11 a new Task plus a timer in the loop's heap
    each time a socket's writer goes idle, i.e. once per delivered event at
    fan-out, with heap operations that grow with the number of sockets. Here
    the writer waits in its own task, with no timer: liveness is the ping
    task's job, and the websocket handler always ends its writer by queueing
    ``None`` when the connection closes. Same contract otherwise: packets to
    send, ``[]`` when closed, ``QueueEmpty`` when cancelled.
    """
    queue = socket.queue
    if queue.empty():
        try:
            first = await queue.get()
        except asyncio.CancelledError:
            raise engineio.exceptions.QueueEmpty() from None
    else:
        first = queue.get_nowait()
    queue.task_done()
    if first is None:
        return []
    packets = [first]
    while not queue.empty():
        pkt = queue.get_nowait()
        queue.task_done()
        if pkt is None:
            queue.put_nowait(None)
            break
        packets.append(pkt)
    return packets


class _UncompressedWebSocket(engineio_aiohttp.WebSocket):  # type: ignore[misc]
    """engine.io's aiohttp websocket without permessage-deflate.

    aiohttp negotiates per-message deflate by default, and then compresses every
    frame separately for every socket: at room fan-out the same small JSON is
    deflated once per recipient, which was about a third of the gateway's CPU.
    The payloads are small JSON; the Node.js socket.io server also ships with
    ``perMessageDeflate: false``.
    """

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        socket = getattr(self.handler, "__self__", None)
        if socket is not None and hasattr(socket, "queue") and not socket.connected:
            # Only this socket's writer uses the cheaper wait (see _poll_without_task).
            # Not on an upgrade from polling: the polling GET still in flight is ended
            # by engine.io's NOOP through the original poll, and swapping the method
            # under it stalled the upgrade for the full ping timeout.
            socket.poll = types.MethodType(_poll_without_task, socket)
        request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self._sock.send_bytes(message)
        else:
            await self._sock.send_str(message)


class _EngineIOServer(engineio.AsyncServer):  # type: ignore[misc]
    """Remembers the tasks engine.io starts, so that stop can cancel them.

    engine.io starts a fire-and-forget ping task per socket that sleeps for the
    ping interval (25 s) and is not cancelled by ``shutdown()``; without this a
    stopped gateway leaves tasks pending on the loop.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.background_tasks: set[asyncio.Future[Any]] = set()
        # A copy: the driver table is module-level and shared with other servers.
        self._async = {**self._async, "websocket": _UncompressedWebSocket}  # type: ignore[has-type]

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        task = super().start_background_task(target, *args, **kwargs)
        self.background_tasks.add(task)
        task.add_done_callback(self.background_tasks.discard)
        return task


class _SocketIOServer(socketio.AsyncServer):  # type: ignore[misc]
    def _engineio_server_class(self) -> type[_EngineIOServer]:
        return _EngineIOServer


class GatewayService(mode.Service):  # type: ignore[misc]
    """Socket.IO + HTTP gateway fed by ``events.outbound``.

    Public surface: :attr:`port` and :attr:`url` (the bound address, also with
    ``gateway_port=0``), :attr:`ready` (directory caught up and consumer
    consuming), :attr:`directory`, :attr:`sio`, :attr:`consumer`.

    A ``reader`` (history and admin SQL; without one those endpoints answer
    503) belongs to the caller, who opens and closes it.

    A ``directory_tail`` passed in belongs to the caller (shared with the worker
    in ``vmpulse up``): the caller starts and stops it, and should build it with
    ``on_change=lambda key: service.on_directory_change(key)`` so that revoked
    access also drops live subscriptions. Without one, the service creates,
    starts, wires and stops its own.
    """

    # Socket.IO clients are told to go away before the site closes, so nothing
    # should hold the HTTP server open longer than this.
    http_shutdown_timeout_s = 2.0

    def __init__(
        self,
        settings: Settings,
        *,
        reader: Reader | None = None,
        directory_tail: DirectoryTail | None = None,
        cors_allowed_origins: Sequence[str] | str | None = None,
        directory_timeout_s: float = 30.0,
        **kwargs: Any,
    ) -> None:
        if settings.kafka_bootstrap is None:
            raise ValueError("GatewayService needs settings.kafka_bootstrap")
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self._reader = reader
        self._tail = directory_tail
        self._owns_tail = directory_tail is None
        origins = (
            cors_allowed_origins if cors_allowed_origins is not None else settings.cors_origins
        )
        # None: same origin only (engine.io's default); "*" allows every origin.
        self._cors_list: tuple[str, ...] | None = (
            None if origins is None else (origins,) if isinstance(origins, str) else tuple(origins)
        )
        self._directory_timeout_s = directory_timeout_s
        self._namespace_of = namespace_function(settings.jwt_secret)
        self._policy = TokenPolicy.from_settings(settings)
        self.stats = GatewayStats()
        self.recent = RecentMetrics(per_vm=settings.gateway_recent_samples)
        self.vm_states = VmStates()
        self._sio: _SocketIOServer | None = None
        self._namespace: GatewayNamespace | None = None
        self._runner: web.AppRunner | None = None
        self._consumer: OutboundConsumer | None = None
        self._port: int | None = None
        self._revocations: set[asyncio.Task[int]] = set()
        super().__init__(**kwargs)

    @property
    def port(self) -> int:
        """The TCP port actually bound (differs from settings with port 0)."""
        if self._port is None:
            raise RuntimeError("gateway is not started")
        return self._port

    @property
    def url(self) -> str:
        host = self.settings.gateway_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def directory_tail(self) -> DirectoryTail:
        if self._tail is None:
            raise RuntimeError("gateway is not started")
        return self._tail

    @property
    def directory(self) -> Directory:
        return self.directory_tail.directory

    @property
    def sio(self) -> socketio.AsyncServer:
        if self._sio is None:
            raise RuntimeError("gateway is not started")
        return self._sio

    @property
    def consumer(self) -> OutboundConsumer:
        if self._consumer is None:
            raise RuntimeError("gateway is not started")
        return self._consumer

    @property
    def namespace(self) -> GatewayNamespace:
        if self._namespace is None:
            raise RuntimeError("gateway is not started")
        return self._namespace

    @property
    def ready(self) -> bool:
        """Directory read and the outbound consumer caught up (``/readyz``)."""
        return (
            self._tail is not None
            and self._tail.caught_up.is_set()
            and self._consumer is not None
            and self._consumer.caught_up
        )

    def _socketio_cors(self) -> list[str] | str | None:
        if self._cors_list is None:
            return None
        return "*" if "*" in self._cors_list else list(self._cors_list)

    async def on_start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._teardown()
            raise

    async def _start(self) -> None:
        bootstrap = self.settings.kafka_bootstrap
        assert bootstrap is not None
        if self._tail is None:
            self._tail = DirectoryTail(bootstrap, self.topics, on_change=self.on_directory_change)
        if self._owns_tail:
            await self._tail.start()
        try:
            await asyncio.wait_for(self._tail.caught_up.wait(), self._directory_timeout_s)
        except TimeoutError:
            raise TimeoutError(
                f"directory topic {self.topics.directory!r} not read within "
                f"{self._directory_timeout_s} s"
            ) from None
        directory = self._tail.directory

        settings = self.settings
        self._sio = _SocketIOServer(
            async_mode="aiohttp",
            cors_allowed_origins=self._socketio_cors(),
            max_http_buffer_size=settings.gateway_max_payload_bytes,
            logger=False,
            engineio_logger=False,
        )
        self._namespace = GatewayNamespace(
            directory=directory,
            policy=self._policy,
            namespace_of=self._namespace_of,
            recent=self.recent,
            stats=self.stats,
            max_connections=settings.gateway_max_connections,
            max_connections_per_user=settings.gateway_max_connections_per_user,
            client_events_per_minute=settings.gateway_client_events_per_minute,
        )
        self._sio.register_namespace(self._namespace)

        # The consumer reads back the resume window before the site opens, so the
        # first client to reconnect after a restart can already be replayed to.
        self._consumer = OutboundConsumer(
            bootstrap,
            self.topics.events_outbound,
            directory,
            self._namespace_of,
            self._emit,
            recent=self.recent,
            vm_states=self.vm_states,
            stats=self.stats,
            window_s=settings.gateway_resume_window_s,
            max_log_events=settings.gateway_resume_max_events,
        )
        await self._consumer.start()
        self._namespace.consumer = self._consumer
        self.stats.watch_lag(self._consumer.lag)

        app = web.Application(middlewares=[cors_middleware(self._cors_list)])
        self._sio.attach(app)
        namespace = self._namespace
        api = GatewayApi(
            directory=directory,
            policy=self._policy,
            is_live=lambda: self._runner is not None,
            is_ready=lambda: self.ready,
            stats=self.stats,
            recent=self.recent,
            vm_states=self.vm_states,
            connections=namespace.connections,
            reader=self._reader,
            reads_per_minute=settings.read_requests_per_minute,
        )
        app.add_routes(api.routes())
        self._runner = web.AppRunner(
            app, shutdown_timeout=self.http_shutdown_timeout_s, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.gateway_host, settings.gateway_port)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        log.info("gateway listening on %s", self.url)

    async def _emit(self, event: str, payload: Any, room: str) -> tuple[int, int]:
        """Emit to a room; returns sockets reached and skipped (0, 0: nobody here)."""
        return await emit_to_room(self.sio, event, payload, room)

    def on_directory_change(self, key: str) -> None:
        """Re-judge live sockets after a directory change (deleted user, lost access)."""
        kind, _, ident = key.partition(":")
        if self._tail is not None:
            if kind == "vm" and ident not in self.directory.vms:
                self.vm_states.forget(ident)
            if kind == "user" and ident not in self.directory.users:
                self.stats.forget_user(ident)
        if self._namespace is None or kind not in ("user", "vm"):
            return
        task = asyncio.get_running_loop().create_task(self._namespace.apply_directory_change(key))
        self._revocations.add(task)
        task.add_done_callback(self._revocations.discard)

    async def on_stop(self) -> None:
        await self._teardown()

    async def _teardown(self) -> None:
        """Stop in reverse start order; each step runs even when an earlier one failed."""
        if self._consumer is not None:
            await self._step("consumer", self._consumer.stop())
        if self._sio is not None:
            # Close every client first, so the HTTP server has no websocket to wait for.
            # Without waiting for each queue to drain: a polling client may never
            # come back for its CLOSE packet, and a stop must not wait for it.
            if self._sio.eio.sockets:
                await self._step("socket.io clients", self._close_sockets())
            await self._step("socket.io", self._sio.shutdown())
            pending = list(self._sio.eio.background_tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._runner is not None:
            await self._step("http", self._runner.cleanup())
            self._runner = None
        if self._namespace is not None:
            await self._step("namespace", self._namespace.close())
        for task in list(self._revocations):
            task.cancel()
        await asyncio.gather(*self._revocations, return_exceptions=True)
        if self._tail is not None and self._owns_tail:
            await self._step("directory", self._tail.stop())
            self._tail = None
        # A restarted service (mode supervisors restart crashed services) builds anew.
        self._consumer = None
        self._sio = None
        self._namespace = None
        self._port = None

    async def _close_sockets(self) -> None:
        eio = self.sio.eio
        for sid, socket in list(eio.sockets.items()):
            await socket.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)
            eio.sockets.pop(sid, None)

    async def _step(self, name: str, coro: Any) -> None:
        try:
            await asyncio.wait_for(coro, timeout=5.0)
        except Exception:
            log.exception("stopping gateway %s failed", name)
