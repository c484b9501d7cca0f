"""Engine.IO input checked before engine.io decodes it.

python-engineio decodes a websocket frame and a polling POST body outside its
error handling: an empty frame, a type that is no digit, bad base64 or a body
that is not UTF-8 raised inside the request handler, with a traceback in the
log for every such request (and, on a websocket, a writer task left behind).
Here the same decoder runs first, inside a ``try``; what fails is dropped and
reported to ``on_malformed`` (the gateway counts it as a ``malformed`` refusal).
A websocket that sent such a frame is treated as hung up, a polling body as
empty, so the session ends or goes on exactly as engine.io would handle a
client that sent nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engineio import packet, payload

__all__ = ["CheckedBody", "checked_translate_request", "is_engineio_frame", "is_engineio_payload"]


def is_engineio_frame(frame: str | bytes) -> bool:
    """Whether one websocket frame decodes as an Engine.IO packet."""
    try:
        packet.Packet(encoded_packet=frame)
    except Exception:
        return False
    return True


def is_engineio_payload(body: bytes) -> bool:
    """Whether a polling POST body decodes as an Engine.IO payload (packets split by 0x1e)."""
    try:
        payload.Payload(encoded_payload=body.decode("utf-8"))
    except Exception:
        return False
    return True


class CheckedBody:
    """A request body stream whose ``read`` yields nothing for a malformed payload."""

    def __init__(self, stream: Any, on_malformed: Callable[[], None]) -> None:
        self._stream = stream
        self._on_malformed = on_malformed

    async def read(self, n: int = -1) -> bytes:
        body: bytes = await self._stream.read(n)
        if is_engineio_payload(body):
            return body
        self._on_malformed()
        return b""


def checked_translate_request(
    translate: Callable[..., dict[str, Any]], on_malformed: Callable[[], None]
) -> Callable[..., dict[str, Any]]:
    """Wrap engine.io's aiohttp ``translate_request`` so POST bodies are checked when read."""

    def translate_request(*args: Any, **kwargs: Any) -> dict[str, Any]:
        environ = translate(*args, **kwargs)
        if environ.get("REQUEST_METHOD") == "POST":
            environ["wsgi.input"] = CheckedBody(environ["wsgi.input"], on_malformed)
        return environ

    return translate_request
