"""Finds per-VM unix sockets and keeps one client connection to each.

The hypervisor creates ``<socket_dir>/<vm-uuid>.socket`` for every VM (QEMU's
virtio-serial chardev in server mode) and the host connects to it as the
client. The VM id comes only from the file name (DESIGN.md, Identity and trust),
so a guest cannot claim another VM's identity by what it writes.

The directory is polled with ``os.scandir`` rather than watched with inotify:
it works on every filesystem and platform, and a socket found late loses
nothing because the guest's writes wait in the virtio-serial queue. A poll
(every 50 ms: a ``stat`` of the directory) lists the entries only when the
directory changed (its mtime moves when an entry comes or goes), or changed so
recently that another change may share its mtime (then at most every
:data:`RELIST_S`), or when :data:`FULL_SCAN_S` passed: at 2,000 VMs, listing and
parsing every name four times a second was a tenth of the bridge's loop. (Until
session 11 the poll itself ran every 0.25 s: a new VM waited 125 ms on average
before its first line was read.)

Since the name is the identity, only a real socket created by a trusted user
may carry it (:func:`refusal`): a symbolic link (``<vm-b>.socket`` pointing at
VM A's socket would file A's lines under B), a second hard link to a socket
(the same trick without a symlink), a file that is not a socket, and a socket
not owned by one of the configured owners (``VMPULSE_SOCKET_OWNER``; by
default the bridge's own user and root) are refused and counted once per
appearance. The check is made again on the file the bridge connects to: it is
opened with ``O_PATH | O_NOFOLLOW``, checked with ``fstat`` and connected
through ``/proc/self/fd/<n>``, so a name swapped for a link between the scan
and the connect is refused too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from agents.exceptions import ConnectError, IdentityError, Refused
from agents.stream import ConnectionInfo, Stream, UnixStream
from infra.backoff import Backoff

__all__ = [
    "FULL_SCAN_S",
    "POLL_S",
    "RELIST_S",
    "SOCKET_SUFFIX",
    "ConnectionHandler",
    "SocketWatcher",
    "default_owners",
    "refusal",
    "vm_id_from_name",
]

log = logging.getLogger(__name__)

SOCKET_SUFFIX: Final = ".socket"
TRANSPORT: Final = "unix"

_UUID_RE: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)

POLL_S: Final = 0.05
"""How often the directory's mtime is looked at."""

FULL_SCAN_S: Final = 2.0
"""A poll lists the directory at least this often even if it did not change: an entry
refused for its owner may have been given to a trusted user since (chown changes the
file, not the directory)."""

RELIST_S: Final = 0.25
"""While the mtime is too recent to trust, the directory is listed again at most this often."""

_SETTLED_NS: Final = 1_000_000_000
"""A directory mtime this recent is not trusted to be final: the kernel stamps with a
coarse clock, so an entry made just after a listing may leave the mtime as it was."""

Claims = Callable[[str], bool]
"""Whether this watcher may read a VM (bridges sharing a directory, agents/ownership.py)."""

ConnectionHandler = Callable[[Stream, ConnectionInfo], Awaitable[None]]
"""Serves one connection until EOF; the watcher closes the stream afterwards."""

Connector = Callable[[Path], Awaitable[Stream]]
RefusedCallback = Callable[[str, str], None]
"""(transport, reason) for each refused socket, once per appearance (metrics)."""


def default_owners() -> frozenset[int]:
    """The bridge's own user and root: root can do anything anyway, and the bridge's
    user is the one that creates sockets in development (``vmpulse up``, the simulator)
    and in deployments where the bridge runs as the hypervisor's user."""
    return frozenset({os.geteuid(), 0})


def refusal(st: os.stat_result, owners: frozenset[int]) -> str | None:
    """Why a socket-directory entry (its ``lstat``/``fstat``) may not carry a VM's
    identity, or None if it may: a stable reason code for metrics."""
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    if not stat.S_ISSOCK(st.st_mode):
        return "not_socket"
    if st.st_uid not in owners:
        return "foreign_owner"
    if st.st_nlink != 1:
        return "hardlink"
    return None


@functools.lru_cache(maxsize=1 << 16)
def vm_id_from_name(name: str) -> str:
    """The VM id in a socket file name, as a lowercase canonical UUID.

    Only the hyphenated 36-character form is accepted (what libvirt writes), so
    one VM cannot appear under two spellings and two keys in Kafka. Cached (a
    name's id never changes; a refused name raises again): the watcher lists the
    directory every :data:`FULL_SCAN_S`, and at 10,000 VMs the regex over every
    name was most of that listing.
    """
    if not name.endswith(SOCKET_SUFFIX):
        raise IdentityError(f"not a {SOCKET_SUFFIX} file: {name!r}")
    stem = name[: -len(SOCKET_SUFFIX)]
    if not _UUID_RE.fullmatch(stem):
        raise IdentityError(f"socket name is not <vm-uuid>{SOCKET_SUFFIX}: {name!r}")
    return stem.lower()


