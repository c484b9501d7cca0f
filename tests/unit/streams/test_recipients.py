"""Routing rules over a plain Directory: each rule names exactly its people."""

from __future__ import annotations

import pytest

from schemas.directory import Department, Directory, User, Vm, directory_key, encode_record
from schemas.events import ResourceEvent, routing_key
from streams.recipients import route_event


@pytest.fixture
def directory() -> Directory:
    d = Directory()
    for record in (
        Department(id="eng"),
        User(id="root", role="admin"),
        User(id="alice", department="eng"),
        User(id="dave", department="eng"),
        User(id="bob", department="ops"),
        User(id="eve"),
        Vm(id="vm-a", owner="alice", department="eng"),
        Vm(id="vm-b", owner="bob", department="ops"),
    ):
        d.apply(directory_key(record), encode_record(record))
    return d


def test_vm_event_reaches_trigger_owner_department_and_admins(directory: Directory) -> None:
    out = route_event(
        ResourceEvent(resource="vms", action="update", data={"id": "vm-a"}, triggered_by="bob"),
        directory,
    )
    assert out.users == ["bob", "alice", "dave"]
    assert out.admins is True and out.rooms == []


def test_unknown_vm_falls_back_to_owner_and_department_in_data(directory: Directory) -> None:
    event = ResourceEvent(
        resource="vms", action="delete", data={"id": "gone", "owner": "eve", "department": "eng"}
    )
    assert route_event(event, directory).users == ["eve", "alice", "dave"]


def test_user_event_reaches_the_user_and_admins(directory: Directory) -> None:
    out = route_event(
        ResourceEvent(resource="users", action="update", data={"id": "eve"}, triggered_by="bob"),
        directory,
    )
    assert out.users == ["eve"] and out.admins is True


def test_department_event_reaches_members_and_admins(directory: Directory) -> None:
    out = route_event(
        ResourceEvent(resource="departments", action="update", data={"id": "eng"}), directory
    )
    assert out.users == ["alice", "dave"] and out.admins is True


def test_application_event_reaches_named_users_and_departments(directory: Directory) -> None:
    out = route_event(
        ResourceEvent(
            resource="applications",
            action="create",
            data={"id": "app1", "users": ["eve", 7], "departments": ["eng"]},
        ),
        directory,
    )
    assert out.users == ["eve", "alice", "dave"] and out.admins is True


def test_alert_reaches_owner_admins_and_watchers(directory: Directory) -> None:
    out = route_event(
        ResourceEvent(resource="alerts", action="create", data={"vmId": "vm-b"}), directory
    )
    assert out.users == ["bob"] and out.admins is True and out.rooms == ["vm:vm-b"]


def test_metrics_reach_only_the_vm_room(directory: Directory) -> None:
    out = route_event(
        ResourceEvent(resource="metrics", action="update", data={"vmId": "vm-a"}), directory
    )
    assert out.users == [] and out.admins is False and out.rooms == ["vm:vm-a"]


@pytest.mark.parametrize("data", [None, "x", [1], {"id": 5}])
def test_malformed_data_reaches_admins_only(directory: Directory, data: object) -> None:
    out = route_event(ResourceEvent(resource="users", action="update", data=data), directory)
    assert out.users == [] and out.admins is True and out.rooms == []


def test_outbound_keeps_id_time_and_payload(directory: Directory) -> None:
    event = ResourceEvent(resource="vms", action="power_on", data={"id": "vm-a"})
    out = route_event(event, directory)
    assert (out.id, out.timestamp, out.data) == (event.id, event.time, event.data)
    assert routing_key(event) == "vm-a"
    anonymous = ResourceEvent(resource="vms", action="x")
    assert routing_key(anonymous) == anonymous.id
