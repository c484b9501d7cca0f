"""VM presence: the agent's state (online / offline) and the VM's power state, per VM.

Pure: the caller passes every observation and the clock in, and gets back the
``vms`` resource events that a *change* produces (nothing for a repeat).

* Agent state. Any accepted line of the agent (handshake, keep-alive, metrics,
  ...) means online. No line for ``missed`` intervals (default 3 x 30 s), or
  the bridge reporting the connection closed, means offline. A new connection
  alone is not "online": the agent has to say something first.
* Power state comes from the hypervisor: ``running`` after ``paused`` is a
  ``resume``, after anything else a ``power_on``; ``paused`` / ``pmsuspended``
  is a ``suspend``; ``shutoff`` / ``shutdown`` / ``crashed`` is a
  ``power_off``; any other change is an ``update``.

Every event's ``data`` is ``{vmId, agentState, powerState}`` (either state may
be null while unknown). The clock is the worker's processing time: a VM is
judged on when the worker last *saw* it, so old records replayed after a
restart do not make every VM flap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from schemas.events import ResourceEvent

__all__ = ["OFFLINE", "ONLINE", "Presence", "power_action"]

ONLINE = "online"
OFFLINE = "offline"
_OFF = frozenset({"shutoff", "shutdown", "crashed"})
_SUSPENDED = frozenset({"paused", "pmsuspended"})


def power_action(previous: str | None, state: str) -> str | None:
    """The ``vms`` action for a power state change, or None if nothing changed."""
    if state == previous:
        return None
    if state == "running":
        return "resume" if previous in _SUSPENDED else "power_on"
    if state in _SUSPENDED:
        return "suspend"
    if state in _OFF:
        return "update" if previous in _OFF else "power_off"
    return "update"


@dataclasses.dataclass(slots=True)
class _Vm:
    agent: str | None = None
    power: str | None = None
    last_seen: float = 0.0


class Presence:
    """Per-VM agent and power state; ``interval_s`` is the agent's reporting interval."""

    def __init__(self, interval_s: float = 30.0, missed: int = 3) -> None:
        if interval_s <= 0 or missed < 1:
            raise ValueError("interval_s must be > 0 and missed >= 1")
        self.timeout_s = interval_s * missed
        self._vms: dict[str, _Vm] = {}
        self.changed: set[str] = set()
        """VMs whose state changed since the caller last cleared this (to persist them)."""

    def _vm(self, vm_id: str) -> _Vm:
        vm = self._vms.get(vm_id)
        if vm is None:
            vm = self._vms[vm_id] = _Vm()
        return vm

    def state(self, vm_id: str) -> tuple[str | None, str | None]:
        """(agent state, power state) of a VM, None where unknown."""
        vm = self._vms.get(vm_id)
        return (vm.agent, vm.power) if vm else (None, None)

    def restore(self, vm_id: str, agent: str | None, power: str | None, now: float) -> None:
        """A VM's state as a previous owner left it; an online agent counts as seen ``now``."""
        self._vms[vm_id] = _Vm(agent=agent, power=power, last_seen=now)

    def drop(self, vm_ids: Iterable[str]) -> None:
        """Forget VMs (their partitions went to another worker, which restores them)."""
        for vm_id in vm_ids:
            self._vms.pop(vm_id, None)
            self.changed.discard(vm_id)

    def _event(self, vm_id: str, vm: _Vm, action: str) -> ResourceEvent:
        self.changed.add(vm_id)
        return ResourceEvent(
            resource="vms",
            action=action,
            data={"vmId": vm_id, "agentState": vm.agent, "powerState": vm.power},
        )

    def activity(self, vm_id: str, now: float) -> list[ResourceEvent]:
        """The agent said something: online (an event only if it was not)."""
        vm = self._vm(vm_id)
        vm.last_seen = max(vm.last_seen, now)
        if vm.agent == ONLINE:
            return []
        vm.agent = ONLINE
        return [self._event(vm_id, vm, "update")]

    def disconnected(self, vm_id: str, now: float) -> list[ResourceEvent]:
        """The bridge saw the agent's connection close: offline at once."""
        vm = self._vm(vm_id)
        if vm.agent == OFFLINE:
            return []
        vm.agent = OFFLINE
        return [self._event(vm_id, vm, "update")]

    def power(self, vm_id: str, state: str) -> list[ResourceEvent]:
        """The hypervisor reported a lifecycle state."""
        vm = self._vm(vm_id)
        action = power_action(vm.power, state)
        vm.power = state
        return [self._event(vm_id, vm, action)] if action else []

    def tick(self, now: float) -> list[ResourceEvent]:
        """Agents silent for longer than the timeout turn offline."""
        events = []
        for vm_id, vm in self._vms.items():
            if vm.agent == ONLINE and now - vm.last_seen > self.timeout_s:
                vm.agent = OFFLINE
                events.append(self._event(vm_id, vm, "update"))
        return events
