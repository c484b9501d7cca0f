"""The latest power and agent state per VM, as seen on ``events.outbound``.

The worker's presence stage publishes every change as a ``vms`` resource event
(issue 5); the gateway keeps the last value per VM for ``GET /api/vms``, so a
page can show states without waiting for the next change. Expected ``data``
fields (docs/SOCKETIO.md): ``vmId`` (or ``id``), ``powerState``, ``agentState``,
and optionally ``timestamp``; an event may carry only one of the two states.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from schemas.events import OutboundEvent

__all__ = ["MAX_STATE_LENGTH", "VmState", "VmStates"]

VMS_RESOURCE = "vms"
MAX_STATE_LENGTH = 64


@dataclasses.dataclass(slots=True)
class VmState:
    power_state: str | None = None
    agent_state: str | None = None
    updated_at: str | None = None


def _state(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_STATE_LENGTH and value.isprintable():
        return value
    return None


class VmStates:
    """Bounded by the directory: states of VMs that no longer exist are dropped."""

    def __init__(self) -> None:
        self._states: dict[str, VmState] = {}

    def get(self, vm_id: str) -> VmState:
        return self._states.get(vm_id) or VmState()

    def forget(self, vm_id: str) -> None:
        self._states.pop(vm_id, None)

    def observe(self, event: OutboundEvent, known: Mapping[str, object]) -> None:
        """Fold a ``vms`` event in; ``known`` (the directory's VMs) bounds the table."""
        if event.resource != VMS_RESOURCE or not isinstance(event.data, Mapping):
            return
        vm_id = event.data.get("vmId", event.data.get("id"))
        if not isinstance(vm_id, str) or vm_id not in known:
            return
        power = _state(event.data.get("powerState"))
        agent = _state(event.data.get("agentState"))
        if power is None and agent is None:
            return
        state = self._states.setdefault(vm_id, VmState())
        if power is not None:
            state.power_state = power
        if agent is not None:
            state.agent_state = agent
        state.updated_at = event.timestamp
