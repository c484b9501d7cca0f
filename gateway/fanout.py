"""The hot path: one outbound event to every socket of a room, encoded once, no task per socket.

python-socketio's ``AsyncServer.emit(room=...)`` encodes the packet once per
room, but then creates one asyncio task per recipient and waits for all of
them: at thousands of sockets that was most of the CPU. Here the event is
encoded once (msgspec, the same JSON the stdlib would write) into one
:class:`~gateway.engine.Frame`, whose websocket frame is built once too, and
pushed synchronously into each socket's outbox; the engine writes each
socket's packets of the turn in one write (gateway/engine.py).

This reads python-socketio's room table and the engine's session table
through gateway/socketio_internals.py (which says what it relies on and checks
it); the integration tests exercise it over real sockets, and any payload this
cannot encode goes through ``sio.emit`` instead.
"""

from __future__ import annotations

from typing import Any

import msgspec
import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from gateway.engine import EngineSocket, Frame
from gateway.socketio_internals import engine_session_of, engine_sessions, room_members

__all__ = ["emit_to_room", "event_frame", "send_backlog", "send_to_sid", "send_to_sid_now"]

_EVENT = "2"  # socket.io EVENT packet type; namespace "/" is implicit
_encode = msgspec.json.Encoder().encode


def event_frame(event: str, payload: Any) -> Frame:
    """The Engine.IO packet of a Socket.IO event on ``/``.

    msgspec first; what it cannot encode goes through python-socketio's own
    encoder (the stdlib's json), which raises if that cannot either.
    """
    try:
        text = _EVENT + _encode([event, payload]).decode()
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        text = sio_packet.Packet(sio_packet.EVENT, data=[event, payload]).encode()
    return Frame(eio_packet.MESSAGE, text)


async def emit_to_room(
    sio: socketio.AsyncServer, event: str, payload: Any, room: str
) -> tuple[int, int]:
    """Send ``event`` with ``payload`` to the room's sockets.

    Returns (sockets reached, sockets skipped because they were closing or
    over their send bound).
    """
    members = room_members(sio, room)
    if not members:
        return 0, 0
    pkt = event_frame(event, payload)
    sockets = engine_sessions(sio)
    reached = skipped = 0
    for eio_sid in list(members):
        sock = sockets.get(eio_sid)
        if sock is not None and sock.push(pkt):
            reached += 1
        else:
            skipped += 1
    return reached, skipped


def _engine_socket(sio: socketio.AsyncServer, sid: str) -> EngineSocket | None:
    sock: EngineSocket | None = engine_session_of(sio, sid)
    return sock


def send_to_sid_now(sio: socketio.AsyncServer, sid: str, event: str, payload: Any) -> bool:
    """Send one event to one Socket.IO connection, synchronously; False if it is gone.

    False also when the push took the socket over its bound (it is being ended).
    """
    sock = _engine_socket(sio, sid)
    return sock is not None and sock.push(event_frame(event, payload))


async def send_to_sid(sio: socketio.AsyncServer, sid: str, event: str, payload: Any) -> bool:
    """:func:`send_to_sid_now` for async callers (python-socketio's emit makes a task per call)."""
    return send_to_sid_now(sio, sid, event, payload)


def send_backlog(sio: socketio.AsyncServer, sid: str) -> tuple[int, int] | None:
    """(bytes not yet taken by the peer, the bound) of a connection; None if it is gone."""
    sock = _engine_socket(sio, sid)
    if sock is None:
        return None
    return sock.backlog(), sock.outbox.limit
