"""Listening transports (TCP, vsock): accept, decide who the peer is, then hand over.

Unlike the unix sockets, where the bridge is the client of the hypervisor's
socket, here the guest connects to us, and anyone who can reach the port can
try. So every accepted connection passes, in this order: the agent slots (full:
refused without reading a byte), the identifying pool of :mod:`agents.admission`
(its own small cap, a cap per peer address, the oldest evicted when full) and
identification within ``hello_timeout_s`` (a signed hello on TCP, the peer CID
on vsock; a connection that fails it is closed without a record), then an agent
slot and the per-VM cap, and only then the bridge's ordinary read loop, with an
idle timeout so a silent connection does not hold a slot forever.

Every refusal is counted by reason (``on_refused``): ``connection_cap``,
``identify_peer_cap``, ``identify_evicted``, ``handshake_timeout``, the
handshake's own reasons, ``unknown_cid``, ``closed_early``, and
``vm_connection_cap`` for a VM's oldest connection closed past the per-VM cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from agents.admission import Admission, Slots
from agents.exceptions import Refused
from agents.handshake import HANDSHAKE_MAX_BYTES, NonceCache, verify_hello
from agents.stream import READ_SIZE, ConnectionInfo, SocketStream, Stream

__all__ = [
    "HELLO_TIMEOUT_S",
    "Identify",
    "Listener",
    "ListenerLimits",
    "Refused",
    "tcp_identify",
    "vsock_socket",
]

log = logging.getLogger(__name__)

ConnectionHandler = Callable[[Stream, ConnectionInfo], Awaitable[None]]
Identify = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[ConnectionInfo]]
"""Decides the VM of a fresh connection or raises :class:`Refused`."""

HELLO_TIMEOUT_S: Final = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class ListenerLimits:
    """The admission limits of one listener (settings ``VMPULSE_AGENT_*``)."""

    hello_timeout_s: float = HELLO_TIMEOUT_S
    idle_timeout_s: float | None = 120.0
    max_identifying: int = 256
    max_identifying_per_peer: int = 8
    max_connections_per_vm: int = 4


class _Conn:
    """One accepted connection, as the admission pools see it."""

    __slots__ = ("evicted", "stream", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.stream: Stream | None = None
        self.evicted = False


class Listener:
    """One listening socket whose accepted connections are identified, then served."""

    def __init__(
        self,
        transport: str,
        identify: Identify,
        handler: ConnectionHandler,
        *,
        slots: Slots,
        on_refused: Callable[[str, str], None],
        limits: ListenerLimits = ListenerLimits(),
        host: str | None = None,
        port: int = 0,
        sock: socket.socket | None = None,
    ) -> None:
        self.transport = transport
        self._identify = identify
        self._handler = handler
        self._slots = slots
        self._on_refused = on_refused
        self._limits = limits
        self.admission: Admission[_Conn] = Admission(
            max_identifying=limits.max_identifying,
            max_per_peer=limits.max_identifying_per_peer,
            max_per_vm=limits.max_connections_per_vm,
        )
        self._host = host
        self._port = port
        self._sock = sock
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._streams: set[Stream] = set()
        self._refusal_log: dict[str, tuple[float, int]] = {}

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
        if self._slots.full:
            self._refuse(writer, "connection_cap", "too many agent connections")
            return
        conn = _Conn(writer)
        try:
            evicted = self.admission.begin(conn, _peer_key(writer))
        except Refused as exc:
            self._refuse(writer, exc.reason, str(exc))
            return
        for old in evicted:
            old.evicted = True
            old.writer.transport.abort()  # its identify() fails at once; counted there
        try:
            info = await self._identified(conn, reader, writer)
        finally:
            self.admission.end(conn)  # out of the identifying pool, whatever happened
        if info is None:
            return
        if not self._slots.take():
            self._refuse(writer, "connection_cap", "too many agent connections")
            return
        try:
            await self._serve(conn, reader, writer, info)
        finally:
            self._slots.give()

    async def _identified(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> ConnectionInfo | None:
        """The peer's identity within the hello timeout, or None (refused and counted)."""
        timeout_s = self._limits.hello_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                info = await self._identify(reader, writer)
            if not conn.evicted:
                return info
            self._refuse(writer, "identify_evicted", "evicted by newer connections")
        except TimeoutError:
            self._refuse(writer, "handshake_timeout", f"not identified within {timeout_s}s")
        except Refused as exc:
            self._refuse(writer, exc.reason, str(exc))
        except (OSError, asyncio.IncompleteReadError) as exc:
            if conn.evicted:
                self._refuse(writer, "identify_evicted", "evicted by newer connections")
            else:
                self._refuse(writer, "closed_early", f"closed before identifying: {exc!r}")
        return None

    async def _serve(
        self,
        conn: _Conn,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        info: ConnectionInfo,
    ) -> None:
        stream = SocketStream(reader, writer, idle_timeout_s=self._limits.idle_timeout_s)
        conn.stream = stream
        self._streams.add(stream)
        try:
            for old in self.admission.identified(conn, info.vm_id):
                # Past the per-VM cap the VM's oldest connection goes (its lines are kept).
                log.warning(
                    "%s: VM %s has more than %d connections; closing its oldest",
                    self.transport,
                    info.vm_id,
                    self._limits.max_connections_per_vm,
                )
                self._on_refused(self.transport, "vm_connection_cap")
                if old.stream is not None:
                    await old.stream.close()
            await self._handler(stream, info)
        except Exception:
            log.exception("%s connection %s failed", self.transport, info.conn_id)
        finally:
            self.admission.end(conn)
            self._streams.discard(stream)
            await stream.close()

    def _refuse(self, writer: asyncio.StreamWriter, reason: str, message: str) -> None:
        # Anyone can make refusals happen: one warning per reason a second, the
        # others counted into it (the metrics count every one).
        now = time.monotonic()
        last, skipped = self._refusal_log.get(reason, (float("-inf"), 0))
        if now - last >= 1.0:
            peer = writer.get_extra_info("peername")
            more = f" (and {skipped} more like it)" if skipped else ""
            log.warning("%s connection from %s refused: %s%s", self.transport, peer, message, more)
            self._refusal_log[reason] = (now, 0)
        else:
            self._refusal_log[reason] = (last, skipped + 1)
        self._on_refused(self.transport, reason)
        writer.close()


def _peer_key(writer: asyncio.StreamWriter) -> str:
    """The peer whose identifying connections are capped together: its address (TCP)
    or its CID (vsock), never the port, which a peer chooses freely."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


def tcp_identify(
    master_secret: str, *, window_s: float = 60.0, nonces: NonceCache | None = None
) -> Identify:
    """Identification for TCP: the first line must be a valid signed hello (agents.handshake).

    The listener bounds how long it may take (``hello_timeout_s``)."""
    cache = nonces if nonces is not None else NonceCache(window_s)

    async def identify(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> ConnectionInfo:
        try:
            line = await reader.readuntil(b"\n")
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
