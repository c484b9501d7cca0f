"""The Socket.IO contract as msgspec Structs: every event's payload, both ways, and the acks.

docs/SOCKETIO.md tells it in prose; these Structs are what schemas/asyncapi.json
is generated from, and the integration test of the contract
(tests/integration/schemas/test_contract_traffic.py) checks that what a
running gateway sends and answers validates against them. Field names are the
wire keys (camelCase, as the frontend has always read them).

A field typed ``... | UnsetType`` may be absent: ``position`` is missing from
``connected`` when the client resumes (``resumed`` / ``resync`` carry it then),
and a refusing ack of ``metrics:recent`` has neither ``vmId`` nor ``samples``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, get_args

import msgspec
from msgspec import UnsetType

from schemas.live import LiveData

__all__ = [
    "CLIENT_EVENTS",
    "REFUSALS",
    "RESYNC_REASONS",
    "SESSION_END_REASONS",
    "Ack",
    "ConnectAuth",
    "ConnectRefusal",
    "Connected",
    "ConnectedUser",
    "MetricsUpdate",
    "RecentAck",
    "RecentRequest",
    "ResourcePayload",
    "Resumed",
    "Resync",
    "SessionEnded",
    "VmRequest",
]

CLIENT_EVENTS: Final = ("subscribe", "unsubscribe", "metrics:recent")
"""The only client events that reach a handler; any other is refused (see :class:`Ack`)."""

Refusal = Literal[
    "Authentication token required",
    "Authentication failed",
    "User not found",
    "Too many connections",
    "Too many connections for this user",
]
ResyncReason = Literal[
    "gap older than the resume window",
    "position not reached by this server",
    "invalid position",
    "resume rate limit exceeded",
]
SessionEndReason = Literal["Token expired", "User not found", "slow consumer"]
REFUSALS: Final = get_args(Refusal)
RESYNC_REASONS: Final = get_args(ResyncReason)
SESSION_END_REASONS: Final = get_args(SessionEndReason)

VmId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, description="a VM id")]
Position = Annotated[
    str,
    msgspec.Meta(
        description="Opaque stream position: keep the last one received, send it back as "
        "`lastPosition` on reconnect, compare nothing."
    ),
]
Timestamp = Annotated[str, msgspec.Meta(description="ISO 8601, UTC, milliseconds")]


class ConnectAuth(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """The ``auth`` object of the Socket.IO CONNECT packet (the client's handshake).

    The token may come in an ``Authorization: Bearer <jwt>`` header instead.
    ``lastPosition`` asks for a resume; ``vmIds`` are re-subscribed by it.
    """

    token: str | UnsetType = msgspec.UNSET
    lastPosition: Position | UnsetType = msgspec.UNSET
    vmIds: list[VmId] | UnsetType = msgspec.UNSET


class ConnectRefusal(msgspec.Struct):
    """The data of a CONNECT_ERROR packet (``err.message`` in socket.io-client)."""

    message: Refusal


class ConnectedUser(msgspec.Struct):
    id: str
    name: str
    role: str


class Connected(msgspec.Struct, kw_only=True):
    """``connected``: the first event of every socket.

    ``namespace`` is the user's room and the prefix of the resource events
    addressed to them: ``user_`` and 20 hex digits.
    """

    message: str
    namespace: Annotated[str, msgspec.Meta(pattern="^user_[0-9a-f]{20}$")]
    user: ConnectedUser
    timestamp: Timestamp
    position: Position | UnsetType = msgspec.UNSET


class ResourcePayload(msgspec.Struct, kw_only=True):
    """``<namespace>:<resource>:<action>`` and ``vm:<id>:<resource>:<action>``.

    What the worker wrote on ``events.outbound`` (``OutboundEvent.payload()``)
    plus the gateway's ``position``.
    """

    status: str
    error: str | None
    data: Any
    timestamp: Timestamp
    id: str
    position: Position


class MetricsUpdate(LiveData, kw_only=True):
    """``metricsUpdate``: a VM's latest sample for the sockets subscribed to it."""

    position: Position


class Resumed(msgspec.Struct, kw_only=True):
    """``resumed``: the missed events were replayed; the socket is in its rooms."""

    replayed: Annotated[int, msgspec.Meta(ge=0)]
    position: Position
    vmIds: list[VmId]
    denied: list[VmId]


class Resync(msgspec.Struct, kw_only=True):
    """``resync``: the gap cannot be replayed; reload over HTTP, keep ``position``."""

    reason: ResyncReason
    position: Position
    vmIds: list[VmId]
    denied: list[VmId]


class SessionEnded(msgspec.Struct):
    """``session:ended``: sent just before the server disconnects the socket."""

    reason: SessionEndReason


class VmRequest(msgspec.Struct, forbid_unknown_fields=False):
    """``subscribe`` and ``unsubscribe``."""

    vmId: VmId


class RecentRequest(msgspec.Struct, forbid_unknown_fields=False):
    """``metrics:recent``: up to ``count`` latest samples (a non-integer means 10)."""

    vmId: VmId
    count: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 10


class Ack(msgspec.Struct):
    """The ack of ``subscribe`` and ``unsubscribe``, and of any refused client event.

    ``error`` when refused: ``Access denied`` (not yours, or no such VM),
    ``Invalid vmId``, ``Rate limit exceeded``, ``Not connected``,
    ``Reserved event name``, ``Unknown event``.
    """

    ok: bool
    error: str | None


class RecentAck(msgspec.Struct, kw_only=True):
    """The ack of ``metrics:recent``: the samples, oldest first, when ``ok``."""

    ok: bool
    error: str | None
    vmId: VmId | UnsetType = msgspec.UNSET
    samples: list[LiveData] | UnsetType = msgspec.UNSET
