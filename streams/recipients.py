"""Who receives a resource event: the routing rules, as one pure function over the directory.

The worker decides recipients once, here; gateways only deliver to the users
and rooms an :class:`OutboundEvent` names (gateway/deliveries.py). Every rule
names people explicitly, so a user who is not named never sees the event.

Rules (DESIGN.md, issue 5):

==============  ==========================================================
resource        recipients
==============  ==========================================================
vms             triggering user, the VM's owner, admins, members of the
                VM's department
users           admins and the user
departments     admins and the department's members
applications    admins and the users the event concerns (below)
alerts          the VM's owner, admins, and the room ``vm:<id>`` (watchers)
metrics         the room ``vm:<id>`` only
anything else   admins and the triggering user
==============  ==========================================================

Where ``data`` names the resource (a JSON object):

* vms, alerts, metrics: ``vmId`` (or ``id`` for vms). When the directory does
  not know the VM (a ``delete`` may overtake or follow its tombstone), the
  ``owner`` and ``department`` in ``data`` are used instead. ``control.events``
  is written only by the platform backend, so its ``data`` is trusted.
* users: ``id`` (or ``userId``).
* departments: ``id`` (or ``departmentId``).
* applications: ``users`` (a list of user ids) and ``departments`` (a list of
  department ids whose members are concerned); both optional. An application
  event that names nobody reaches only the admins.

An event whose ``data`` does not name its resource still reaches the admins
(and the triggering user), never anyone else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from schemas.directory import Directory
from schemas.events import OutboundEvent, ResourceEvent, data_text, vm_room

__all__ = ["route_event"]


def _texts(data: Mapping[str, Any], name: str) -> list[str]:
    value = data.get(name)
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and v]


def _data(event: ResourceEvent) -> Mapping[str, Any]:
    return event.data if isinstance(event.data, Mapping) else {}


def _vm_people(data: Mapping[str, Any], directory: Directory) -> tuple[str | None, list[str]]:
    """The VM's owner and department members, from the directory or, if unknown, from data."""
    vm_id = data_text(data, "vmId", "id")
    vm = directory.vms.get(vm_id) if vm_id else None
    if vm is not None:
        owner, department = vm.owner, vm.department
    else:
        owner, department = data_text(data, "owner"), data_text(data, "department")
    return owner, directory.department_members(department)


def _unique(ids: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(i for i in ids if i))


def route_event(event: ResourceEvent, directory: Directory) -> OutboundEvent:
    """The outbound event for ``event`` with exactly the recipients the rules name."""
    data = _data(event)
    users: list[str | None] = []
    admins = True
    rooms: list[str] = []
    if event.resource == "vms":
        owner, members = _vm_people(data, directory)
        users = [event.triggered_by, owner, *members]
    elif event.resource == "users":
        users = [data_text(data, "id", "userId")]
    elif event.resource == "departments":
        users = list(directory.department_members(data_text(data, "id", "departmentId")))
    elif event.resource == "applications":
        users = list(_texts(data, "users"))
        for department in _texts(data, "departments"):
            users += directory.department_members(department)
    elif event.resource == "alerts":
        owner, _ = _vm_people(data, directory)
        users = [owner]
        vm_id = data_text(data, "vmId")
        rooms = [vm_room(vm_id)] if vm_id else []
    elif event.resource == "metrics":
        admins = False
        vm_id = data_text(data, "vmId")
        rooms = [vm_room(vm_id)] if vm_id else []
    else:
        users = [event.triggered_by]
    return OutboundEvent(
        resource=event.resource,
        action=event.action,
        data=event.data,
        id=event.id,
        timestamp=event.time,
        status=event.status,
        error=event.error,
        users=_unique(users),
        admins=admins,
        rooms=rooms,
    )
