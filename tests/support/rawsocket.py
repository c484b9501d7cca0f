"""A raw Engine.IO client for attacking the gateway: HTTP upgrade and frames by hand.

No client library in between, so a test can do what a hostile or broken
client does: stop reading while the server keeps writing (with a receive
buffer as small as the kernel allows), answer pings blind, never send a
Socket.IO CONNECT. Frames are RFC 6455: the client masks what it sends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any

__all__ = ["RawSocket", "eio_open"]

_OPCODE_TEXT = 0x1
_OPCODE_BINARY = 0x2
_OPCODE_CLOSE = 0x8
_OPCODE_PING = 0x9
_OPCODE_PONG = 0xA


class RawSocket:
    """One websocket to ``/socket.io/`` (Engine.IO v4), spoken byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        rcvbuf: int | None = None,
        path: str = "/socket.io/?EIO=4&transport=websocket",
    ) -> RawSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the window the server sees is small from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            writer.close()
            raise ConnectionError(f"upgrade refused: {status.decode(errors='replace')}")
        return cls(reader, writer)

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            head = struct.pack("!BB", 0x80 | _OPCODE_TEXT, 0x80 | size)
        elif size < 65536:
            head = struct.pack("!BBH", 0x80 | _OPCODE_TEXT, 0x80 | 126, size)
        else:
            head = struct.pack("!BBQ", 0x80 | _OPCODE_TEXT, 0x80 | 127, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + mask + masked)

    async def recv_text(self) -> str | None:
        """The next text message (Engine.IO packet); None when the server closed."""
        while True:
            try:
                first, second = await self.reader.readexactly(2)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            opcode = first & 0x0F
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            try:
                payload = await self.reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            if opcode == _OPCODE_CLOSE:
                return None
            if opcode == _OPCODE_PING:
                continue  # aiohttp does not ping unless asked to; ignore
            if opcode in (_OPCODE_TEXT, _OPCODE_BINARY):
                return payload.decode(errors="replace")

    async def expect(self, prefix: str) -> str:
        """Read until a packet starting with ``prefix`` (pings are answered on the way)."""
        while True:
            text = await self.recv_text()
            if text is None:
                raise ConnectionError(f"closed while waiting for {prefix!r}")
            if text == "2":
                self.send_text("3")
                continue
            if text.startswith(prefix):
                return text

    async def socketio_connect(self, auth: dict[str, Any]) -> str:
        """Engine.IO OPEN, then Socket.IO CONNECT on ``/``; returns the Socket.IO sid."""
        await self.expect("0")
        self.send_text("40" + json.dumps(auth))
        reply = await self.expect("4")
        if not reply.startswith("40"):
            raise ConnectionError(f"connect refused: {reply}")
        return str(json.loads(reply[2:])["sid"])

    def close(self) -> None:
        self.writer.transport.abort()


def eio_open(text: str) -> dict[str, Any]:
    """The data of an Engine.IO OPEN packet (``0{...}``)."""
    assert text.startswith("0"), text
    data: dict[str, Any] = json.loads(text[1:])
    return data
