"""Client frames and the server's lifecycle enter a namespace by two doors, never one.

python-socketio hands a client's EVENT frame to the same ``trigger_event``
that it uses for its own connect and disconnect: ``42["disconnect"]`` from a
browser ran the namespace's disconnect handler while the socket stayed open
and in its rooms (token expiry, the per-user cap and ``/debug/connections``
then forgot it), and ``42["connect", ...]`` re-ran authentication and resume.
Once inside ``trigger_event`` the two calls look the same, so the split is
made here, where the server still knows a frame came from the client:

- a client's EVENT or BINARY_EVENT goes to the namespace's
  :meth:`ClientEvents.client_event`, which dispatches only its allow-list;
- python-socketio's own lifecycle calls keep using ``trigger_event``, which the
  namespace restricts to ``connect`` and ``disconnect``.

A packet the Socket.IO protocol does not allow from a client (not decodable, an
event that is not ``[name: str, ...args]``, a CONNECT_ERROR, an unknown type) is
dropped and counted as ``malformed`` instead of raising inside python-socketio,
where it became a traceback in the log for every hostile frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import socketio
from socketio import packet

from gateway.packets import SocketIOPacket

__all__ = ["ClientEventServer", "ClientEvents", "ClientPacket", "MalformedPacket"]

log = logging.getLogger(__name__)

# What a Socket.IO v5 client may send (socket.io-parser's isPayloadValid).
_FROM_CLIENT = frozenset(
    {
        packet.CONNECT,
        packet.DISCONNECT,
        packet.EVENT,
        packet.ACK,
        packet.BINARY_EVENT,
        packet.BINARY_ACK,
    }
)
_INTERNAL_ERROR = "Internal error"


class MalformedPacket(ValueError):
    """A client packet that the Socket.IO protocol does not allow."""


class ClientPacket(SocketIOPacket):
    """The gateway's packet (msgspec JSON, gateway/packets.py), refusing what no client sends.

    Every error of decoding (a bad type digit, unicode digits in an id, JSON
    nested too deep for the parser, a placeholder that names no attachment)
    becomes :class:`MalformedPacket`, the one error the server catches.
    """

    def __init__(self, *args: Any, encoded_packet: str | bytes | None = None, **kwargs: Any):
        # python-socketio skips decoding an empty packet and takes it for an EVENT.
        if encoded_packet is not None and not encoded_packet:
            raise MalformedPacket("empty packet")
        super().__init__(*args, encoded_packet=encoded_packet, **kwargs)

    def decode(self, encoded_packet: str | bytes) -> int:
        try:
            count = int(super().decode(encoded_packet) or 0)
        except Exception as exc:
            raise MalformedPacket(f"undecodable packet: {type(exc).__name__}") from None
        if self.packet_type not in _FROM_CLIENT:
            raise MalformedPacket(f"packet type {self.packet_type!r} not sent by clients")
        if self.packet_type in (packet.EVENT, packet.BINARY_EVENT):
            data = self.data
            if not (isinstance(data, list) and data and isinstance(data[0], str)):
                raise MalformedPacket("an event is [name, ...args] with a string name")
        elif self.packet_type in (packet.ACK, packet.BINARY_ACK) and not isinstance(
            self.data, list
        ):
            raise MalformedPacket("an ack carries a list")
        return count

    def add_attachment(self, attachment: bytes) -> bool:
        try:
            return bool(super().add_attachment(attachment))
        except Exception as exc:
            raise MalformedPacket(f"bad binary attachment: {type(exc).__name__}") from None


@runtime_checkable
class ClientEvents(Protocol):
    """A namespace that takes client events through its own door."""

    async def client_event(self, sid: str, event: str, args: tuple[Any, ...]) -> object:
        """Handle (or refuse) one client event; the result is the ack's payload."""
        ...


class ClientEventServer(socketio.AsyncServer):  # type: ignore[misc]
    """A Socket.IO server that sends client events to ``client_event``, never to lifecycle.

    ``on_refused(reason)`` counts what is refused here (``malformed``); the
    namespace counts what it refuses itself.
    """

    def __init__(
        self, *args: Any, on_refused: Callable[[str], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        # Set per instance: python-socketio picks its packet class in __init__.
        self.packet_class = ClientPacket
        self._on_refused = on_refused or (lambda reason: None)
        # The gateway's engine.io server checks frames before decoding them
        # (gateway/transport.py) and reports what it drops here.
        self.eio.on_malformed = lambda: self._on_refused("malformed")
        self._client_tasks: set[asyncio.Future[Any]] = set()

    async def _handle_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except MalformedPacket as exc:
            # A half-received binary event must not swallow the next packets.
            self._binary_packet.pop(eio_sid, None)
            self._on_refused("malformed")
            log.debug("dropped a packet from %s: %s", eio_sid, exc)

    async def _handle_event(
        self, eio_sid: str, namespace: str | None, id: int | None, data: list[Any]
    ) -> None:
        """Replaces python-socketio's, which dispatched through ``trigger_event``."""
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            return  # as python-socketio: events before CONNECT are ignored
        handler = self.namespace_handlers.get(namespace)
        if not isinstance(handler, ClientEvents):
            self._on_refused("unknown")
            return
        args = (handler, eio_sid, sid, namespace, id, data[0], tuple(data[1:]))
        if not self.async_handlers:
            await self._client_event(*args)
            return
        # One task per event, as python-socketio does, so a slow handler does
        # not hold up the socket's reader; kept referenced until it ends.
        task = self.start_background_task(self._client_event, *args)
        self._client_tasks.add(task)
        task.add_done_callback(self._client_tasks.discard)

    async def _client_event(
        self,
        handler: ClientEvents,
        eio_sid: str,
        sid: str,
        namespace: str,
        id: int | None,
        event: str,
        args: tuple[Any, ...],
    ) -> None:
        try:
            result = await handler.client_event(sid, event, args)
        except Exception:
            # A handler bug, not client input: worth a traceback, and the client
            # still gets its ack instead of waiting for a timeout.
            log.exception("client event %.64r of %s failed", event, sid)
            result = {"ok": False, "error": _INTERNAL_ERROR}
        if id is not None:
            ack = self.packet_class(packet.ACK, namespace=namespace, id=id, data=[result])
            await self._send_packet(eio_sid, ack)
