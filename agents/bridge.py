"""The bridge: agent connections in, ``agent.raw`` records out, byte for byte.

One read / feed / drain / send loop per connection (:meth:`Bridge.serve`) around
the pure :class:`~agents.framing.LineFramer`; on unix sockets the common case of
that loop (:meth:`Bridge._take`) runs in the event loop's read callback instead,
with no task woken per read (agents/stream.py says why). The bridge does not parse JSON:
it only decides *who* sent a line (from the transport) and hands the line on
unchanged, so validation, and its dead letters, live in one place, the worker.
The bridge itself rejects (to ``agent.dlq``) only what framing cannot carry (a
line over the size limit, a line cut off by the end of the stream) and a line
that claims another VM than its connection's (``vm_mismatch``, a cheap check in
:mod:`agents.identity`; the worker checks again). A line that runs past the
receive-buffer limit (``settings.bridge.max_buffer``, 8 MiB) is dead-lettered as
``line_overflow`` and ends its connection (PROTOCOL.md): what was read before
it, and after it in the same read, is still produced; the socket watcher
reconnects a unix socket after its back-off, a TCP or vsock peer is cut off.

Transports: the unix sockets of :class:`~agents.socket_watcher.SocketWatcher`
always; a TCP listener (signed hello) when ``settings.bridge.tcp_host`` is set;
an AF_VSOCK listener when ``settings.bridge.vsock_port`` is set. All of them end in
:meth:`Bridge.serve`.

Presence: when a connection opens and when it closes the bridge produces a
record with an empty value and a ``control`` header (``connected`` /
``disconnected``) under the VM's key, so the worker sees it in order with the
VM's lines.

Back-pressure: at most ``max_in_flight`` records (and about ``max_in_flight_bytes``)
wait in :class:`~agents.producing.RecordSender` for Kafka acknowledgements. When
Kafka is slow the loop stops reading the socket, the kernel buffer fills and the
guest's writes block, so bridge memory stays bounded instead of growing with the
broker's lag.

The bridge is a ``mode.Service`` so it can run inside a ``faust.Worker`` beside
the app (``vmpulse up``) or on its own (``vmpulse bridge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import Any, Final, NamedTuple

import mode

from agents.admission import Slots
from agents.exceptions import StreamError
from agents.framing import Frame, LineFramer, Overflow, Oversize, Truncated
from agents.identity import OwnClaims, claimed_other_vm
from agents.listeners import Listener, ListenerLimits, tcp_identify, vsock_socket
from agents.metrics import BridgeMetrics, serve_metrics
from agents.ownership import Ownership, owners_group_id
from agents.producing import RecordSender, make_producer
from agents.socket_watcher import POLL_S, SocketWatcher
from agents.stream import READ_SIZE, ConnectionInfo, Stream, UnixStream
from infra.config import ConfigError, Settings
from infra.kafka_io import ensure_settings_topics
from infra.log_budget import WarningBudget, suppressed_note
from infra.network import is_loopback_host
from infra.startup import StartError, listening
from schemas.dlq import DlqOrigin, Reason, Rejection, encode_dlq_record, make_dlq_record
from schemas.topics import Topics

__all__ = ["Bridge", "check_settings"]

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

_STOP_TIMEOUT_S: Final = 30.0


def check_settings(settings: Settings) -> None:
    """Refuse what the bridge must not run with; raises :class:`ConfigError`.

    The development agent secret is public (it is in the source): a TCP listener
    beyond loopback with it would let anyone on the network sign a hello for any VM.
    """
    host = settings.bridge.tcp_host
    if host is not None and settings.bridge.agent_secret_is_dev and not is_loopback_host(host):
        raise ConfigError(
            f"the TCP agent listener on {host} (VMPULSE_AGENT_TCP_ADDR) would accept the "
            "development agent secret from the network: set VMPULSE_AGENT_SECRET to a "
            "secret of your own (e.g. python3 -c 'import secrets; print(secrets.token_hex(32))'),"
            " or listen on a loopback address such as 127.0.0.1"
        )


class Bridge(mode.Service):  # type: ignore[misc]  # mode ships no type information
    """Reads every VM's agent connection and produces its lines to ``agent.raw``.

    Counters (plain attributes, read them for health and tests):
    ``lines`` acknowledged by Kafka on agent.raw, ``bytes`` read from agents,
    ``connections`` opened in total, ``active_connections`` open now, ``rejects``
    sent to the DLQ (``rejects_by_reason`` per reason), ``refused`` connections
    turned away by a listener, ``blank_lines`` skipped (empty lines carry no
    message), ``send_errors`` records Kafka did not acknowledge, ``read_holds`` times
    every connection stopped reading because the budget for Kafka was full. The same
    figures are Prometheus metrics in ``metrics.registry``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        producer: Any = None,
        reconnect_base_s: float = 3.0,
        poll_interval_s: float = POLL_S,
        max_line: int | None = None,
        max_buffer: int | None = None,
        read_size: int = READ_SIZE,
        max_in_flight: int = 50_000,
        max_in_flight_bytes: int = 64 * 1024 * 1024,
        **kwargs: Any,
    ) -> None:
        check_settings(settings)
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix)
        self._producer: Any = producer
        self._owns_producer = producer is None
        self._max_line = settings.bridge.max_line if max_line is None else max_line
        self._max_buffer = settings.bridge.max_buffer if max_buffer is None else max_buffer
        if self._max_buffer < self._max_line:
            raise ValueError(
                f"max_buffer ({self._max_buffer}) must be >= max_line ({self._max_line})"
            )
        self._read_size = read_size
        self._max_in_flight = (max_in_flight, max_in_flight_bytes)
        self._sender: RecordSender | None = None
        self.metrics = BridgeMetrics(lambda: (self.lines, self.bytes))
        self._watcher = SocketWatcher(
            settings.bridge.socket_dir,
            self.serve,
            poll_interval_s=poll_interval_s,
            reconnect_base_s=reconnect_base_s,
            owners=settings.bridge.socket_owners,
            on_refused=self._on_refused,
            claims=self._owns if settings.bridge.shared else None,
        )
        self._ownership: Ownership | None = None
        self._listeners: list[Listener] = []
        self._metrics_runner: Any = None
        self._slots = Slots(settings.bridge.max_connections)
        self.lines = 0
        self.bytes = 0
        self.connections = 0
        self.active_connections = 0
        self.rejects = 0
        self.rejects_by_reason: dict[str, int] = {}
        self.warnings = WarningBudget()  # per VM: a guest cannot flood the log (issue 10)
        self.refused: dict[str, int] = {}
        self.blank_lines = 0
        self.send_errors = 0
        self.read_holds = 0
        # Pushed connections, held off reading all at once while the budget is full.
        self._readers: set[UnixStream] = set()
        self._reads_released = asyncio.Event()  # clear: every reader is held off
        self._reads_released.set()
        super().__init__(**kwargs)

    @property
    def watcher(self) -> SocketWatcher:
        return self._watcher

    @property
    def listeners(self) -> list[Listener]:
        return list(self._listeners)

    @property
    def in_flight(self) -> int:
        """Records handed to the producer and not yet acknowledged."""
        return 0 if self._sender is None else self._sender.pending

    async def on_start(self) -> None:
        if self._producer is None:
            if not self.settings.kafka.bootstrap:
                raise ValueError("Bridge needs settings.kafka.bootstrap or a producer")
            # Standalone (`vmpulse bridge`): the topics may not exist yet.
            await ensure_settings_topics(self.settings)
            self._producer = make_producer(
                self.settings.kafka.bootstrap,
                client_id="vmpulse-bridge",
                auth=self.settings.kafka.auth,
            )
        self._sender = RecordSender(
            self._producer,
            max_records=self._max_in_flight[0],
            max_bytes=self._max_in_flight[1],
            on_ack=self._on_ack,
            on_error=self._on_send_error,
        )
        await self._sender.prepare([self.topics.agent_raw, self.topics.agent_dlq])
        s = self.settings
        if s.bridge.metrics_port is not None:
            self._metrics_runner = await serve_metrics(
                self.metrics, s.gateway.host, s.bridge.metrics_port
            )
        if s.bridge.tcp_host is not None:
            self._listeners.append(
                self._listener(
                    "tcp",
                    tcp_identify(s.bridge.agent_secret.reveal()),
                    host=s.bridge.tcp_host,
                    port=s.bridge.tcp_port,
                )
            )
        if s.bridge.vsock_port is not None:
            from agents.vsock import LibvirtCidMap, vsock_identify

            if s.libvirt_uri is None:
                raise ValueError("a vsock listener needs VMPULSE_LIBVIRT_URI for the CID map")
            cids = LibvirtCidMap.from_uri(s.libvirt_uri)
            port = s.bridge.vsock_port
            with listening("agents over vsock", "any CID", port, "VMPULSE_VSOCK_PORT"):
                sock = vsock_socket(port)
            self._listeners.append(self._listener("vsock", vsock_identify(cids.lookup), sock=sock))
        for listener in self._listeners:
            if listener.transport != "tcp":
                await listener.start()  # bound above
                continue
            host, port = s.bridge.tcp_host, s.bridge.tcp_port
            with listening("agents over TCP", host, port, "VMPULSE_AGENT_TCP_ADDR"):
                await listener.start()
        try:
            s.bridge.socket_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartError(
                f"cannot use {s.bridge.socket_dir} for the agents' sockets "
                f"(VMPULSE_SOCKET_DIR): {exc.strerror or exc}"
            ) from exc
        if s.bridge.shared:
            await self._start_ownership()
        await self._watcher.start()
        log.info("bridge watching %s -> %s", s.bridge.socket_dir, self.topics.agent_raw)

    def _listener(self, transport: str, identify: Any, **where: Any) -> Listener:
        s = self.settings
        limits = ListenerLimits(
            hello_timeout_s=s.bridge.hello_timeout_s,
            idle_timeout_s=s.bridge.idle_timeout_s,
            max_identifying=s.bridge.max_identifying,
            max_identifying_per_peer=s.bridge.max_identifying_per_peer,
            max_connections_per_vm=s.bridge.max_connections_per_vm,
        )
        return Listener(
            transport,
            identify,
            self.serve,
            slots=self._slots,
            on_refused=self._on_refused,
            limits=limits,
            **where,
        )

    def _on_refused(self, transport: str, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        self.metrics.refused.labels(transport, reason).inc()

    async def on_stop(self) -> None:
        # Order matters for "graceful stop flushes everything read": the watcher
        # and listeners close the streams, each serve() loop sees EOF and hands
        # its last lines to the sender, then we wait for every acknowledgement.
        for listener in self._listeners:
            await listener.stop()
        self._listeners.clear()
        if self._ownership is not None:
            await self._ownership.stop()  # hands this bridge's VMs over, then leaves
            self._ownership = None
        await self._watcher.stop()
        await self.flush()
        if self._sender is not None:
            await self._sender.close()
            self._sender = None
        if self._owns_producer:
            self._producer = None  # librdkafka's handle is destroyed with its last reference
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None

    # --- several bridges over one socket directory (issue 14.3, agents/ownership.py) ---

    @property
    def ownership(self) -> Ownership | None:
        return self._ownership

    def _owns(self, vm_id: str) -> bool:
        return self._ownership is not None and self._ownership.owns(vm_id)

    async def _start_ownership(self) -> None:
        s = self.settings
        assert s.kafka.bootstrap is not None, "a shared directory needs the broker's group"
        self._ownership = Ownership(
            s.kafka.bootstrap,
            self.topics.agent_raw,
            owners_group_id(s.kafka.topic_prefix),
            on_released=self._release_vms,
            on_claimed=self._watcher.rescan,
            session_timeout_s=s.kafka.session_timeout_s,
            auth=s.kafka.auth,
        )
        await self._ownership.start()

    async def _release_vms(self) -> None:
        """The group takes VMs away: end their connections, then wait for their lines'
        acknowledgements, so the next owner's first line comes after our last."""
        released = await self._watcher.release()
        await self.flush()
        log.info("bridge released %d VMs", released)

    async def flush(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """Wait until every record handed to the producer is acknowledged (or failed)."""
        if self._sender is not None:
            await self._sender.flush(timeout_s)

    async def serve(self, stream: Stream, info: ConnectionInfo) -> None:
        """Read one connection to its end, producing every line; never raises on bad input.

        Public so that every transport (unix, TCP after its handshake, vsock)
        and tests with fake streams use the same loop. A unix stream is pushed
        (agents/stream.py): its reads are taken by :meth:`_take` in the loop's
        read callback, and this coroutine wakes only for what that gives back.
        """
        conn = _Connection(
            info, self.topics.agent_raw, LineFramer(self._max_line, self._max_buffer)
        )
        self.connections += 1
        self.active_connections += 1
        self.metrics.connections.labels(info.transport).inc()
        self.metrics.active.inc()
        log.info("VM %s connected over %s (conn %s)", info.vm_id, info.transport, info.conn_id)
        self._connected(info, conn.key)
        pushed = stream if isinstance(stream, UnixStream) else None
        if pushed is not None:
            self._readers.add(pushed)
            if not self._reads_released.is_set():
                pushed.hold_off(True)  # before its first read
            pushed.push(lambda data: self._take(conn, data))
        try:
            while True:
                try:
                    if pushed is not None:
                        got = await pushed.next()
                    else:
                        got = await stream.read(self._read_size)
                except StreamError as exc:
                    log.warning("VM %s conn %s: %s", info.vm_id, info.conn_id, exc)
                    got = b""
                if isinstance(got, bytes):
                    # A read the sink did not see (one made before the push, or on
                    # a pulled stream) waits, unframed, while every reader is held.
                    while got and not self._reads_released.is_set():
                        await self._reads_released.wait()
                    rest = self._take(conn, got)
                    if rest is None:
                        continue
                else:
                    assert isinstance(got, _Rest)
                    rest = got
                if await self._finish(conn, rest):
                    return
                # A read that finds data buffered does not suspend: without this,
                # one busy VM would hold the loop (and the other VMs, and the
                # delivery reports) until its socket ran dry. A read short of the
                # read size left nothing buffered, so the next one suspends anyway.
                if rest.size >= self._read_size:
                    await asyncio.sleep(0)
        finally:
            if pushed is not None:
                self._readers.discard(pushed)
            self.active_connections -= 1
            self.metrics.active.dec()
            log.info("VM %s conn %s closed after %d lines", info.vm_id, info.conn_id, conn.line_no)
            # Shielded: a cancelled connection (the file vanished) still says it went away.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._disconnected(info, conn.key, conn.line_no))

    def _take(self, conn: _Connection, data: bytes) -> _Rest | None:
        """Frame one read and hand the common case to the sender now, without waiting.

        The common case: whole, non-blank lines of the connection's own VM, and room
        in the budget. Anything else (a reject, a blank line, a foreign claim, a full
        budget, the end of the stream) comes back as a :class:`_Rest` for
        :meth:`_finish`, with the read's frames already cut: nothing is sent twice.
        """
        received_at = time.time_ns() // 1_000_000
        framer = conn.framer
        if data:
            self.bytes += len(data)
            frames = framer.feed_frames(data)
        else:
            framer.feed_eof()
            frames = framer.frames()
        lines = [f for f in frames if type(f) is bytes]
        trusted = conn.claims.every_claim_own(b"\n".join(lines))
        plain = trusted and len(lines) == len(frames) and all(lines)
        rest = _Rest(frames, lines, trusted, plain, received_at, len(data))
        if not plain or not data or framer.at_eof:
            return rest
        if not lines:
            return None
        headers = conn.headers(lines, received_at)
        assert self._sender is not None
        if not self._sender.send_many_now(conn.topic, conn.key, lines, headers):
            self._hold_reads()
            return rest
        conn.line_no += len(lines)
        return None

    async def _finish(self, conn: _Connection, rest: _Rest) -> bool:
        """What :meth:`_take` gave back, in order, waiting where needed; True: the end."""
        info = conn.info
        if rest.plain:
            headers = conn.headers(rest.lines, rest.received_at)
            conn.line_no += len(rest.lines)
            await self._send_lines(conn.topic, conn.key, rest.lines, headers)
        else:
            conn.line_no = await self._serve_mixed(
                rest.frames, rest.trusted, info, conn.key, conn.line_no, rest.received_at
            )
        if not rest.size:
            return True
        if conn.framer.at_eof:
            # A line ran past the receive buffer (dead-lettered above):
            # stop reading; the transport closes the connection.
            log.warning(
                "VM %s conn %s: closing, a line ran past %d bytes",
                info.vm_id,
                info.conn_id,
                self._max_buffer,
            )
            return True
        return False

    async def _send_lines(
        self, topic: str, key: bytes, lines: list[bytes], headers: list[Headers]
    ) -> None:
        if lines:
            assert self._sender is not None
            await self._sender.send_many(topic, key, lines, headers)

    async def _serve_mixed(
        self,
        frames: list[Frame],
        trusted: bool,
        info: ConnectionInfo,
        key: bytes,
        line_no: int,
        received_at: int,
    ) -> int:
        """Frames with blanks, rejects or foreign claims: one at a time, order kept.

        Lines before a reject are handed to the sender before the reject, so a
        VM's records stay in the order they were read. Returns the last line number.
        """
        topic = self.topics.agent_raw
        base = _headers(info, 0, received_at)[:4]
        lines: list[bytes] = []
        headers: list[Headers] = []
        for frame in frames:
            line_no += 1
            if isinstance(frame, bytes):
                if not frame:
                    self.blank_lines += 1
                    continue
                claimed = None if trusted else claimed_other_vm(frame, info.vm_id)
                if claimed is None:
                    lines.append(frame)
                    headers.append([*base, ("line_no", b"%d" % line_no)])
                    continue
                detail = f"line claims VM {claimed[:64]!r} on a connection of VM {info.vm_id}"
                reject = (Reason.VM_MISMATCH, detail, frame, len(frame))
            else:
                reject = self._describe_reject(frame)
            await self._send_lines(topic, key, lines, headers)
            lines, headers = [], []
            await self._reject(*reject[:3], info, line_no, received_at, reject[3])
        await self._send_lines(topic, key, lines, headers)
        return line_no

    def _connected(self, info: ConnectionInfo, key: bytes) -> None:
        """The connection's first record, handed over at once, past the budget.

        Its reads start only after it (nothing may overtake it), so a new
        connection that waited behind a full budget held its first reads meanwhile:
        1,000 VMs starting at once under uvloop held ~160 MiB of them.
        """
        if self._sender is not None:
            headers = _control_headers(info, 0, b"connected")
            self._sender.send_now(self.topics.agent_raw, key, b"", headers, counted=False)

    async def _disconnected(self, info: ConnectionInfo, key: bytes, line_no: int) -> None:
        if self._sender is not None:
            headers = _control_headers(info, line_no, b"disconnected")
            await self._sender.send(self.topics.agent_raw, key, b"", headers, counted=False)

    def _describe_reject(
        self, frame: Oversize | Overflow | Truncated
    ) -> tuple[Reason, str, bytes, int]:
        if isinstance(frame, Oversize):
            detail = f"line of {frame.length} bytes exceeds the limit of {self._max_line} bytes"
            return Reason.LINE_TOO_LONG, detail, frame.head, frame.length
        if isinstance(frame, Overflow):
            detail = (
                f"line ran past the receive-buffer limit of {self._max_buffer} bytes "
                f"({frame.length} bytes read); connection closed"
            )
            return Reason.LINE_OVERFLOW, detail, frame.head, frame.length
        detail = f"stream ended {frame.length} bytes into a line without its newline"
        return Reason.TRUNCATED_LINE, detail, frame.head, frame.length

    async def _reject(
        self,
        reason: str,
        detail: str,
        raw: bytes,
        info: ConnectionInfo,
        line_no: int,
        received_at: int,
        length: int,
    ) -> None:
        """Dead-letter one line (agent.dlq, the brief's DLQ record); counted by reason."""
        held = self.warnings.take(info.vm_id, time.monotonic())
        if held is not None:
            log.warning(
                "VM %s conn %s line %d: %s%s",
                info.vm_id, info.conn_id, line_no, detail, suppressed_note(held),
            )  # fmt: skip
        origin = DlqOrigin(
            topic=None,
            partition=None,
            offset=None,
            vm_id=info.vm_id,
            transport=info.transport,
            received_at=_iso_ms(received_at),
            peer=info.peer.decode("utf-8", "replace"),
            conn_id=info.conn_id,
            line_no=line_no,
            length=length,
        )
        value = encode_dlq_record(make_dlq_record(raw, Rejection(reason, detail), origin))
        self.rejects += 1
        self.rejects_by_reason[reason] = self.rejects_by_reason.get(reason, 0) + 1
        self.metrics.rejects.labels(reason).inc()
        assert self._sender is not None
        await self._sender.send(
            self.topics.agent_dlq,
            info.vm_id.encode(),
            value,
            _headers(info, line_no, received_at),
        )

    def _hold_reads(self) -> None:
        """The budget refused a read: no connection reads on until half of it is free.

        Each connection paused only itself after its read was refused, so while the
        budget was full the loop still took one read from every VM with data, framed
        it and held it, before it came back to the acknowledgements that free the
        budget: at 1,000 VMs writing bursts, one such turn lasted up to 1.7 s and the
        acknowledgements of the first records waited that long (docs/BENCHMARKS.md,
        session 13). Holding every reader off is a pause per connection now and a
        resume per connection at half the budget.
        """
        if not self._reads_released.is_set():
            return
        self._reads_released.clear()
        self.read_holds += 1
        self.metrics.read_holds.inc()
        for reader in self._readers:
            reader.hold_off(True)

    def _release_reads(self) -> None:
        if (
            not self._reads_released.is_set()
            and self._sender is not None
            and self._sender.budget.half_free()
        ):
            self._reads_released.set()
            for reader in self._readers:
                reader.hold_off(False)

    def _on_ack(self, topic: str, count: int, latency_s: float) -> None:
        self.metrics.produce_latency.observe(latency_s)
        if topic == self.topics.agent_raw:
            self.lines += count
        self._release_reads()

    def _on_send_error(self, topic: str, count: int, exc: BaseException) -> None:
        self.send_errors += count
        self.metrics.send_errors.inc(count)
        self._release_reads()


def _headers(info: ConnectionInfo, line_no: int, received_at: int) -> Headers:
    return [
        ("transport", info.transport.encode()),
        ("peer", info.peer),
        ("received_at", str(received_at).encode("ascii")),
        ("conn_id", info.conn_id.encode("ascii")),
        ("line_no", str(line_no).encode("ascii")),
    ]


def _control_headers(info: ConnectionInfo, line_no: int, what: bytes) -> Headers:
    """A connection event's headers: the bridge's own, and ``control`` saying which."""
    headers = _headers(info, line_no, time.time_ns() // 1_000_000)
    headers.append(("control", what))
    return headers


def _iso_ms(epoch_ms: int) -> str:
    """Receive time as the worker writes it in its DLQ records (ISO 8601, UTC)."""
    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).isoformat()


class _Connection:
    """One connection's state: its framer, its claim check, its line count and its
    constant headers."""

    __slots__ = (
        "claims",
        "conn_h",
        "framer",
        "info",
        "key",
        "line_no",
        "peer_h",
        "topic",
        "transport_h",
    )

    def __init__(self, info: ConnectionInfo, topic: str, framer: LineFramer) -> None:
        self.info = info
        self.topic = topic
        self.framer = framer
        self.claims = OwnClaims(info.vm_id)
        self.key = info.vm_id.encode()
        self.line_no = 0
        self.transport_h = ("transport", info.transport.encode())
        self.peer_h = ("peer", info.peer)
        self.conn_h = ("conn_id", info.conn_id.encode("ascii"))

    def headers(self, lines: list[bytes], received_at: int) -> list[Headers]:
        """The headers of ``lines``, numbered after the connection's last line."""
        received_h = ("received_at", b"%d" % received_at)
        t, p, c = self.transport_h, self.peer_h, self.conn_h
        first = self.line_no + 1
        return [
            [t, p, received_h, c, ("line_no", b"%d" % n)] for n in range(first, first + len(lines))
        ]


class _Rest(NamedTuple):
    """A read :meth:`Bridge._take` did not finish, as it judged it: its frames, their
    whole lines, whether every claim in them is the connection's own VM, whether they
    are the common case (only whole, non-blank lines, all trusted), when the read came
    and its size (0: the end of the stream)."""

    frames: list[Frame]
    lines: list[bytes]
    trusted: bool
    plain: bool
    received_at: int
    size: int
