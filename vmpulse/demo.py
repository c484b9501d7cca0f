"""The demo fleet and directory that `vmpulse up` seeds: an admin, a few users, their VMs.

VM ids are derived from their index (uuid5), so a restarted `vmpulse up` keeps
the same VMs and their metric history lines up.
"""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer

from schemas.directory import Department, User, Vm, directory_key, encode_record
from schemas.topics import Topics

__all__ = ["demo_directory", "demo_user_ids", "demo_vm_ids", "publish_records"]

_NS = uuid.UUID("6f1c3d1e-8a0b-4a52-9a55-5d8e7c2b9f10")
_USERS = (("alice", "engineering"), ("bob", "engineering"), ("carol", "finance"))


def demo_vm_ids(count: int) -> list[str]:
    return [str(uuid.uuid5(_NS, f"vm-{i}")) for i in range(count)]


def demo_user_ids() -> list[str]:
    """The users `vmpulse up` seeds, the admin first."""
    return ["admin", *(name for name, _ in _USERS)]


def demo_directory(vm_ids: list[str]) -> list[User | Vm | Department]:
    records: list[User | Vm | Department] = [
        Department(id="engineering", name="Engineering"),
        Department(id="finance", name="Finance"),
        User(id="admin", name="Administrator", role="admin"),
    ]
    records += [User(id=name, name=name.title(), department=dept) for name, dept in _USERS]
    for i, vm_id in enumerate(vm_ids):
        owner, dept = _USERS[i % len(_USERS)]
        records.append(Vm(id=vm_id, name=f"demo-vm-{i:03d}", owner=owner, department=dept))
    return records


async def publish_records(
    producer: AIOKafkaProducer, topics: Topics, records: list[User | Vm | Department]
) -> None:
    """Upsert directory records (the compacted topic keeps the latest per key)."""
    for record in records:
        await producer.send(
            topics.directory, encode_record(record), key=directory_key(record).encode()
        )
    await producer.flush()
