"""Admission pools of a listener: identifying (capped, per peer, oldest evicted), served
(per-VM cap, oldest closed), and the shared agent slots."""

from __future__ import annotations

import pytest

from agents.admission import Admission, Slots
from agents.exceptions import Refused


def _pools(identifying: int = 3, per_peer: int = 2, per_vm: int = 2) -> Admission[str]:
    return Admission(max_identifying=identifying, max_per_peer=per_peer, max_per_vm=per_vm)


def test_a_peer_past_its_share_is_refused_and_others_still_get_in() -> None:
    pools = _pools(identifying=10, per_peer=2)
    assert pools.begin("a1", "10.0.0.9") == [] and pools.begin("a2", "10.0.0.9") == []
    with pytest.raises(Refused) as err:
        pools.begin("a3", "10.0.0.9")
    assert err.value.reason == "identify_peer_cap"
    assert pools.begin("agent", "10.0.0.1") == []
    assert pools.identifying == 3 and pools.identifying_from("10.0.0.9") == 2
    pools.end("a1")  # one of the peer's connections ends: room for one more
    assert pools.begin("a4", "10.0.0.9") == []


def test_a_full_pool_evicts_its_oldest_connection_for_a_newcomer() -> None:
    pools = _pools(identifying=3, per_peer=3)
    for name, peer in [("old", "p1"), ("mid", "p2"), ("new", "p3")]:
        assert pools.begin(name, peer) == []
    assert pools.begin("agent", "p4") == ["old"]
    assert pools.identifying == 3 and pools.identifying_from("p1") == 0
    pools.end("old")  # the evicted one's own cleanup later is harmless
    assert pools.identifying == 3
    assert pools.begin("agent2", "p4") == ["mid"]


def test_identified_connections_leave_the_identifying_pool() -> None:
    pools = _pools(identifying=2, per_peer=2)
    pools.begin("c1", "p")
    pools.begin("c2", "p")
    assert pools.identified("c1", "vm-a") == []
    assert pools.identifying == 1 and pools.identifying_from("p") == 1 and pools.served("vm-a") == 1
    assert pools.begin("c3", "p") == []  # room again: c1 no longer counts as identifying


def test_a_vm_past_its_cap_loses_its_oldest_connection_and_only_its_own() -> None:
    pools = _pools(identifying=10, per_peer=10, per_vm=2)
    for conn in ["a1", "a2", "a3", "b1"]:
        pools.begin(conn, "p")
    assert pools.identified("a1", "vm-a") == []
    assert pools.identified("b1", "vm-b") == []
    assert pools.identified("a2", "vm-a") == []
    assert pools.identified("a3", "vm-a") == ["a1"]
    assert pools.served("vm-a") == 2 and pools.served("vm-b") == 1
    pools.end("a1")  # idempotent: already closed by the cap
    pools.end("a2")
    pools.end("a3")
    assert pools.served("vm-a") == 0 and pools.served("vm-b") == 1


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        _pools(identifying=0)


def test_slots_are_taken_only_while_there_is_room() -> None:
    slots = Slots(2)
    assert slots.take() and slots.take() and slots.full
    assert not slots.take()
    slots.give()
    assert not slots.full and slots.take()
