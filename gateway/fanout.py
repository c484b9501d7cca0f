"""The hot path: one outbound event to every socket of a room, encoded once, no task per socket.

python-socketio's ``AsyncServer.emit(room=...)`` already encodes the packet
once per room, but then creates one asyncio task per recipient (each awaiting
``engineio`` ``send_packet``) and waits for all of them: at thousands of
sockets that is thousands of task objects per event, and most of the CPU. The
work each task does is a put on the socket's unbounded outgoing queue, which
the socket's own writer task drains to the websocket or the long poll. So here
the packet is encoded once (msgspec, the same JSON as the stdlib would write)
and put on each queue synchronously.

This reaches into python-socketio's room table (``manager.rooms``) and
engine.io's per-socket ``queue``; the integration tests exercise it over real
sockets, and any payload this cannot encode goes through ``sio.emit`` instead.
"""

from __future__ import annotations

from typing import Any

import msgspec
import socketio
from engineio import packet as eio_packet

__all__ = ["emit_to_room"]

_EVENT = "2"  # socket.io EVENT packet type; namespace "/" is implicit
_encode = msgspec.json.Encoder().encode


async def emit_to_room(
    sio: socketio.AsyncServer, event: str, payload: Any, room: str
) -> tuple[int, int]:
    """Send ``event`` with ``payload`` to the room's sockets.

    Returns (sockets reached, sockets skipped because they were closing).
    """
    members = sio.manager.rooms.get("/", {}).get(room)
    if not members:
        return 0, 0
    try:
        text = _EVENT + _encode([event, payload]).decode()
    except (TypeError, msgspec.EncodeError):
        count = len(members)
        await sio.emit(event, payload, room=room)
        return count, 0
    pkt = eio_packet.Packet(eio_packet.MESSAGE, text)
    sockets = sio.eio.sockets
    reached = skipped = 0
    for eio_sid in list(members.values()):
        sock = sockets.get(eio_sid)
        if sock is None or sock.closed or sock.closing:
            skipped += 1
            continue
        sock.queue.put_nowait(pkt)
        reached += 1
    return reached, skipped
