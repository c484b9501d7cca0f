"""Fan-out: which rooms an outbound event reaches, under which name, with which payload.

Pure: the consumer calls :func:`route` and emits what it returns. The worker
already decided who may see an event (``users``, ``admins``, ``rooms``); this
module only turns those recipients into Socket.IO rooms and names, so the rule
"a user sees only what the worker addressed to them" is enforced in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from schemas.directory import Directory
from schemas.events import METRICS_EVENT, METRICS_RESOURCE, OutboundEvent

__all__ = ["METRICS_RESOURCE", "Delivery", "recipients", "route"]


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """One ``sio.emit(event, payload, room=room)``."""

    room: str
    event: str
    payload: Any
    user: str | None = None  # set for a user's namespace room, for per-user statistics


def recipients(event: OutboundEvent, directory: Directory) -> list[str]:
    """The named users plus, when ``admins`` is set, every admin; each once, in order."""
    seen: dict[str, None] = dict.fromkeys(event.users)
    if event.admins:
        for admin in directory.admins():
            seen.setdefault(admin, None)
    return list(seen)


def route(
    event: OutboundEvent,
    directory: Directory,
    namespace_of: Callable[[str], str],
) -> list[Delivery]:
    """The deliveries for one event: users' namespace rooms first, then its rooms.

    A user gets ``<namespace>:<resource>:<action>`` with ``event.payload()``.
    A room gets ``metricsUpdate`` with ``event.data`` for metrics, otherwise
    ``<room>:<resource>:<action>`` with ``event.payload()``.
    """
    deliveries: list[Delivery] = []
    payload = event.payload()
    for user_id in recipients(event, directory):
        ns = namespace_of(user_id)
        deliveries.append(Delivery(ns, f"{ns}:{event.resource}:{event.action}", payload, user_id))
    for room in dict.fromkeys(event.rooms):
        if event.resource == METRICS_RESOURCE:
            deliveries.append(Delivery(room, METRICS_EVENT, event.data))
        else:
            deliveries.append(Delivery(room, f"{room}:{event.resource}:{event.action}", payload))
    return deliveries
