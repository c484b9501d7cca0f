"""Who may hold a connection on a listening transport: pure bookkeeping, no I/O.

Anyone who can reach the TCP port, and any guest over vsock, can open
connections. Before this module, a connection took one of the bridge's agent
slots (``VMPULSE_AGENT_MAX_CONNECTIONS``, 10,000) as soon as it was accepted, so
10,000 connections that never said hello locked every agent out for as long
as the hello timeout, again and again. Now a connection lives in two pools:

1. **identifying** (the TCP hello, the vsock CID lookup): a small pool of its own
   (``VMPULSE_AGENT_MAX_IDENTIFYING``, 256) with a cap per peer address
   (``VMPULSE_AGENT_MAX_IDENTIFYING_PER_PEER``, 8; a peer past it is refused) and
   a short deadline (``VMPULSE_AGENT_HELLO_TIMEOUT_S``, 5 s). When the pool is
   full a newcomer is still let in and the *oldest* identifying connection is
   evicted: an agent says hello in its first round trip, so the oldest are the
   silent ones, and an attacker would have to open a whole pool's worth of
   connections within an agent's round trip to keep it out.
2. **served** (identified): the agent slots, and at most
   ``VMPULSE_AGENT_MAX_CONNECTIONS_PER_VM`` (4) per VM. A VM that opens more
   loses its *oldest* connection, so a guest (the vsock CID is proof enough of
   identity) can only crowd out itself, never the other VMs.

:class:`Admission` holds one listener's pools; :class:`Slots` the agent slots
that all listeners of a bridge share. Both decide, the listener does the I/O
(closing what they say to close).
"""

from __future__ import annotations

import collections
from collections.abc import Hashable
from typing import Generic, TypeVar

from agents.exceptions import Refused

__all__ = ["Admission", "Slots"]

C = TypeVar("C", bound=Hashable)
"""A connection handle (the listener's own object); compared by identity."""


class Slots:
    """The agent slots of a bridge, shared by its listeners (served connections only)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def full(self) -> bool:
        return self.used >= self.limit

    def take(self) -> bool:
        if self.full:
            return False
        self.used += 1
        return True

    def give(self) -> None:
        self.used -= 1


class Admission(Generic[C]):
    """The identifying and served pools of one listener; see the module docstring."""

    def __init__(self, *, max_identifying: int, max_per_peer: int, max_per_vm: int) -> None:
        if min(max_identifying, max_per_peer, max_per_vm) < 1:
            raise ValueError("every admission limit must be >= 1")
        self.max_identifying = max_identifying
        self.max_per_peer = max_per_peer
        self.max_per_vm = max_per_vm
        # Insertion order is age: the first entry is the oldest identifying connection.
        self._identifying: dict[C, str] = {}
        self._per_peer: collections.Counter[str] = collections.Counter()
        self._by_vm: dict[str, dict[C, None]] = {}
        self._vm_of: dict[C, str] = {}

    @property
    def identifying(self) -> int:
        return len(self._identifying)

    def identifying_from(self, peer: str) -> int:
        return self._per_peer[peer]

    def served(self, vm_id: str) -> int:
        return len(self._by_vm.get(vm_id, ()))

    def begin(self, conn: C, peer: str) -> list[C]:
        """Admit ``conn`` from ``peer`` to the identifying pool.

        Returns the connections to evict (the oldest, when the pool was full);
        raises :class:`Refused` (``identify_peer_cap``) when ``peer`` holds its share.
        """
        if self._per_peer[peer] >= self.max_per_peer:
            raise Refused(
                "identify_peer_cap",
                f"{peer} already has {self._per_peer[peer]} connections saying hello",
            )
        evicted: list[C] = []
        while len(self._identifying) >= self.max_identifying:
            oldest = next(iter(self._identifying))
            self._leave_identifying(oldest)
            evicted.append(oldest)
        self._identifying[conn] = peer
        self._per_peer[peer] += 1
        return evicted

    def identified(self, conn: C, vm_id: str) -> list[C]:
        """Move ``conn`` from identifying to served under ``vm_id``.

        Returns the VM's connections to close (its oldest, past the per-VM cap).
        """
        self._leave_identifying(conn)
        mine = self._by_vm.setdefault(vm_id, {})
        mine[conn] = None
        self._vm_of[conn] = vm_id
        closing: list[C] = []
        while len(mine) > self.max_per_vm:
            oldest = next(iter(mine))
            self.end(oldest)
            closing.append(oldest)
        return closing

    def end(self, conn: C) -> None:
        """``conn`` is gone, from whichever pool holds it (idempotent)."""
        self._leave_identifying(conn)
        vm_id = self._vm_of.pop(conn, None)
        if vm_id is not None:
            mine = self._by_vm[vm_id]
            del mine[conn]
            if not mine:
                del self._by_vm[vm_id]

    def _leave_identifying(self, conn: C) -> None:
        peer = self._identifying.pop(conn, None)
        if peer is not None:
            self._per_peer[peer] -= 1
            if not self._per_peer[peer]:
                del self._per_peer[peer]
