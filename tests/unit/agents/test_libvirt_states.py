"""libvirt numbers to vmpulse words, and the hypervisor.events record format."""

from __future__ import annotations

import datetime as dt

import libvirt

from agents.libvirt_states import event_state, state_name
from schemas.hypervisor import STATES, HypervisorEvent, decode_event, encode_event


def test_states_match_libvirt_constants() -> None:
    assert state_name(libvirt.VIR_DOMAIN_RUNNING) == "running"
    assert state_name(libvirt.VIR_DOMAIN_PAUSED) == "paused"
    assert state_name(libvirt.VIR_DOMAIN_SHUTOFF) == "shutoff"
    assert state_name(libvirt.VIR_DOMAIN_PMSUSPENDED) == "pmsuspended"
    assert state_name(99) == "nostate"


def test_events_match_libvirt_constants() -> None:
    assert event_state(
        libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED
    ) == ("paused", "paused")
    assert event_state(
        libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED
    ) == ("shutoff", "destroyed")
    assert event_state(
        libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED
    ) == ("running", "booted")
    assert event_state(
        libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED
    ) == ("running", "unpaused")
    assert event_state(
        libvirt.VIR_DOMAIN_EVENT_CRASHED, libvirt.VIR_DOMAIN_EVENT_CRASHED_PANICKED
    ) == ("crashed", "panicked")
    assert event_state(libvirt.VIR_DOMAIN_EVENT_STOPPED, 77) == ("shutoff", "detail_77")
    assert event_state(123, 0) is None
    for ev in range(9):
        mapped = event_state(ev, 0)
        assert mapped is not None and mapped[0] in STATES


def test_record_field_names_are_the_contract() -> None:
    t = dt.datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=dt.UTC)
    raw = encode_event(HypervisorEvent("a-b", "paused", "paused", t))
    assert raw == (
        b'{"vm_id":"a-b","state":"paused","reason":"paused","time":"2026-01-02T03:04:05.006000Z"}'
    )
    assert decode_event(raw).time == t
