"""libvirt's numeric domain states and lifecycle events as vmpulse's words: pure tables.

The numbers are libvirt's stable ABI (``virDomainState``,
``virDomainEventType`` and the per-event detail enums), written out here so
the mapping is testable without libvirt and never shifts with its version.
"""

from __future__ import annotations

from typing import Final

__all__ = ["event_state", "state_name"]

_STATES: Final = (
    "nostate",
    "running",
    "blocked",
    "paused",
    "shutdown",
    "shutoff",
    "crashed",
    "pmsuspended",
)

# event type -> (state after it, detail names by detail number)
_EVENTS: Final[dict[int, tuple[str, tuple[str, ...]]]] = {
    0: ("shutoff", ("added", "updated", "renamed", "from_snapshot")),  # DEFINED
    1: ("undefined", ("removed", "renamed")),  # UNDEFINED
    2: ("running", ("booted", "migrated", "restored", "from_snapshot", "wakeup", "recreated")),
    3: (  # SUSPENDED
        "paused",
        (
            "paused",
            "migrated",
            "ioerror",
            "watchdog",
            "restored",
            "from_snapshot",
            "api_error",
            "postcopy",
            "postcopy_failed",
        ),
    ),
    4: ("running", ("unpaused", "migrated", "from_snapshot", "postcopy", "postcopy_failed")),
    5: (  # STOPPED
        "shutoff",
        ("shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from_snapshot"),
    ),
    6: ("shutdown", ("finished", "guest", "host")),  # SHUTDOWN (shutting down)
    7: ("pmsuspended", ("memory", "disk")),  # PMSUSPENDED
    8: ("crashed", ("panicked", "crashloaded")),  # CRASHED
}


def state_name(state: int) -> str:
    """``virDomainState`` as a word; unknown numbers (a newer libvirt) as ``nostate``."""
    return _STATES[state] if 0 <= state < len(_STATES) else "nostate"


def event_state(event: int, detail: int) -> tuple[str, str] | None:
    """(state after the event, reason) for a lifecycle event; None for an unknown event type."""
    entry = _EVENTS.get(event)
    if entry is None:
        return None
    state, details = entry
    reason = details[detail] if 0 <= detail < len(details) else f"detail_{detail}"
    return state, reason
