"""Engine.IO v4 / Socket.IO v5 spoken by hand over a real websocket.

A client library may refuse to send reserved names (``connect``,
``disconnect``) or malformed packets; an attacker's script does not. This
client sends exactly the frames a test writes and records every frame the
server sends back, answering the server's pings so the session stays up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

__all__ = ["RawSocket"]

_DEADLINE_S = 10.0


class RawSocket:
    """One websocket session: ``open``, ``send`` frames, wait for frames or the close."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._http = http
        self._ws = ws
        self.frames: list[str | bytes] = []
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.sid: str | None = None

    @classmethod
    async def open(cls, url: str, token: str | None) -> RawSocket:
        """Open the websocket and CONNECT to ``/`` with ``auth: {token}``."""
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket")
        except BaseException:
            await http.close()
            raise
        sock = cls(http, ws)
        await sock.wait(lambda: any(isinstance(f, str) and f.startswith("0") for f in sock.frames))
        await sock.send("40" + json.dumps({"token": token} if token else {}))
        frame = await sock.wait_frame(lambda f: f.startswith(("40", "44")))
        if frame.startswith("40"):
            sock.sid = json.loads(frame[2:])["sid"]
        return sock

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                if msg.data == "2":
                    await self._ws.send_str("3")  # Engine.IO ping -> pong
                    continue
                self.frames.append(msg.data)
                self._changed.set()
        finally:
            self.closed.set()
            self._changed.set()

    async def send(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self._ws.send_bytes(frame)
        else:
            await self._ws.send_str(frame)

    async def wait(self, condition: Callable[[], bool], timeout: float = _DEADLINE_S) -> None:  # noqa: ASYNC109
        async def loop() -> None:
            while not condition():
                self._changed.clear()
                if self.closed.is_set() and not condition():
                    raise ConnectionError("the server closed the websocket")
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    async def wait_frame(self, match: Callable[[str], bool], timeout: float = _DEADLINE_S) -> str:  # noqa: ASYNC109
        def found() -> str | None:
            return next((f for f in self.frames if isinstance(f, str) and match(f)), None)

        await self.wait(lambda: found() is not None, timeout)
        frame = found()
        assert frame is not None
        return frame

    async def ack(self, ack_id: int, timeout: float = _DEADLINE_S) -> Any:  # noqa: ASYNC109
        """The payload of the server's ACK (``43<id>[payload]``) for ``ack_id``."""
        prefix = f"43{ack_id}["
        frame = await self.wait_frame(lambda f: f.startswith(prefix), timeout)
        return json.loads(frame[len(prefix) - 1 :])[0]

    def events(self, name: str) -> list[Any]:
        """Payloads of the EVENT frames named ``name`` received so far."""
        out = []
        for frame in self.frames:
            if isinstance(frame, str) and frame.startswith("42["):
                body = json.loads(frame[2:])
                if body[0] == name:
                    out.append(body[1] if len(body) > 1 else None)
        return out

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._http.close()
