"""Who owns what: directory records and the in-memory view built from them.

The ``directory`` topic is compacted; its keys are ``user:<id>``, ``vm:<id>``
and ``department:<id>`` and a tombstone (null value) deletes a record. Both
the worker (routing) and the gateway (authorization) fold the topic into a
:class:`Directory`. This module is the fold, without any Kafka in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

__all__ = [
    "Department",
    "Directory",
    "DirectoryError",
    "User",
    "Vm",
    "directory_key",
    "encode_record",
]


class DirectoryError(ValueError):
    """A directory record or key is malformed."""


class User(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    id: str
    name: str = ""
    role: str = "user"
    department: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Vm(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    id: str
    name: str = ""
    owner: str | None = None
    department: str | None = None


class Department(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    id: str
    name: str = ""


Record = User | Vm | Department
_KINDS: dict[str, type[User] | type[Vm] | type[Department]] = {
    "user": User,
    "vm": Vm,
    "department": Department,
}
_encoder = msgspec.json.Encoder()


def directory_key(record: Record) -> str:
    kind = {User: "user", Vm: "vm", Department: "department"}[type(record)]
    return f"{kind}:{record.id}"


def encode_record(record: Record) -> bytes:
    return _encoder.encode(record)


class Directory:
    """The current users, VMs and departments, and the questions routing asks of them."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.vms: dict[str, Vm] = {}
        self.departments: dict[str, Department] = {}

    def apply(self, key: bytes | str, value: bytes | None) -> None:
        """Fold one record of the topic in; raises DirectoryError for a malformed one."""
        text = key.decode() if isinstance(key, bytes) else key
        kind, sep, ident = text.partition(":")
        if not sep or not ident or kind not in _KINDS:
            raise DirectoryError(f"bad directory key {text!r}")
        tables: dict[str, dict[str, Any]] = {
            "user": self.users,
            "vm": self.vms,
            "department": self.departments,
        }
        table = tables[kind]
        if value is None:
            table.pop(ident, None)
            return
        try:
            record = msgspec.json.decode(value, type=_KINDS[kind])
        except msgspec.ValidationError as exc:
            raise DirectoryError(f"bad {kind} record for {ident!r}: {exc}") from exc
        if record.id != ident:
            raise DirectoryError(f"record id {record.id!r} does not match key {text!r}")
        table[ident] = record

    def admins(self) -> list[str]:
        return [u.id for u in self.users.values() if u.is_admin]

    def department_members(self, department: str | None) -> list[str]:
        if department is None:
            return []
        return [u.id for u in self.users.values() if u.department == department]

    def may_watch(self, user_id: str, vm_id: str) -> bool:
        """Admins, the VM's owner and members of the VM's department may watch it."""
        user = self.users.get(user_id)
        vm = self.vms.get(vm_id)
        if user is None or vm is None:
            return False
        if user.is_admin or vm.owner == user_id:
            return True
        return vm.department is not None and user.department == vm.department

    def visible_vms(self, user_id: str) -> Iterable[Vm]:
        return (vm for vm in self.vms.values() if self.may_watch(user_id, vm.id))
