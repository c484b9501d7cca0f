"""Helpers for the worker's end-to-end tests: browsers, a gateway, the worker, waiting.

Everything is real: Socket.IO clients over TCP, the gateway service, the Faust
app on the session broker and the session chDB store.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import faust
import socketio

from gateway.auth import issue_token
from gateway.service import GatewayService
from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.directory import Department, User, Vm
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore
from streams.app import create_app
from vmpulse.publish import put_record

__all__ = ["DEADLINE_S", "Browser", "gateway_with", "metrics_line", "running_worker", "until"]

DEADLINE_S = 20.0


async def until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    """Poll a condition nothing signals; fail with ``what`` after the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Browser:
    """A Socket.IO client that records every event, with the user's namespace shown as ``ns``."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.sio = socketio.AsyncClient(reconnection=False)
        self.namespace = ""
        self.events: list[tuple[str, Any]] = []
        self.worker_stats: dict[str, int] | None = None
        """The counters of the worker this browser watches, where a fixture sets them."""
        self.sio.on("*", self._record)

    async def _record(self, event: str, *args: Any) -> None:
        payload = args[0] if args else None
        if event == "connected":
            assert payload is not None, "the greeting carries the user's namespace"
            self.namespace = payload["namespace"]
        name = event.replace(self.namespace + ":", "ns:", 1) if self.namespace else event
        self.events.append((name, payload))

    async def connect(self, settings: Settings, url: str) -> None:
        await self.sio.connect(
            url,
            auth={"token": issue_token(settings.tokens.secret, self.user)},
            transports=["websocket"],
            wait_timeout=10,
        )
        await until(lambda: bool(self.namespace), f"{self.user}'s greeting")

    def names(self) -> list[str]:
        return [n for n, _ in self.events if n != "connected"]

    def payloads(self, name: str) -> list[Any]:
        return [p for n, p in self.events if n == name]

    def got(self, name: str, ident: str) -> bool:
        return any(isinstance(p, dict) and p.get("id") == ident for p in self.payloads(name))


@contextlib.asynccontextmanager
async def gateway_with(
    settings: Settings, topics: Topics, records: Iterable[User | Vm | Department]
) -> AsyncIterator[GatewayService]:
    """Publish the directory, then run a gateway until it has read it and consumes."""
    producer = make_producer(settings.kafka.bootstrap or "", linger_ms=0)
    await producer.start()
    try:
        for record in records:
            await put_record(producer, topics, record)
    finally:
        await producer.stop()
    service = GatewayService(settings)
    await service.start()
    try:
        await until(lambda: service.ready, "gateway ready")
        yield service
    finally:
        await service.stop()


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, store: ClickHouseStore) -> AsyncIterator[faust.App]:
    """The worker on an emptied session store.

    The stored high-water marks are per partition of *the* agent.raw of a
    deployment; tests share one store but each has its own topics, so rows of an
    earlier test would make this worker skip the first offsets of its own.
    """
    await store.command("TRUNCATE TABLE IF EXISTS system_metrics")
    app = create_app(settings, store, batch_within_s=0.05)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def metrics_line(vm_id: str, cpu: float, ts: dt.datetime | None = None) -> bytes:
    """A dialect-1 ``system_metrics`` line as an agent writes it."""
    when = (ts or dt.datetime.now(dt.UTC)).isoformat()
    return json.dumps(
        {
            "type": "system_metrics",
            "vmId": vm_id,
            "timestamp": when,
            "metrics": {"cpu": {"usage_percent": cpu}, "memory": {"used_kb": 1, "total_kb": 2}},
        }
    ).encode()
