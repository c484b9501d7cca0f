"""What the gateway integration tests share: real clients, the real broker, a running gateway.

Nothing here is a stand-in: clients are ``socketio.AsyncClient`` over TCP,
records go through the session's Kafka broker, and each gateway is a
:class:`GatewayService` on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import socketio

from gateway.auth import issue_token
from gateway.service import GatewayService
from infra.config import Settings
from schemas.directory import Department, User, Vm, directory_key, encode_record
from schemas.events import OutboundEvent, encode_outbound
from schemas.topics import Topics
from store.reader import Reader
from tests.support.kafka import produce

__all__ = [
    "DEADLINE_S",
    "DIRECTORY",
    "Client",
    "connect",
    "hang_up",
    "publish",
    "put_directory",
    "running",
    "token",
    "until",
]

DEADLINE_S = 10.0

DIRECTORY: tuple[User | Vm, ...] = (
    User(id="root", name="Root", role="admin"),
    User(id="alice", name="Alice", department="eng"),
    User(id="bob", name="Bob", department="ops"),
    Vm(id="vm-a", name="alpha", owner="alice", department="eng"),
    Vm(id="vm-b", name="beta", owner="bob", department="ops"),
)
"""A small directory: an admin, two users in two departments, a VM each."""


class Client:
    """A socketio.AsyncClient plus every event it received, in order."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.refusal: Any = None
        self.disconnected = asyncio.Event()
        self._changed = asyncio.Event()
        self.sio.on("*", self._record)
        self.sio.on("connect_error", self._refused)
        self.sio.on("disconnect", self._gone)

    async def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, args[0] if len(args) == 1 else args))
        self._changed.set()

    async def _refused(self, data: Any) -> None:
        self.refusal = data

    async def _gone(self, *_: Any) -> None:
        self.disconnected.set()
        self._changed.set()

    def named(self, event: str) -> list[Any]:
        return [p for n, p in self.events if n == event]

    def names(self) -> list[str]:
        return [n for n, _ in self.events]

    async def wait(self, condition: Callable[[], bool], timeout: float = DEADLINE_S) -> None:  # noqa: ASYNC109
        """Wait until ``condition()`` holds, re-checking whenever an event arrives."""

        async def loop() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    async def wait_for(self, event: str, timeout: float = DEADLINE_S) -> Any:  # noqa: ASYNC109
        await self.wait(lambda: bool(self.named(event)), timeout)
        return self.named(event)[0]

    @property
    def position(self) -> str | None:
        """The position of the last event received that carried one."""
        for _, payload in reversed(self.events):
            if isinstance(payload, dict) and "position" in payload:
                return str(payload["position"])
        return None


async def until(condition: Callable[[], bool], timeout: float = DEADLINE_S) -> None:  # noqa: ASYNC109
    """Poll server-side state that has no event of its own, with a deadline."""

    async def loop() -> None:
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


def token(settings: Settings, user_id: str, **kwargs: Any) -> str:
    return issue_token(settings.tokens.secret, user_id, **kwargs)


async def connect(
    url: str,
    auth: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    transports: Sequence[str] = ("websocket",),
    name: str = "",
    into: list[Client] | None = None,
) -> Client:
    client = Client(name)
    if into is not None:
        into.append(client)
    await client.sio.connect(
        url, auth=auth, headers=headers or {}, transports=list(transports), wait_timeout=5
    )
    return client


async def publish(settings: Settings, *events: OutboundEvent, key: bytes | None = b"k") -> None:
    """One key: one partition, so gateways handle them in this order. key=None: by event id."""
    topic = Topics(settings.kafka.topic_prefix).events_outbound
    await produce(
        settings,
        topic,
        [(key if key is not None else e.id.encode(), encode_outbound(e)) for e in events],
    )


async def put_directory(
    settings: Settings, *records: User | Vm | Department, delete: Sequence[str] = ()
) -> None:
    topic = Topics(settings.kafka.topic_prefix).directory
    rows: list[tuple[bytes, bytes | None]] = [
        (directory_key(r).encode(), encode_record(r)) for r in records
    ]
    rows += [(key.encode(), None) for key in delete]
    await produce(settings, topic, rows)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, reader: Reader | None = None, **kwargs: Any
) -> AsyncIterator[GatewayService]:
    service = GatewayService(settings, reader=reader, **kwargs)
    await service.start()
    try:
        yield service
    finally:
        await asyncio.wait_for(service.stop(), DEADLINE_S)


async def hang_up(client: Client) -> None:
    """Disconnect like a closing tab: a polling client does not wait out its long poll.

    (python-engineio's polling client otherwise waits for the pending GET, up
    to the 25 s ping interval, before ``disconnect`` returns.)
    """
    if not client.sio.connected:
        return
    if client.sio.transport() == "polling":
        await client.sio.eio.disconnect(abort=True)
        await client.wait(lambda: client.disconnected.is_set())
    else:
        await client.sio.disconnect()


async def close_all(clients: Iterable[Client]) -> None:
    for client in clients:
        await hang_up(client)


def short_token(settings: Settings, user_id: str, seconds: int) -> str:
    return issue_token(settings.tokens.secret, user_id, ttl=dt.timedelta(seconds=seconds))
