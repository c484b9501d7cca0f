"""When the socket watcher lists its directory again (agents.socket_watcher, module doc)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agents.socket_watcher import FULL_SCAN_S, RELIST_S, SocketWatcher
from agents.stream import ConnectionInfo, Stream


async def _serve(stream: Stream, info: ConnectionInfo) -> None:
    raise AssertionError("no socket is served in these tests")


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


async def test_an_unchanged_directory_is_not_listed_again(short_tmp: Path) -> None:
    watcher = SocketWatcher(short_tmp, _serve)
    _age(short_tmp, 10)
    watcher._scan()
    assert not watcher._changed()


async def test_an_entry_that_came_or_went_is_listed(short_tmp: Path) -> None:
    watcher = SocketWatcher(short_tmp, _serve)
    _age(short_tmp, 10)
    watcher._scan()
    (short_tmp / "notes.txt").write_bytes(b"")  # any entry moves the directory's mtime
    assert watcher._changed()
    _age(short_tmp, 10)
    watcher._scan()
    (short_tmp / "notes.txt").unlink()
    _age(short_tmp, 5)  # even with an mtime that is not recent, it differs
    assert watcher._changed()


async def test_a_recent_mtime_is_not_trusted(short_tmp: Path) -> None:
    # an entry made just after a listing may leave a coarse mtime as it was: listed
    # again, but not at every 50 ms poll
    watcher = SocketWatcher(short_tmp, _serve)
    watcher._scan()
    assert not watcher._changed()
    watcher._listed_at_ns -= int(RELIST_S * 1e9)
    assert watcher._changed()


async def test_the_directory_is_listed_at_least_every_full_scan_interval(short_tmp: Path) -> None:
    # a refused entry may be given to a trusted owner: chown leaves the directory as it is
    watcher = SocketWatcher(short_tmp, _serve)
    _age(short_tmp, 10)
    watcher._scan()
    watcher._listed_at_ns -= int(FULL_SCAN_S * 1e9)
    assert watcher._changed()
