"""Every place the gateway relies on python-socketio's, python-engineio's or aiohttp's insides.

The gateway keeps python-socketio (namespace, rooms, packets) and engine.io's
HTTP side, but replaces engine.io's per-session socket and its emit path
(docs/DECISIONS.md: "The gateway's Engine.IO sessions are its own", "Client
events and the server's lifecycle enter the namespace by two doors"). That
reaches below the libraries' public API, and a minor release may move what
it reaches. So the reach is written down here, once:

- :data:`SEAMS` names each private method the gateway overrides or calls,
  with the signature it was written against, and who relies on it and why;
- :data:`INSTANCE_SEAMS` names the attributes of live objects it reads;
- the accessors below (:func:`room_members`, :func:`engine_sessions`,
  :func:`engine_session_of`, :func:`websocket_transport`) are the only code
  outside the subclasses that reads those attributes;
- :func:`check` compares all of it with the installed libraries, and
  tests/unit/gateway/test_socketio_internals.py fails, naming each seam that
  moved, when an upgrade changes one of them.

Checked against :data:`CHECKED_AGAINST`; ``pyproject.toml`` bounds the
libraries below their next major version, and an upgrade within it must pass
that test and the gateway's integration tests (every transport, raw frames).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Iterable
from typing import Any

import engineio
import socketio
from aiohttp import web

from infra.seams import signature_problem

__all__ = [
    "CHECKED_AGAINST",
    "INSTANCE_SEAMS",
    "SEAMS",
    "Seam",
    "check",
    "engine_session_of",
    "engine_sessions",
    "installed_versions",
    "room_members",
    "websocket_transport",
]

CHECKED_AGAINST = {
    "python-socketio": "5.18.1",
    "python-engineio": "4.15.1",
    "aiohttp": "3.14.5",
}
"""The versions every seam below was read in and tested against."""


@dataclasses.dataclass(frozen=True, slots=True)
class Seam:
    """A private method of a library class that the gateway overrides or calls."""

    owner: type
    name: str
    signature: str
    used_by: str
    why: str


SEAMS: tuple[Seam, ...] = (
    Seam(
        engineio.AsyncServer,
        "_handle_connect",
        "(self, environ, transport, jsonp_index=None)",
        "gateway/server.py EngineServer",
        "the handshake creates an EngineSocket (own outbox, no tasks) and enforces the session cap",
    ),
    Seam(
        engineio.AsyncServer,
        "_trigger_event",
        "(self, event, *args, **kwargs)",
        "gateway/engine.py EngineSocket",
        "the own socket hands connect, message and disconnect on, as engine.io's socket does",
    ),
    Seam(
        engineio.AsyncServer,
        "_upgrades",
        "(self, sid, transport)",
        "gateway/server.py EngineServer._handle_connect",
        "the handshake answer lists the upgrades engine.io would offer",
    ),
    Seam(
        engineio.AsyncServer,
        "_ok",
        "(self, packets=None, headers=None, jsonp_index=None)",
        "gateway/server.py EngineServer._handle_connect",
        "polling answers are built by engine.io",
    ),
    Seam(
        engineio.AsyncServer,
        "_unauthorized",
        "(self, message=None)",
        "gateway/server.py EngineServer._handle_connect",
        "a refused connect answers as engine.io would",
    ),
    Seam(
        engineio.AsyncServer,
        "_bad_request",
        "(self, message=None)",
        "gateway/server.py EngineServer._handle_connect",
        "a polling request with nothing queued answers as engine.io would",
    ),
    Seam(
        socketio.AsyncServer,
        "_engineio_server_class",
        "(self)",
        "gateway/server.py SocketIOServer",
        "python-socketio builds the gateway's EngineServer instead of engine.io's",
    ),
    Seam(
        socketio.AsyncServer,
        "_handle_connect",
        "(self, eio_sid, namespace, data)",
        "gateway/server.py SocketIOServer",
        "a CONNECT is admitted (and its deadline cleared) only once the namespace accepted it",
    ),
    Seam(
        socketio.AsyncServer,
        "_handle_eio_connect",
        "(self, eio_sid, environ)",
        "gateway/server.py SocketIOServer",
        "keeps only the handshake fields the namespace reads of each session's environ",
    ),
    Seam(
        socketio.AsyncServer,
        "_handle_disconnect",
        "(self, eio_sid, namespace, reason=None)",
        "gateway/server.py SocketIOServer",
        "a namespace disconnect re-arms the CONNECT deadline of the session",
    ),
    Seam(
        socketio.AsyncServer,
        "_handle_eio_message",
        "(self, eio_sid, data)",
        "gateway/dispatch.py ClientEventServer",
        "malformed client packets are counted and dropped instead of raising",
    ),
    Seam(
        socketio.AsyncServer,
        "_handle_event",
        "(self, eio_sid, namespace, id, data)",
        "gateway/dispatch.py ClientEventServer",
        "client events reach the namespace's allow-list, never its lifecycle handlers",
    ),
    Seam(
        socketio.AsyncManager,
        "basic_enter_room",
        "(self, sid, namespace, room, eio_sid=None)",
        "gateway/server.py RoomManager",
        "the manager also keeps each connection's rooms, so a disconnect scans only those",
    ),
    Seam(
        socketio.AsyncManager,
        "basic_leave_room",
        "(self, sid, namespace, room)",
        "gateway/server.py RoomManager",
        "as basic_enter_room",
    ),
    Seam(
        socketio.AsyncManager,
        "basic_disconnect",
        "(self, sid, namespace, **kwargs)",
        "gateway/server.py RoomManager",
        "as basic_enter_room",
    ),
    Seam(
        socketio.AsyncManager,
        "get_rooms",
        "(self, sid, namespace)",
        "gateway/server.py RoomManager",
        "as basic_enter_room",
    ),
)

INSTANCE_SEAMS: tuple[tuple[str, str, str], ...] = (
    (
        "engineio.AsyncServer().sockets",
        "dict",
        "the session table: fan-out and shutdown find EngineSockets in it (engine_sessions)",
    ),
    (
        "engineio.AsyncServer()._async['translate_request']",
        "function",
        "gateway/server.py replaces the aiohttp driver's request translation in its own copy "
        "of the table, so polling bodies are checked before engine.io decodes them",
    ),
    (
        "socketio.AsyncServer().manager.rooms",
        "dict",
        "the room table: a room's connections, read by the fan-out (room_members)",
    ),
    (
        "socketio.AsyncServer().packet_class",
        "type",
        "gateway/dispatch.py sets its own packet class per instance",
    ),
    (
        "aiohttp.web.WebSocketResponse()._writer",
        "NoneType",
        "the websocket's transport, written directly by the own socket (websocket_transport)",
    ),
)


def room_members(sio: socketio.AsyncServer, room: str) -> Iterable[str]:
    """The Engine.IO session ids of the connections in ``room`` of namespace ``/``."""
    members: dict[str, str] | None = sio.manager.rooms.get("/", {}).get(room)
    return members.values() if members else ()


def engine_sessions(sio: socketio.AsyncServer) -> dict[str, Any]:
    """engine.io's session table (Engine.IO sid -> the gateway's EngineSocket)."""
    sessions: dict[str, Any] = sio.eio.sockets
    return sessions


def engine_session_of(sio: socketio.AsyncServer, sid: str) -> Any | None:
    """The EngineSocket under a Socket.IO connection of ``/``; None when it is gone."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
    return None if eio_sid is None else sio.eio.sockets.get(eio_sid)


