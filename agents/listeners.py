"""Listening transports (TCP, vsock): accept, decide who the peer is, then hand over.

Unlike the unix sockets, where the bridge is the client of the hypervisor's
socket, here the guest connects to us, and anyone who can reach the port can
try. So every accepted connection passes, in this order: the connection cap
(refused without reading a byte), identification (a signed hello on TCP, the
peer CID on vsock; a connection that fails it is closed without a record), and
only then the bridge's ordinary read loop, with an idle timeout so a silent
connection does not hold a slot forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from agents.exceptions import Refused
from agents.handshake import HANDSHAKE_MAX_BYTES, NonceCache, verify_hello
from agents.stream import READ_SIZE, ConnectionInfo, SocketStream, Stream

__all__ = [
    "Identify",
    "Listener",
    "Refused",
    "tcp_identify",
    "vsock_socket",
]

log = logging.getLogger(__name__)

ConnectionHandler = Callable[[Stream, ConnectionInfo], Awaitable[None]]
Identify = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[ConnectionInfo]]
"""Decides the VM of a fresh connection or raises :class:`Refused`."""

HANDSHAKE_TIMEOUT_S: Final = 10.0


class Listener:
    """One listening socket whose accepted connections are identified, then served."""

    def __init__(
        self,
        transport: str,
        identify: Identify,
        handler: ConnectionHandler,
        *,
        admit: Callable[[], bool],
        release: Callable[[], None],
        on_refused: Callable[[str, str], None],
        idle_timeout_s: float | None,
        host: str | None = None,
        port: int = 0,
        sock: socket.socket | None = None,
    ) -> None:
        self.transport = transport
        self._identify = identify
        self._handler = handler
        self._admit = admit
        self._release = release
        self._on_refused = on_refused
        self._idle_timeout_s = idle_timeout_s
        self._host = host
        self._port = port
        self._sock = sock
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._streams: set[Stream] = set()

    @property
    def address(self) -> tuple[Any, ...]:
        """The bound address (host, port) or (cid, port); after :meth:`start`."""
        assert self._server is not None
        return tuple(self._server.sockets[0].getsockname())

    async def start(self) -> None:
        if self._sock is not None:
            self._server = await asyncio.start_server(
                self._on_conn, sock=self._sock, limit=READ_SIZE
            )
        else:
            self._server = await asyncio.start_server(
                self._on_conn, self._host, self._port, limit=READ_SIZE
            )
        log.info("%s listener on %s", self.transport, self.address)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop accepting, close open connections (their lines are flushed), wait for handlers."""
        if self._server is not None:
            self._server.close()
        for stream in list(self._streams):
            await stream.close()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve_one(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit():
            self._refuse(writer, "connection_cap", "too many agent connections")
            return
        try:
            try:
                info = await self._identify(reader, writer)
            except Refused as exc:
                self._refuse(writer, exc.reason, str(exc))
                return
            except (OSError, asyncio.IncompleteReadError) as exc:
                self._refuse(writer, "closed_early", f"closed before identifying: {exc!r}")
                return
            stream = SocketStream(reader, writer, idle_timeout_s=self._idle_timeout_s)
            self._streams.add(stream)
            try:
                await self._handler(stream, info)
            except Exception:
                log.exception("%s connection %s failed", self.transport, info.conn_id)
            finally:
                self._streams.discard(stream)
                await stream.close()
        finally:
            self._release()

    def _refuse(self, writer: asyncio.StreamWriter, reason: str, message: str) -> None:
        peer = writer.get_extra_info("peername")
        log.warning("%s connection from %s refused: %s", self.transport, peer, message)
        self._on_refused(self.transport, reason)
        writer.close()


def tcp_identify(
    master_secret: str,
    *,
    window_s: float = 60.0,
    timeout_s: float = HANDSHAKE_TIMEOUT_S,
    nonces: NonceCache | None = None,
) -> Identify:
    """Identification for TCP: the first line must be a valid signed hello (agents.handshake)."""
    cache = nonces if nonces is not None else NonceCache(window_s)

    async def identify(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> ConnectionInfo:
        try:
            async with asyncio.timeout(timeout_s):
                line = await reader.readuntil(b"\n")
        except TimeoutError as exc:
            raise Refused("handshake_timeout", f"no hello within {timeout_s}s") from exc
        except asyncio.LimitOverrunError as exc:
            raise Refused("handshake_malformed", "first line too long") from exc
        if len(line) > HANDSHAKE_MAX_BYTES:
            raise Refused("handshake_malformed", f"hello of {len(line)} bytes")
        # A bad hello raises HandshakeError, itself a Refused.
        vm_id = verify_hello(
            line.rstrip(b"\r\n"),
            master_secret,
            now=time.time(),
            nonces=cache,
            window_s=window_s,
        )
        peer = writer.get_extra_info("peername")
        peer_text = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        return ConnectionInfo(vm_id=vm_id, transport="tcp", peer=peer_text.encode())

    return identify


def vsock_socket(port: int) -> socket.socket:
    """A non-blocking AF_VSOCK stream socket listening on ``port`` for any CID."""
    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        sock.bind((socket.VMADDR_CID_ANY, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
