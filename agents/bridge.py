"""The bridge: agent connections in, ``agent.raw`` records out, byte for byte.

One read / feed / drain / send loop per connection (:meth:`Bridge.serve`) around
the pure :class:`~agents.framing.LineFramer`. The bridge does not parse JSON:
it only decides *who* sent a line (from the transport) and hands the line on
unchanged, so validation, and its dead letters, live in one place, the worker.
The only input the bridge itself rejects is what framing cannot carry: a line
over the size limit, or a line cut off by the end of the stream.

Back-pressure: at most ``max_in_flight`` records (and about ``max_in_flight_bytes``)
wait for Kafka acknowledgements. When Kafka is slow the loop stops reading the
socket, the kernel buffer fills and the guest's writes block, so bridge memory
stays bounded instead of growing with the broker's lag.

The bridge is a ``mode.Service`` so it can run inside a ``faust.Worker`` beside
the app (``vmpulse up``) or on its own (``vmpulse bridge``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from typing import Any, Final

import mode
from aiokafka.errors import KafkaError

from agents.exceptions import StreamError
from agents.framing import DEFAULT_MAX_LINE, LineFramer, Oversize, Truncated
from agents.socket_watcher import SocketWatcher
from agents.stream import READ_SIZE, ConnectionInfo, Stream
from schemas.topics import Topics
from vmpulse.config import Settings
from vmpulse.kafka_io import make_producer

__all__ = ["Bridge"]

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

_STOP_TIMEOUT_S: Final = 30.0


class _InFlight:
    """Counts records sent but not yet acknowledged; ``acquire`` waits while over budget.

    A single record is always admitted when nothing is in flight, so one line
    larger than the byte budget (up to the framing limit) still goes through.
    """

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.records = 0
        self.bytes = 0
        self._freed = asyncio.Event()

    async def acquire(self, size: int) -> None:
        while self.records and (
            self.records >= self.max_records or self.bytes + size > self.max_bytes
        ):
            self._freed.clear()
            await self._freed.wait()
        self.records += 1
        self.bytes += size

    def release(self, size: int) -> None:
        self.records -= 1
        self.bytes -= size
        self._freed.set()


class Bridge(mode.Service):  # type: ignore[misc]  # mode ships no type information
    """Reads every VM's agent socket and produces its lines to ``agent.raw``.

    Counters (plain attributes, read them for health and tests):
    ``lines`` handed to the producer for agent.raw, ``bytes`` read from agents, ``connections``
    opened in total, ``active_connections`` open now, ``rejects`` sent to the DLQ,
    ``blank_lines`` skipped (empty lines carry no message), ``send_errors`` records
    Kafka did not acknowledge.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        producer: Any = None,
        reconnect_base_s: float = 3.0,
        poll_interval_s: float = 0.25,
        max_line: int = DEFAULT_MAX_LINE,
        read_size: int = READ_SIZE,
        max_in_flight: int = 1000,
        max_in_flight_bytes: int = 64 * 1024 * 1024,
        **kwargs: Any,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self._producer: Any = producer
        self._owns_producer = producer is None
        self._max_line = max_line
        self._read_size = read_size
        self._in_flight = _InFlight(max_in_flight, max_in_flight_bytes)
        self._pending: set[asyncio.Future[Any]] = set()
        self._watcher = SocketWatcher(
            settings.socket_dir,
            self.serve,
            poll_interval_s=poll_interval_s,
            reconnect_base_s=reconnect_base_s,
        )
        self.lines = 0
        self.bytes = 0
        self.connections = 0
        self.active_connections = 0
        self.rejects = 0
        self.blank_lines = 0
        self.send_errors = 0
        super().__init__(**kwargs)

    @property
    def watcher(self) -> SocketWatcher:
        return self._watcher

    @property
    def in_flight(self) -> int:
        """Records handed to the producer and not yet acknowledged."""
        return self._in_flight.records

    async def on_start(self) -> None:
        if self._producer is None:
            if not self.settings.kafka_bootstrap:
                raise ValueError("Bridge needs settings.kafka_bootstrap or a producer")
            self._producer = make_producer(
                self.settings.kafka_bootstrap, client_id="vmpulse-bridge"
            )
            await self._producer.start()
        self.settings.socket_dir.mkdir(parents=True, exist_ok=True)
        await self._watcher.start()
        log.info("bridge watching %s -> %s", self.settings.socket_dir, self.topics.agent_raw)

    async def on_stop(self) -> None:
        # Order matters for "graceful stop flushes everything read": the watcher
        # closes the streams, each serve() loop sees EOF and hands its last
        # lines to the producer, then we wait for every acknowledgement.
        await self._watcher.stop()
        await self.flush()
        if self._owns_producer and self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def flush(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """Wait until every record handed to the producer is acknowledged (or failed)."""
        if self._producer is None:
            return
        # Bounded, so a stop with the broker unreachable ends and says what it lost.
        pending = list(self._pending)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._producer.flush(), timeout_s)
        if pending:
            _, late = await asyncio.wait(pending, timeout=1.0)
            if late:
                log.error("%d records not acknowledged after %.0fs", len(late), timeout_s)

    async def serve(self, stream: Stream, info: ConnectionInfo) -> None:
        """Read one connection to its end, producing every line; never raises on bad input.

        Public so that other transports (vsock, TCP after its handshake) and
        tests with fake streams use the same loop.
        """
        framer = LineFramer(self._max_line)
        line_no = 0
        self.connections += 1
        self.active_connections += 1
        log.info("VM %s connected over %s (conn %s)", info.vm_id, info.transport, info.conn_id)
        try:
            while True:
                try:
                    data = await stream.read(self._read_size)
                except StreamError as exc:
                    log.warning("VM %s conn %s: %s", info.vm_id, info.conn_id, exc)
                    data = b""
                received_at = time.time_ns() // 1_000_000
                if data:
                    self.bytes += len(data)
                    framer.feed(data)
                else:
                    framer.feed_eof()
                while (frame := framer.next_frame()) is not None:
                    line_no += 1
                    if isinstance(frame, bytes):
                        await self._produce_line(frame, info, line_no, received_at)
                    else:
                        await self._produce_reject(frame, info, line_no, received_at)
                if not data:
                    return
        finally:
            self.active_connections -= 1
            log.info("VM %s conn %s closed after %d lines", info.vm_id, info.conn_id, line_no)

    async def _produce_line(
        self, line: bytes, info: ConnectionInfo, line_no: int, received_at: int
    ) -> None:
        if not line:
            self.blank_lines += 1
            return
        headers = _headers(info, line_no, received_at)
        if await self._send(self.topics.agent_raw, info.vm_id.encode(), line, headers):
            self.lines += 1

    async def _produce_reject(
        self, frame: Oversize | Truncated, info: ConnectionInfo, line_no: int, received_at: int
    ) -> None:
        if isinstance(frame, Oversize):
            reason = "line_too_long"
            detail = f"line of {frame.length} bytes exceeds the limit of {self._max_line} bytes"
        else:
            reason = "truncated_line"
            detail = f"stream ended {frame.length} bytes into a line without its newline"
        log.warning("VM %s conn %s line %d: %s", info.vm_id, info.conn_id, line_no, detail)
        record = {
            "reason": reason,
            "detail": detail,
            "raw": base64.b64encode(frame.head).decode("ascii"),
            "origin": {
                "vm_id": info.vm_id,
                "transport": info.transport,
                "received_at": received_at,
                "peer": info.peer.decode("utf-8", "replace"),
                "conn_id": info.conn_id,
                "line_no": line_no,
                "length": frame.length,
            },
        }
        value = json.dumps(record, separators=(",", ":")).encode()
        headers = _headers(info, line_no, received_at)
        self.rejects += 1
        await self._send(self.topics.agent_dlq, info.vm_id.encode(), value, headers)

    async def _send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> bool:
        """Hand one record to the producer, waiting while too many are unacknowledged."""
        size = len(value)
        await self._in_flight.acquire(size)
        try:
            fut: asyncio.Future[Any] = await self._producer.send(
                topic, value=value, key=key, headers=headers
            )
        except KafkaError as exc:
            self._in_flight.release(size)
            self.send_errors += 1
            log.error("cannot produce to %s (key %r): %r", topic, key, exc)
            return False
        except BaseException:
            self._in_flight.release(size)
            raise
        self._pending.add(fut)
        fut.add_done_callback(lambda f: self._on_sent(f, size, topic))
        return True

    def _on_sent(self, fut: asyncio.Future[Any], size: int, topic: str) -> None:
        self._pending.discard(fut)
        self._in_flight.release(size)
        if fut.cancelled():
            self.send_errors += 1
            return
        exc = fut.exception()
        if exc is not None:
            self.send_errors += 1
            log.error("record to %s not acknowledged: %r", topic, exc)


def _headers(info: ConnectionInfo, line_no: int, received_at: int) -> Headers:
    return [
        ("transport", info.transport.encode()),
        ("peer", info.peer),
        ("received_at", str(received_at).encode("ascii")),
        ("conn_id", info.conn_id.encode("ascii")),
        ("line_no", str(line_no).encode("ascii")),
    ]
