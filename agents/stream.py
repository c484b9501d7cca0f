"""The small stream interface every agent transport sits behind, and its unix socket form.

The bridge's read loop only needs ``read`` / ``write`` / ``close``; virtio-serial
unix sockets today, vsock and TCP later, and fakes in tests (that split frames
across chunks on purpose) all plug in behind :class:`Stream`. Who the peer is
travels beside the stream in a :class:`ConnectionInfo`, decided by the transport
and never by the bytes (DESIGN.md, Identity and trust).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import uuid
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

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


class UnixStream(SocketStream):
    """A connected unix stream socket (QEMU's virtio-serial chardev, or the simulator)."""

    __slots__ = ()

    @classmethod
    async def connect(cls, path: Path, *, limit: int = READ_SIZE) -> UnixStream:
        """Connect as the client; the hypervisor owns the listening socket."""
        try:
            reader, writer = await asyncio.open_unix_connection(os.fspath(path), limit=limit)
        except OSError as exc:
            raise ConnectError(f"cannot connect to {path}: {exc}") from exc
        return cls(reader, writer)
