"""Who has an embedded store open: one process per chDB directory, named for the others.

chDB runs the ClickHouse engine inside the process and lets one process open a
directory; a second one is refused with "Error initializing EmbeddedServer",
which names nobody. So whoever opens a chDB store first takes its owner lock: an
exclusive ``flock`` on ``<dir>/vmpulse-owner.json``, a file that says which
process holds it (pid, command, since when). The kernel drops the lock when the
process ends, however it ends (a clean stop, a crash, SIGKILL): a lock held is a
live owner, and the file a dead owner left is ignored and overwritten, with no
pid to check for reuse. ``vmpulse query`` reads the owner to name it, or takes
the lock itself to read a store nobody holds.

Within one process the lock is counted: the writer and a tool or test that opens
the same directory again share the engine, as chDB allows. The descriptor is
not inherited by child processes (Python's default), so a stage's children never
hold its store.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from store.exceptions import StoreError

__all__ = [
    "OWNER_FILE",
    "Owner",
    "OwnerLock",
    "StoreOwned",
    "chdb_directory",
    "current_owner",
    "process_command",
]

OWNER_FILE = "vmpulse-owner.json"


class Owner(msgspec.Struct, frozen=True, kw_only=True):
    """The process that has a chDB directory open."""

    pid: int
    command: str
    since: str
    """UTC, ISO 8601, to the second."""

    def describe(self) -> str:
        return f"`{self.command}` (pid {self.pid}, since {self.since})"


class StoreOwned(StoreError):
    """Another live process has the chDB directory open; ``owner`` says which."""

    def __init__(self, directory: Path, owner: Owner) -> None:
        super().__init__(
            f"the embedded store {directory} is open in {owner.describe()}; chDB lets one "
            "process open a directory at a time"
        )
        self.directory = directory
        self.owner = owner


_decoder = msgspec.json.Decoder(Owner)


def chdb_directory(url: str) -> Path | None:
    """The directory of a ``chdb://`` store URL; None for a server."""
    parts = urlsplit(url)
    if parts.scheme != "chdb":
        return None
    return Path(parts.netloc + parts.path).absolute()


def process_command() -> str:
    """This process's command line, as an owner's name when no better one was given."""
    return " ".join([Path(sys.argv[0]).name or "python", *sys.argv[1:]])


def _read(path: Path) -> Owner | None:
    try:
        return _decoder.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return None  # written by a process that died mid-write: nobody named


class OwnerLock:
    """The owner lock of a chDB directory, held by this process (see the module docstring)."""

    # held locks of this process by directory: (descriptor, count, owner)
    _held: dict[Path, tuple[int, int, Owner]] = {}
    _guard = threading.Lock()

    def __init__(self, directory: Path, owner: Owner) -> None:
        self.directory = directory
        self.owner = owner
        self._released = False

    @classmethod
    def take(cls, directory: Path, command: str | None = None) -> OwnerLock:
        """Take the lock of ``directory`` (made if missing) or raise :class:`StoreOwned`."""
        directory = directory.absolute()
        with cls._guard:
            held = cls._held.get(directory)
            if held is not None:
                fd, count, owner = held
                cls._held[directory] = (fd, count + 1, owner)
                return cls(directory, owner)
            path = directory / OWNER_FILE
            try:
                directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:  # read-only, another user's: chDB could not write there either
                raise StoreError(f"cannot open {path}: {exc.strerror}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                other = _read(path)
                raise StoreOwned(
                    directory, other or Owner(pid=0, command="another process", since="?")
                ) from None
            owner = Owner(
                pid=os.getpid(),
                command=command or process_command(),
                since=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            os.ftruncate(fd, 0)
            os.pwrite(fd, msgspec.json.encode(owner) + b"\n", 0)
            cls._held[directory] = (fd, 1, owner)
            return cls(directory, owner)

    def release(self) -> None:
        """Give the lock back (once per :meth:`take`); the file stays, naming nobody alive."""
        if self._released:
            return
        self._released = True
        with self._guard:
            fd, count, owner = self._held[self.directory]
            if count > 1:
                self._held[self.directory] = (fd, count - 1, owner)
                return
            del self._held[self.directory]
            os.close(fd)  # closing the last descriptor drops the flock


def current_owner(directory: Path) -> Owner | None:
    """The live process that has ``directory`` open, or None (never opened, or its owner ended)."""
    directory = directory.absolute()
    with OwnerLock._guard:
        held = OwnerLock._held.get(directory)
    if held is not None:
        return held[2]
    path = directory / OWNER_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(path) or Owner(pid=0, command="another process", since="?")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
