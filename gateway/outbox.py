"""What a socket has been given to send and not written yet: bounded in bytes.

Pure, no I/O: the engine socket (gateway/engine.py) pushes packets here and
writes them out when its transport can take them. The bound is what keeps a
client that stops reading (a websocket that answers pings but never reads, a
long-poll that never comes back) from growing the gateway's memory: once the
bytes waiting here pass the limit, :meth:`Outbox.push` refuses, and the socket
ends the session as a slow consumer. Nothing the client has not received is
lost for it: a resume from its last position replays what it missed.

``encode_frame`` builds the websocket frame of a server message. A server's
frames are not masked (RFC 6455, 5.1), so the frame of one packet is the same
bytes for every socket: fan-out builds it once per room and every socket of
the room writes the same object.
"""

from __future__ import annotations

import struct

__all__ = ["Outbox", "encode_frame"]

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def encode_frame(payload: bytes, *, binary: bool = False) -> bytes:
    """One unfragmented, unmasked websocket frame carrying ``payload``."""
    first = _FIN_BINARY if binary else _FIN_TEXT
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return _LEN16.pack(first, 126, size) + payload
    return _LEN64.pack(first, 127, size) + payload


class Outbox:
    """Packets waiting for the transport, in order, and their size in bytes.

    ``limit`` bounds the bytes waiting; ``extra`` lets the caller count bytes
    that left the outbox but still sit in the transport's own buffer, so the
    bound covers everything the gateway holds for the client.
    """

    __slots__ = ("_items", "limit", "pending_bytes")

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self._items: list[object] = []
        self.pending_bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def push(self, item: object, size: int, *, extra: int = 0) -> bool:
        """Queue ``item`` of ``size`` bytes; False (and nothing queued) past the limit."""
        if self.pending_bytes + size + extra > self.limit:
            return False
        self._items.append(item)
        self.pending_bytes += size
        return True

    def force(self, item: object, size: int) -> None:
        """Queue ``item`` whatever the limit (the few packets that end a session)."""
        self._items.append(item)
        self.pending_bytes += size

    def take(self) -> list[object]:
        """Everything waiting, oldest first; the outbox is empty afterwards."""
        items, self._items = self._items, []
        self.pending_bytes = 0
        return items

    def clear(self) -> int:
        """Drop everything waiting; returns how many packets were dropped."""
        dropped = len(self._items)
        self._items = []
        self.pending_bytes = 0
        return dropped
