"""The Socket.IO + HTTP gateway: browsers' live view of the pipeline (DESIGN.md, gateway/).

Pure cores (``auth``, ``rooms``, ``deliveries``) are importable without starting
anything; :class:`~gateway.service.GatewayService` wires them to Kafka,
python-socketio and aiohttp. It is imported lazily so that ``vmpulse token``
(which only needs ``gateway.auth``) does not pull in the server stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.exceptions import (
    AuthError,
    GatewayError,
    TokenInvalid,
    TokenMissing,
    UnknownUser,
)

__all__ = [
    "AuthError",
    "GatewayError",
    "GatewayService",
    "TokenInvalid",
    "TokenMissing",
    "UnknownUser",
]

if TYPE_CHECKING:
    from gateway.service import GatewayService


def __getattr__(name: str) -> Any:
    if name == "GatewayService":
        from gateway.service import GatewayService

        return GatewayService
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
