"""The Socket.IO namespace: who a socket is, and which rooms it may join.

A socket is identified once, at connect, from its JWT and the directory; its
user id is kept server-side per sid and every later request (``subscribe``,
``metrics:recent``) is judged on that, never on anything in the request except
the VM id, which is only a lookup key. Handlers never raise on client input:
they answer ``{ok: false, error}`` so a malformed message cannot kill a task.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import socketio

from gateway.auth import DEFAULT_ALGORITHMS, handshake_token, verify_token
from gateway.consumer import RecentMetrics
from gateway.exceptions import AuthError, UnknownUser
from gateway.rooms import ADMIN_ROOM, parse_vm_id, vm_room
from schemas.directory import Directory
from vmpulse.config import Secret

__all__ = ["CONNECTED_EVENT", "DEFAULT_RECENT_COUNT", "GatewayNamespace"]

log = logging.getLogger(__name__)

CONNECTED_EVENT = "connected"
DEFAULT_RECENT_COUNT = 10
_DENIED = "Access denied"  # one answer for "no such VM" and "not yours": no probing
_BAD_VM_ID = "Invalid vmId"
_NOT_CONNECTED = "Not connected"


def _ack(ok: bool, error: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"ok": ok, "error": error, **extra}


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class GatewayNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """Handlers for ``/``: connect, subscribe, unsubscribe, metrics:recent, disconnect."""

    def __init__(
        self,
        *,
        directory: Directory,
        jwt_secret: Secret,
        namespace_of: Callable[[str], str],
        recent: RecentMetrics | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        namespace: str = "/",
    ) -> None:
        super().__init__(namespace)
        self._directory = directory
        self._secret = jwt_secret
        self._namespace_of = namespace_of
        self._recent = recent
        self._algorithms = tuple(algorithms)
        self._users: dict[str, str] = {}
        self._subscriptions: dict[str, set[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connected_sids(self) -> int:
        return len(self._users)

    def user_of(self, sid: str) -> str | None:
        return self._users.get(sid)

    def subscriptions_of(self, sid: str) -> frozenset[str]:
        return frozenset(self._subscriptions.get(sid, ()))

    async def trigger_event(self, event: str, *args: Any) -> Any:
        # "metrics:recent" is not a valid method name; map it to on_metrics_recent.
        return await super().trigger_event(event.replace(":", "_"), *args)

    async def on_connect(self, sid: str, environ: Mapping[str, Any], auth: object = None) -> None:
        try:
            identity = verify_token(
                handshake_token(auth, environ), self._secret, algorithms=self._algorithms
            )
            user = self._directory.users.get(identity.user_id)
            if user is None:
                raise UnknownUser()
        except AuthError as exc:
            log.info("refused socket %s: %s", sid, exc)
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        ns = self._namespace_of(user.id)
        self._users[sid] = user.id
        await self.enter_room(sid, ns)
        if user.is_admin:
            await self.enter_room(sid, ADMIN_ROOM)
        greeting = {
            "message": "Connected to vmpulse",
            "namespace": ns,
            "user": {"id": user.id, "name": user.name, "role": user.role},
            "timestamp": _utc_now(),
        }
        # The CONNECT packet is sent after this handler returns; emitting from a
        # task keeps `connected` behind it, as clients expect.
        self._spawn(self.emit(CONNECTED_EVENT, greeting, to=sid), f"greet-{sid}")

    async def on_disconnect(self, sid: str, reason: object = None) -> None:
        self._users.pop(sid, None)
        self._subscriptions.pop(sid, None)

    async def on_subscribe(self, sid: str, data: object = None, *_: object) -> dict[str, Any]:
        user_id = self._users.get(sid)
        if user_id is None:
            return _ack(False, _NOT_CONNECTED)
        vm_id = parse_vm_id(data.get("vmId") if isinstance(data, Mapping) else None)
        if vm_id is None:
            return _ack(False, _BAD_VM_ID)
        if not self._directory.may_watch(user_id, vm_id):
            return _ack(False, _DENIED)
        await self.enter_room(sid, vm_room(vm_id))
        self._subscriptions.setdefault(sid, set()).add(vm_id)
        return _ack(True)

    async def on_unsubscribe(self, sid: str, data: object = None, *_: object) -> dict[str, Any]:
        if sid not in self._users:
            return _ack(False, _NOT_CONNECTED)
        vm_id = parse_vm_id(data.get("vmId") if isinstance(data, Mapping) else None)
        if vm_id is None:
            return _ack(False, _BAD_VM_ID)
        subs = self._subscriptions.get(sid)
        if subs is not None and vm_id in subs:
            subs.discard(vm_id)
            await self.leave_room(sid, vm_room(vm_id))
        return _ack(True)

    async def on_metrics_recent(self, sid: str, data: object = None, *_: object) -> dict[str, Any]:
        user_id = self._users.get(sid)
        if user_id is None:
            return _ack(False, _NOT_CONNECTED)
        if not isinstance(data, Mapping):
            return _ack(False, _BAD_VM_ID)
        vm_id = parse_vm_id(data.get("vmId"))
        if vm_id is None:
            return _ack(False, _BAD_VM_ID)
        if not self._directory.may_watch(user_id, vm_id):
            return _ack(False, _DENIED)
        if self._recent is None:
            return _ack(False, "not implemented")
        count = data.get("count", DEFAULT_RECENT_COUNT)
        if isinstance(count, bool) or not isinstance(count, int):
            count = DEFAULT_RECENT_COUNT
        return _ack(True, vmId=vm_id, samples=self._recent.latest(vm_id, count))

    async def revoke_lost_access(self) -> int:
        """Leave every ``vm:<id>`` room whose user may no longer watch the VM.

        Called after directory changes (a VM changed owner, a user left a
        department); returns how many subscriptions were dropped.
        """
        dropped = 0
        for sid, subs in list(self._subscriptions.items()):
            user_id = self._users.get(sid)
            for vm_id in list(subs):
                if user_id is None or not self._directory.may_watch(user_id, vm_id):
                    subs.discard(vm_id)
                    await self.leave_room(sid, vm_room(vm_id))
                    dropped += 1
        return dropped

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("namespace task %s failed: %r", task.get_name(), task.exception())

    async def close(self) -> None:
        """Cancel the tasks this namespace started (greetings) and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
