"""`vmpulse emit` and `vmpulse directory`: the platform's side from a shell.

Input is validated before anything is sent; bad input exits with status 2 and
a message saying what is wrong, a broker that cannot be reached with 1.
The broker is VMPULSE_KAFKA_BOOTSTRAP, or the one a running `vmpulse up`
recorded in ``<data dir>/up.json``. On a fresh cluster the commands create the
topics first, as a starting stage does (same prefix, partitions and durability
rule), so the platform may seed the directory before any stage ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from infra.config import Settings
from schemas.directory import Department, User, Vm
from schemas.topics import Topics
from vmpulse.publish import (
    DIRECTORY_KINDS,
    PublishError,
    check_id,
    delete_record,
    make_event,
    put_record,
    send_event,
)
from vmpulse.up_info import read_up_info

__all__ = ["add_platform_commands", "run_platform_command"]

_WAIT_S = 15.0
"""Longest wait for the broker to answer (VMPULSE_KAFKA_WAIT_S is for stages)."""


def add_platform_commands(sub: Any) -> None:
    """Add the `emit` and `directory` subcommands to the `vmpulse` parser."""
    emit = sub.add_parser("emit", help="publish a resource event to control.events")
    emit.add_argument("resource", help="vms, users, departments, applications, alerts, ...")
    emit.add_argument("action", help="create, update, delete, power_on, ...")
    emit.add_argument("--data", default="null", help="the event's data as JSON")
    emit.add_argument("--by", default=None, help="id of the user who triggered it")

    d = sub.add_parser("directory", help="upsert or delete users, VMs and departments")
    dsub = d.add_subparsers(dest="op", required=True)
    put = dsub.add_parser("put", help="create or replace a record")
    kinds = put.add_subparsers(dest="kind", required=True)
    user = kinds.add_parser("user")
    user.add_argument("id")
    user.add_argument("--name", default="")
    user.add_argument("--role", default="user", choices=("user", "admin"))
    user.add_argument("--department", default=None)
    vm = kinds.add_parser("vm")
    vm.add_argument("id")
    vm.add_argument("--name", default="")
    vm.add_argument("--owner", default=None)
    vm.add_argument("--department", default=None)
    dept = kinds.add_parser("department")
    dept.add_argument("id")
    dept.add_argument("--name", default="")
    delete = dsub.add_parser("delete", help="delete a record (tombstone)")
    delete.add_argument("kind", choices=DIRECTORY_KINDS)
    delete.add_argument("id")


def _bootstrap(settings: Settings) -> str | None:
    if settings.kafka.bootstrap:
        return settings.kafka.bootstrap
    info = read_up_info(settings.data_dir)
    return (info.kafka_bootstrap or None) if info is not None else None


def _record(args: argparse.Namespace) -> User | Vm | Department:
    if args.kind == "user":
        return User(id=args.id, name=args.name, role=args.role, department=args.department)
    if args.kind == "vm":
        return Vm(id=args.id, name=args.name, owner=args.owner, department=args.department)
    return Department(id=args.id, name=args.name)


def run_platform_command(settings: Settings, args: argparse.Namespace) -> int:
    """Validate, then publish; the exit status says which of the two failed."""
    from aiokafka.errors import KafkaError

    from infra.kafka_io import ensure_settings_topics, make_producer, wait_for_leaders

    topics = Topics(settings.kafka.topic_prefix)
    try:
        if args.command == "emit":
            try:
                data = json.loads(args.data)
            except ValueError as exc:
                raise PublishError(f"--data is not valid JSON: {exc}") from exc
            event = make_event(args.resource, args.action, data, args.by)
        elif args.op == "put":
            record = _record(args)
        else:
            check_id(f"{args.kind} id", args.id)
    except PublishError as exc:
        print(f"invalid input: {exc}", file=sys.stderr)
        return 2
    bootstrap = _bootstrap(settings)
    if bootstrap is None:
        print(
            "no broker: set VMPULSE_KAFKA_BOOTSTRAP, or start `vmpulse up` "
            f"(it records its broker in {settings.data_dir / 'up.json'})",
            file=sys.stderr,
        )
        return 2

    # A fresh cluster has no topics until a stage created them: create them here the
    # same way (the one rule of infra/kafka_io.py), so the platform may publish first.
    # A command waits less for a broker than a starting container does.
    with_broker = settings.replace(
        kafka={"bootstrap": bootstrap, "wait_s": min(settings.kafka.wait_s, _WAIT_S)}
    )

    async def send() -> str:
        await ensure_settings_topics(with_broker)
        auth = settings.kafka.auth
        producer = make_producer(bootstrap, linger_ms=0, client_id="vmpulse-cli", auth=auth)
        await asyncio.wait_for(producer.start(), 15)
        try:
            # a topic created a moment ago: its leaders announced, not yet serving
            topic = topics.control_events if args.command == "emit" else topics.directory
            partitions = await producer.partitions_for(topic)
            await wait_for_leaders(bootstrap, [topic], len(partitions), auth=auth)
            if args.command == "emit":
                await send_event(producer, topics, event)
                return f"published {event.resource}:{event.action} id={event.id}"
            if args.op == "put":
                await put_record(producer, topics, record)
                return f"put {args.kind}:{args.id}"
            await delete_record(producer, topics, args.kind, args.id)
            return f"deleted {args.kind}:{args.id}"
        finally:
            await producer.stop()

    try:
        print(asyncio.run(send()))
    except PublishError as exc:
        print(f"invalid input: {exc}", file=sys.stderr)
        return 2
    except (KafkaError, TimeoutError, OSError) as exc:
        print(f"cannot publish to {bootstrap}: {exc}", file=sys.stderr)
        return 1
    return 0
