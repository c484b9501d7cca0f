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
from collections.abc import Sequence
from typing import Any

import mode
import socketio
from aiohttp import web

from gateway.admin import AdminOverview, DlqCounts
from gateway.api import GatewayApi, cors_middleware, json_errors_middleware
from gateway.auth import TokenPolicy, check_listen_key
from gateway.consumer import OutboundConsumer
from gateway.dashboard import dashboard_routes
from gateway.fanout import emit_to_room, event_frame
from gateway.namespace import SESSION_ENDED_EVENT, SLOW_CONSUMER, GatewayNamespace
from gateway.packets import SocketIOPacket
from gateway.recent import RecentMetrics
from gateway.rooms import namespace_function
from gateway.server import SocketIOServer
from gateway.socketio_internals import engine_sessions, room_members
from gateway.stats import GatewayStats
from gateway.vmstate import VmStates
from infra.config import Settings
from infra.dlq_reader import read_dlq
from infra.kafka_io import DirectoryTail, ensure_settings_topics, wait_for_leaders
from infra.startup import listening
from schemas.directory import Directory
from schemas.topics import Topics
from store.reader import Reader

__all__ = ["GatewayService"]

log = logging.getLogger(__name__)

# Connections the kernel may queue before accept. aiohttp's default (128) overflows
# when many browsers reconnect at once (a gateway restart): the kernel then drops
# SYNs and each client waits out a retransmission (1 s, 3 s, ...). Node's is 511;
# the kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 2048


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
        if settings.kafka.bootstrap is None:
            raise ValueError("GatewayService needs settings.kafka.bootstrap")
        check_listen_key(settings)  # development key: loopback only
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix)
        self._reader = reader
        self._tail = directory_tail
        self._owns_tail = directory_tail is None
        origins = (
            cors_allowed_origins
            if cors_allowed_origins is not None
            else settings.gateway.cors_origins
        )
        # None: same origin only (engine.io's default); "*" allows every origin.
        self._cors_list: tuple[str, ...] | None = (
            None if origins is None else (origins,) if isinstance(origins, str) else tuple(origins)
        )
        self._directory_timeout_s = directory_timeout_s
        self._namespace_of = namespace_function(settings.tokens.secret)
        self._policy = TokenPolicy.from_settings(settings)
        self.stats = GatewayStats()
        self.recent = RecentMetrics(per_vm=settings.gateway.recent_samples)
        self.vm_states = VmStates()
        self._sio: SocketIOServer | None = None
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
        host = self.settings.gateway.host
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
        bootstrap = self.settings.kafka.bootstrap
        assert bootstrap is not None
        if self._tail is None:
            self._tail = DirectoryTail(
                bootstrap,
                self.topics,
                on_change=self.on_directory_change,
                auth=self.settings.kafka.auth,
            )
        if self._owns_tail:
            # standalone (`vmpulse gateway`): the broker may start after us, and on a
            # fresh cluster before any stage made the topics (containers start in any
            # order; docs/DEPLOYMENT.md: every stage creates the topics it needs)
            topics = await ensure_settings_topics(self.settings)
            # just made, their leaders serve a moment later: no refused first fetches
            reads = [topics.directory, topics.events_outbound]
            await wait_for_leaders(bootstrap, reads, None, auth=self.settings.kafka.auth)
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
        # Sessions beyond the connection cap that may exist at once: refused or
        # closing ones, so that a refusal can still be told (CONNECT_ERROR) before
        # the handshake itself has to be refused.
        session_slack = max(64, settings.gateway.max_connections // 10)
        self._sio = SocketIOServer(
            async_mode="aiohttp",
            cors_allowed_origins=self._socketio_cors(),
            max_http_buffer_size=settings.gateway.max_payload_bytes,
            logger=False,
            engineio_logger=False,
            on_refused=lambda reason: self.stats.client_events_refused.labels(reason).inc(),
            # A client's events are handled in its receive loop, in order, without
            # a task each (the handlers do not wait on anything slow).
            async_handlers=False,
            serializer=SocketIOPacket,
            engine_options={
                "max_sessions": settings.gateway.max_connections + session_slack,
                "outbox_limit": settings.gateway.send_buffer_bytes,
                "connect_timeout_s": settings.gateway.connect_timeout_s,
                "stats": self.stats,
            },
        )
        self._sio.eio.farewell = event_frame(SESSION_ENDED_EVENT, {"reason": SLOW_CONSUMER})
        self._namespace = GatewayNamespace(
            directory=directory,
            policy=self._policy,
            namespace_of=self._namespace_of,
            recent=self.recent,
            stats=self.stats,
            max_connections=settings.gateway.max_connections,
            max_connections_per_user=settings.gateway.max_connections_per_user,
            client_events_per_minute=settings.gateway.client_events_per_minute,
            resumes_per_minute=settings.gateway.resumes_per_minute,
            waiting_sessions=lambda: self.sio.eio.waiting,
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
            occupied=self._occupied,
            window_s=settings.gateway.resume_window_s,
            max_log_events=settings.gateway.resume_max_events,
            auth=settings.kafka.auth,
        )
        await self._consumer.start()
        self._namespace.consumer = self._consumer
        self.stats.watch_lag(self._consumer.lag)

        app = web.Application(
            middlewares=[cors_middleware(self._cors_list), json_errors_middleware]
        )
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
            reads_per_minute=settings.reads.requests_per_minute,
        )
        app.add_routes(api.routes())
        dlq = DlqCounts(
            lambda n: read_dlq(
                bootstrap,
                settings.kafka.topic_prefix,
                max_per_partition=n,
                latest=0,
                auth=settings.kafka.auth,
            )
        )
        admin = AdminOverview(directory=directory, policy=self._policy, stats=self.stats, dlq=dlq)
        app.add_routes(admin.routes() + dashboard_routes())
        self._runner = web.AppRunner(
            app, shutdown_timeout=self.http_shutdown_timeout_s, access_log=None
        )
        await self._runner.setup()
        host, port = settings.gateway.host, settings.gateway.port
        site = web.TCPSite(self._runner, host, port, backlog=LISTEN_BACKLOG)
        with listening("browsers", host, port, "VMPULSE_GATEWAY_ADDR"):
            await site.start()
        self._port = int(self._runner.addresses[0][1])
        log.info("gateway listening on %s", self.url)

    @property
    def metrics(self) -> GatewayStats:
        """What the stage's health port serves on /metrics (``.registry``), as the other
        stages' ``metrics`` (vmpulse/cli.py): the same series as its own /metrics."""
        return self.stats

    def _occupied(self, room: str) -> bool:
        return bool(room_members(self.sio, room))

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
            # Websockets get their closing handshake (bounded); a polling client is
            # not waited for: it may never come back for its CLOSE packet.
            if engine_sessions(self._sio):
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
        # Together, each waiting for its websocket's closing handshake (bounded by
        # the engine's grace), so no closing is left to a task that stop cancels.
        sessions = engine_sessions(self.sio)
        reason = self.sio.eio.reason.SERVER_DISCONNECT
        await asyncio.gather(
            *(s.close(wait=True, reason=reason) for s in list(sessions.values())),
            return_exceptions=True,
        )
        sessions.clear()

    async def _step(self, name: str, coro: Any) -> None:
        try:
            await asyncio.wait_for(coro, timeout=5.0)
        except Exception:
            log.exception("stopping gateway %s failed", name)