def websocket_transport(ws: web.WebSocketResponse) -> tuple[Any, Any]:
    """(transport, protocol) under a prepared aiohttp websocket, to write frames directly."""
    writer = ws._writer
    assert writer is not None, "the websocket is not prepared"
    return writer.transport, writer.protocol


def _instance_seam(path: str) -> object:
    makers: dict[str, Any] = {
        "engineio.AsyncServer()": engineio.AsyncServer,
        "socketio.AsyncServer()": socketio.AsyncServer,
        "aiohttp.web.WebSocketResponse()": web.WebSocketResponse,
    }
    prefix = path[: path.index("()") + 2]
    value: Any = makers[prefix]()
    rest = path[len(prefix) :]
    for part in rest.replace("['", ".").replace("']", "").strip(".").split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def check(seams: Iterable[Seam] = SEAMS) -> list[str]:
    """What no longer matches in the installed libraries; empty when every seam holds."""
    problems = [
        problem
        for seam in seams
        if (
            problem := signature_problem(
                seam.owner, seam.name, seam.signature, f"used by {seam.used_by}: {seam.why}"
            )
        )
        is not None
    ]
    for path, kind, why in INSTANCE_SEAMS:
        try:
            value = _instance_seam(path)
        except (AttributeError, KeyError) as exc:
            problems.append(f"{path} is gone ({type(exc).__name__}: {exc}; {why})")
            continue
        found_kind = "type" if isinstance(value, type) else type(value).__name__
        if found_kind != kind:
            problems.append(f"{path} is a {found_kind}, was a {kind} ({why})")
    return problems


def installed_versions() -> dict[str, str]:
    """The installed versions of :data:`CHECKED_AGAINST`'s libraries."""
    return {name: importlib.metadata.version(name) for name in CHECKED_AGAINST}