def _connect_checked(owners: frozenset[int]) -> Connector:
    """Connect to ``path`` only if the file there passes :func:`refusal`, on the very
    file checked (no window between the check and the connect)."""

    async def connect(path: Path) -> Stream:
        try:
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise ConnectError(f"cannot open {path}: {exc}") from exc
        try:
            reason = refusal(os.fstat(fd), owners)
            if reason is not None:
                raise Refused(reason, f"{path}: {reason.replace('_', ' ')}")
            # A socket is connected by path; /proc/self/fd/<n> is this very inode.
            return await UnixStream.connect(Path(f"/proc/self/fd/{fd}"))
        finally:
            os.close(fd)

    return connect


class SocketWatcher:
    """Polls ``socket_dir`` and runs one reconnecting client task per VM socket.

    A task ends when its file disappears (the VM is gone; its connection is cut)
    or when the watcher stops. :meth:`stop` is graceful: it closes the open
    streams so every handler sees EOF and finishes what it already read, and
    only cancels handlers that do not finish within ``stop_timeout_s``.
    """

    def __init__(
        self,
        socket_dir: Path,
        handler: ConnectionHandler,
        *,
        poll_interval_s: float = POLL_S,
        reconnect_base_s: float = 3.0,
        reconnect_factor: float = 1.5,
        reconnect_cap_s: float = 120.0,
        stop_timeout_s: float = 10.0,
        owners: frozenset[int] | None = None,
        on_refused: RefusedCallback | None = None,
        connect: Connector | None = None,
        claims: Claims | None = None,
    ) -> None:
        self._dir = socket_dir
        self._claims = claims
        self._released: set[str] = set()
        self._handler = handler
        self._poll_interval_s = poll_interval_s
        self._backoff_args = (
            reconnect_base_s,
            reconnect_factor,
            max(reconnect_cap_s, reconnect_base_s),
        )
        self._stop_timeout_s = stop_timeout_s
        self._owners = default_owners() if owners is None else owners
        self._on_refused = on_refused
        self._connect = _connect_checked(self._owners) if connect is None else connect
        # name -> (device, inode, reason) of a refused entry: counted once while it stays.
        self._refused: dict[str, tuple[int, int, str]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._streams: dict[str, Stream] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._warned: set[str] = set()
        # the directory's mtime at the last listing, when that was, and whether a
        # connection task ended since (its VM is listed again at the next poll)
        self._listed_mtime_ns: int | None = None
        self._listed_at_ns = 0
        self._dirty = True

    @property
    def vm_ids(self) -> frozenset[str]:
        """VMs that have a socket and a connection task right now."""
        return frozenset(self._tasks)

    @property
    def connected(self) -> frozenset[str]:
        """VMs with an open connection right now."""
        return frozenset(self._streams)

    async def start(self) -> None:
        self._stopping = False
        self._scan()
        self._poll_task = asyncio.create_task(self._poll(), name="socket-watcher")

    async def stop(self) -> None:
        self._stopping = True
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None
        for stream in list(self._streams.values()):
            await stream.close()
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._stop_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                if self._changed():
                    self._scan()
            except Exception:  # never let one odd directory state end discovery
                log.exception("scanning %s failed", self._dir)

    def _changed(self) -> bool:
        """Whether a listing may find something new (see the module docstring)."""
        now = time.time_ns()
        try:
            mtime: int | None = os.stat(self._dir).st_mtime_ns
        except OSError:
            mtime = None
        return (
            self._dirty
            or mtime is None
            or mtime != self._listed_mtime_ns
            or (now - mtime < _SETTLED_NS and now - self._listed_at_ns >= RELIST_S * 1e9)
            or now - self._listed_at_ns >= FULL_SCAN_S * 1e9
        )

    def _scan(self) -> None:
        # stamped before listing: a change made while listing shows at the next poll
        self._dirty = False
        self._listed_at_ns = time.time_ns()
        try:
            self._listed_mtime_ns = os.stat(self._dir).st_mtime_ns
        except OSError:
            self._listed_mtime_ns = None
        present = dict(self._claimed(self._list_sockets()))
        for vm_id, path in present.items():
            if vm_id not in self._tasks and path is not None:
                log.info("socket for VM %s appeared: %s", vm_id, path)
                task = asyncio.create_task(self._run(vm_id, path), name=f"vm-socket-{vm_id}")
                self._tasks[vm_id] = task
                task.add_done_callback(functools.partial(self._forget, vm_id))
        for vm_id in list(self._tasks):
            if vm_id not in present and vm_id not in self._released:  # released: ending
                log.info("socket for VM %s disappeared", vm_id)
                self._tasks.pop(vm_id).cancel()

    # --- sharing the directory with other bridges (issue 14.3) ---

    def _claimed(self, found: list[tuple[str, Path | None]]) -> list[tuple[str, Path | None]]:
        """The listed VMs this watcher may read: all of them unless ``claims`` says."""
        claims = self._claims
        return found if claims is None else [(vm, p) for vm, p in found if claims(vm)]

    def rescan(self) -> None:
        """List the directory at the next poll (what may be read changed)."""
        self._dirty = True

    async def release(self) -> int:
        """End the connections of every VM ``claims`` refuses now; returns how many.

        A connection ends as at a graceful stop (its stream closed, the handler
        finishes what it read), then its task; only when all of them are done
        does this return, so another reader may take the VMs without overlap.
        """
        claims = self._claims
        gone = {vm: t for vm, t in self._tasks.items() if claims is not None and not claims(vm)}
        self._released.update(gone)
        try:
            for vm, task in gone.items():
                stream = self._streams.get(vm)
                if stream is not None:
                    await stream.close()
                else:
                    task.cancel()  # connecting or waiting to: nothing read yet
            if gone:
                _, pending = await asyncio.wait(gone.values(), timeout=self._stop_timeout_s)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*gone.values(), return_exceptions=True)
        finally:
            self._released.difference_update(gone)
            self._dirty = True
        return len(gone)

    def _forget(self, vm_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(vm_id) is task:
            del self._tasks[vm_id]
            self._dirty = True
        if not task.cancelled() and task.exception() is not None:
            log.error("connection task for VM %s failed", vm_id, exc_info=task.exception())

    def _list_sockets(self) -> list[tuple[str, Path | None]]:
        """(VM id, socket path) per socket; the path is None for VMs already served."""
        try:
            entries = list(os.scandir(self._dir))
        except FileNotFoundError:
            return []
        found: list[tuple[str, Path | None]] = []
        names: set[str] = set()
        for entry in entries:
            if not entry.name.endswith(SOCKET_SUFFIX):
                continue
            names.add(entry.name)
            try:
                vm_id = vm_id_from_name(entry.name)
                if vm_id in self._tasks:  # known: skip the stat (1,000 VMs, 4 scans a second)
                    found.append((vm_id, None))
                    continue
                st = entry.stat(follow_symlinks=False)
            except IdentityError as exc:
                self._warn_once(entry.name, str(exc))
                continue
            except OSError:
                continue  # removed between scandir and stat
            reason = refusal(st, self._owners)
            if reason is None:
                self._refused.pop(entry.name, None)
                found.append((vm_id, Path(entry.path)))
            else:
                self._refuse_once(entry.name, st, reason)
        for name in self._refused.keys() - names:
            del self._refused[name]  # gone: counted again if it comes back
        return found

    def _refuse_once(self, name: str, st: os.stat_result, reason: str) -> None:
        """Count and log a refused entry once while the same file stays under ``name``."""
        seen = (st.st_dev, st.st_ino, reason)
        if self._refused.get(name) == seen:
            return
        self._refused[name] = seen
        log.warning("refusing %s in %s: %s", name, self._dir, reason.replace("_", " "))
        if self._on_refused is not None:
            self._on_refused(TRANSPORT, reason)

    def _warn_once(self, name: str, message: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning("ignoring %s: %s", name, message)

    async def _run(self, vm_id: str, path: Path) -> None:
        """Connect, serve, reconnect with back-off; cancelled when the file goes away."""
        backoff = Backoff(*self._backoff_args)
        while not self._stopping and vm_id not in self._released:
            try:
                stream = await self._connect(path)
            except Refused as exc:
                # Swapped between the scan and the connect: the next scan sees it again.
                with contextlib.suppress(OSError):
                    self._refuse_once(path.name, os.lstat(path), exc.reason)
                return
            except ConnectError as exc:
                delay = backoff.next_delay()
                log.info("VM %s: %s; retrying in %.2fs", vm_id, exc, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            info = ConnectionInfo(vm_id=vm_id, transport=TRANSPORT, peer=os.fsencode(path))
            self._streams[vm_id] = stream
            try:
                if self._stopping:
                    break
                await self._handler(stream, info)
            except Exception:
                # A handler bug must not end this VM's connection for good.
                log.exception("VM %s: connection %s failed", vm_id, info.conn_id)
            finally:
                self._streams.pop(vm_id, None)
                await stream.close()
            if self._stopping or vm_id in self._released:
                break
            # The server closed the connection (VM reboot, QEMU restart): come
            # back after the base delay, not in a hot loop against a closing server.
            await asyncio.sleep(backoff.next_delay())
