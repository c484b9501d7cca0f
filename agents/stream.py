"""The small stream interface every agent transport sits behind, and its unix socket form.

The bridge's read loop only needs ``read`` / ``write`` / ``close``; virtio-serial
unix sockets today, vsock and TCP later, and fakes in tests (that split frames
across chunks on purpose) all plug in behind :class:`Stream`. Who the peer is
travels beside the stream in a :class:`ConnectionInfo`, decided by the transport
and never by the bytes (DESIGN.md, Identity and trust).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol, cast, runtime_checkable

from agents.exceptions import ConnectError, StreamError

__all__ = ["READ_SIZE", "ConnectionInfo", "SocketStream", "Stream", "UnixStream"]

READ_SIZE: Final = 64 * 1024
"""Default read size; also the StreamReader limit, so one read never buffers more."""


@runtime_checkable
class Stream(Protocol):
    """A byte stream to one agent."""

    async def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` at end of stream. Raises StreamError."""
        ...

    async def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting for the peer to take it. Raises StreamError."""
        ...

    async def close(self) -> None:
        """Close the stream; idempotent, never raises. A pending read then sees EOF."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Where one connection comes from, as the transport (not the agent) says."""

    vm_id: str
    transport: str
    peer: bytes
    conn_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)


class SocketStream:
    """A connected asyncio stream socket: unix, TCP or vsock.

    ``idle_timeout_s`` bounds how long a read may wait for any byte: a peer that
    holds a connection open and silent (or trickles nothing) is cut off, which
    matters on listeners where anyone can open connections (TCP, vsock).
    """

    __slots__ = ("_closed", "_idle_timeout_s", "_reader", "_writer")

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        idle_timeout_s: float | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._closed = False
        self._idle_timeout_s = idle_timeout_s

    async def read(self, max_bytes: int) -> bytes:
        try:
            if self._idle_timeout_s is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(self._idle_timeout_s):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise StreamError(f"idle for {self._idle_timeout_s}s") from exc
        except OSError as exc:
            raise StreamError(f"read failed: {exc}") from exc

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise StreamError("write on a closed stream")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise StreamError(f"write failed: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        # The peer may already be gone; closing is best effort by contract.
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class UnixStream:
    """A connected unix stream socket (QEMU's virtio-serial chardev, or the simulator).

    Read like any :class:`Stream`, or *pushed*: after :meth:`push` each read goes to
    a synchronous sink as the loop receives it, with no task woken per read. At
    10,000 VMs writing a line a second each, a read is one line, and waking the
    connection's coroutine for it (a future, a task step, three coroutine frames,
    the StreamReader's two copies) cost about as much as the line's own work
    (docs/BENCHMARKS.md, session 11). The sink handles the common case at once;
    what it gives back (anything but ``None``) is held, reading pauses, and the
    connection's coroutine gets it from :meth:`next`, so nothing overtakes it.
    """

    __slots__ = ("_closed", "_proto", "_transport")

    def __init__(self, transport: asyncio.Transport, proto: _UnixProtocol) -> None:
        self._transport = transport
        self._proto = proto
        self._closed = False

    @classmethod
    async def connect(cls, path: Path, *, limit: int = READ_SIZE) -> UnixStream:
        """Connect as the client; the hypervisor owns the listening socket."""
        loop = asyncio.get_running_loop()
        try:
            transport, proto = await loop.create_unix_connection(
                lambda: _UnixProtocol(limit), os.fspath(path)
            )
        except OSError as exc:
            raise ConnectError(f"cannot connect to {path}: {exc}") from exc
        return cls(transport, proto)

    def push(self, sink: Callable[[bytes], object | None]) -> None:
        """From now on hand each read to ``sink`` (reads already buffered come from
        :meth:`next`); ``sink`` returns ``None`` when it took the read entirely."""
        self._proto.sink = sink

    async def next(self) -> object:
        """Pushed: what the reader must handle next, in order: what the sink gave
        back, a read the sink did not see (bytes), or ``b""`` at the end."""
        return await self._proto.next()

    def hold_off(self, held: bool) -> None:
        """Stop reading (``True``) until released (``False``), whatever else wants a read.

        For a bridge whose Kafka budget is full: a read it took then could only be
        held, and in one turn of the loop every VM with data made one such read
        before the loop came back to the acknowledgements that free the budget
        (docs/BENCHMARKS.md, session 13).
        """
        self._proto.hold_off(held)

    async def read(self, max_bytes: int) -> bytes:
        return await self._proto.read(max_bytes)

    async def write(self, data: bytes) -> None:
        if self._closed or self._transport.is_closing():
            raise StreamError("write on a closed stream")
        self._transport.write(data)
        await self._proto.drained()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._transport.close()
        await self._proto.lost()


class _UnixProtocol(asyncio.Protocol):
    """The reads of one :class:`UnixStream`: buffered for ``read``, or pushed to a sink."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._transport: asyncio.Transport | None = None
        self.sink: Callable[[bytes], object | None] | None = None
        # reads not handed to a sink (none set, or one was given back before them)
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._held: collections.deque[object] = collections.deque()  # given back by the sink
        self._ended = False
        self._error: BaseException | None = None
        self._sink_error: Exception | None = None
        self._paused = False
        self._held_off = False  # hold_off(): no reading, whatever the reader wants
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are Transports by their methods, not by their class
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is not None and not self._held and not self._chunks:
            try:
                rest = sink(data)
            except Exception as exc:  # a bug in the sink: the reader raises it
                self._sink_error = exc
                self._pause()
                self._wake()
                return
            if rest is None:
                return
            self._held.append(rest)
            self._pause()
        else:
            self._chunks.append(data)
            self._buffered += len(data)
            if self.sink is not None or self._buffered >= self._limit:
                self._pause()
        self._wake()

    def eof_received(self) -> bool:
        self._ended = True
        self._wake()
        return False  # close the transport: the agent's side is done writing

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def hold_off(self, held: bool) -> None:
        self._held_off = held
        if held:
            self._pause()
        elif self._waiter is not None:  # the reader is waiting for a read: let it come
            self._resume()

    def _resume(self) -> None:
        if (
            self._paused
            and not self._held_off
            and self._transport is not None
            and not self._transport.is_closing()
        ):
            self._paused = False
            self._transport.resume_reading()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._resume()
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    async def next(self) -> object:
        while True:
            if self._sink_error is not None:
                raise self._sink_error
            if self._held:
                return self._held.popleft()
            if self._chunks:
                data = self._chunks.popleft()
                self._buffered -= len(data)
                return data
            if self._ended or self._error is not None:
                return self._end()
            await self._wait()

    async def read(self, max_bytes: int) -> bytes:
        while not self._chunks:
            if self._ended or self._error is not None:
                return self._end()
            await self._wait()
        data = self._chunks.popleft()
        if len(data) > max_bytes:
            self._chunks.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        self._buffered -= len(data)
        return data

    def _end(self) -> bytes:
        if self._error is not None:
            raise StreamError(f"read failed: {self._error}")
        return b""

    async def drained(self) -> None:
        if self._ended:
            raise StreamError("write failed: connection lost")
        if self._write_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter

    async def lost(self) -> None:
        await self._lost
