"""The latest metric samples per VM, kept by every gateway for ``metrics:recent``.

The outbound consumer shows it each event; it keeps the data of ``metrics``
events sent to ``vm:<id>`` rooms. Pure: no I/O, no clock.
"""

from __future__ import annotations

import collections
from typing import Any

import msgspec

from gateway.deliveries import METRICS_RESOURCE
from schemas.events import VM_ROOM_PREFIX, OutboundEvent

__all__ = ["RecentMetrics"]


def _decoded(sample: Any) -> Any:
    # the gateway keeps live updates' data as raw JSON (msgspec.Raw): bytes the cyclic
    # GC never walks, where decoded dicts of 1,000 samples x thousands of VMs were
    # tens of millions of objects (issue 11); a reader gets them decoded
    return msgspec.json.decode(sample) if isinstance(sample, msgspec.Raw) else sample


class RecentMetrics:
    """The latest metric samples per VM, for ``metrics:recent``.

    Bounded twice, because the VM ids come from the stream: ``per_vm`` samples
    per VM and ``max_vms`` VMs, the least recently updated forgotten first.
    """

    def __init__(self, *, per_vm: int = 1_000, max_vms: int = 10_000) -> None:
        self._per_vm = per_vm
        self._max_vms = max_vms
        self._samples: collections.OrderedDict[str, collections.deque[Any]] = (
            collections.OrderedDict()
        )

    def add(self, vm_id: str, sample: Any) -> None:
        ring = self._samples.pop(vm_id, None)
        if ring is None:
            ring = collections.deque(maxlen=self._per_vm)
        ring.append(sample)
        self._samples[vm_id] = ring
        while len(self._samples) > self._max_vms:
            self._samples.popitem(last=False)

    def latest(self, vm_id: str, count: int) -> list[Any]:
        """Up to ``count`` samples, oldest first (decoded: kept as the JSON they came in)."""
        ring = self._samples.get(vm_id)
        if ring is None or count <= 0:
            return []
        return [_decoded(s) for s in list(ring)[-count:]]

    def observe(self, event: OutboundEvent) -> None:
        """Keep a metrics event's sample for each ``vm:<id>`` room it was sent to."""
        if event.resource != METRICS_RESOURCE:
            return
        for room in event.rooms:
            if room.startswith(VM_ROOM_PREFIX):
                self.add(room[len(VM_ROOM_PREFIX) :], event.data)
