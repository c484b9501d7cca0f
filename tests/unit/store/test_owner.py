"""The owner lock of an embedded store: a live holder is named, a dead one's file is ignored.

Another process is played by a second open file description locked with flock
(flock locks conflict between descriptions, also within one process), exactly
what the kernel sees from a second process.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from store.exceptions import StoreError
from store.owner import (
    OWNER_FILE,
    Owner,
    OwnerLock,
    StoreOwned,
    chdb_directory,
    current_owner,
    process_command,
)

OTHER = Owner(pid=4242, command="vmpulse worker", since="2026-12-01T10:00:00Z")


class OtherProcess:
    """Holds ``<dir>/vmpulse-owner.json`` the way another vmpulse process would."""

    def __init__(self, directory: Path, owner: Owner = OTHER) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(directory / OWNER_FILE, os.O_RDWR | os.O_CREAT)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, msgspec.json.encode(owner), 0)

    def exit(self) -> None:
        os.close(self.fd)  # as the kernel does for a process that ends, however it ends


@pytest.fixture
def other(tmp_path: Path) -> Iterator[OtherProcess]:
    held = OtherProcess(tmp_path / "ch")
    yield held
    try:
        held.exit()
    except OSError:
        pass


def test_a_live_owner_is_named_and_keeps_others_out(tmp_path: Path, other: OtherProcess) -> None:
    directory = tmp_path / "ch"
    assert current_owner(directory) == OTHER
    with pytest.raises(StoreOwned) as info:
        OwnerLock.take(directory, "vmpulse query")
    assert info.value.owner == OTHER and isinstance(info.value, StoreError)
    text = str(info.value)
    assert "`vmpulse worker` (pid 4242, since 2026-12-01T10:00:00Z)" in text
    assert str(directory) in text


def test_an_ended_owner_leaves_a_file_that_names_nobody(
    tmp_path: Path, other: OtherProcess
) -> None:
    directory = tmp_path / "ch"
    other.exit()
    assert (directory / OWNER_FILE).exists()  # the file stays: only the lock says "alive"
    assert current_owner(directory) is None
    lock = OwnerLock.take(directory, "vmpulse query")
    try:
        mine = msgspec.json.decode((directory / OWNER_FILE).read_bytes(), type=Owner)
        assert (mine.pid, mine.command) == (os.getpid(), "vmpulse query")
        assert current_owner(directory) == mine == lock.owner
    finally:
        lock.release()
    assert current_owner(directory) is None


def test_within_a_process_the_lock_is_counted(tmp_path: Path) -> None:
    directory = tmp_path / "ch"
    first = OwnerLock.take(directory, "vmpulse up")
    second = OwnerLock.take(directory, "ignored: the process holds it already")
    assert second.owner == first.owner and first.owner.command == "vmpulse up"
    first.release()
    first.release()  # once per take: a second release of the same lock changes nothing
    assert current_owner(directory) == second.owner
    with pytest.raises(BlockingIOError):  # still held against other processes
        OtherProcess(directory)
    second.release()
    assert current_owner(directory) is None
    OtherProcess(directory).exit()  # free for anyone now


def test_a_directory_never_opened_has_no_owner(tmp_path: Path) -> None:
    assert current_owner(tmp_path / "missing") is None
    assert not (tmp_path / "missing").exists()  # looking creates nothing


def test_an_unreadable_record_still_names_a_holder(tmp_path: Path) -> None:
    directory = tmp_path / "ch"
    held = OtherProcess(directory)
    os.ftruncate(held.fd, 0)  # died between truncating and writing: the lock still says alive
    try:
        assert current_owner(directory) == Owner(pid=0, command="another process", since="?")
    finally:
        held.exit()


def test_only_chdb_urls_have_a_directory() -> None:
    assert chdb_directory("chdb:///var/lib/vmpulse/clickhouse") == Path(
        "/var/lib/vmpulse/clickhouse"
    )
    assert chdb_directory("http://u:p@ch:8123/db") is None
    assert chdb_directory("https://ch:8443/db") is None
    assert process_command()  # never empty: it names the process to others


def test_a_directory_it_may_not_write_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match=r"cannot open .*vmpulse-owner\.json"):
        OwnerLock.take(blocker / "ch")
