"""Which socket-directory entries may carry a VM's identity (agents.socket_watcher.refusal)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.socket_watcher import default_owners, refusal

ME = os.geteuid()


@pytest.fixture
def sock(short_tmp: Path) -> Iterator[Path]:
    path = short_tmp / "a.socket"
    server = socket.socket(socket.AF_UNIX)
    server.bind(os.fspath(path))
    yield path
    server.close()


def test_a_socket_of_a_trusted_owner_passes(sock: Path) -> None:
    assert refusal(os.lstat(sock), frozenset({ME})) is None


def test_a_symlink_to_a_good_socket_is_refused(sock: Path) -> None:
    link = sock.with_name("b.socket")
    link.symlink_to(sock)
    assert refusal(os.lstat(link), frozenset({ME})) == "symlink"


def test_a_second_hard_link_is_refused_under_both_names(sock: Path) -> None:
    alias = sock.with_name("b.socket")
    os.link(sock, alias)
    assert refusal(os.lstat(alias), frozenset({ME})) == "hardlink"
    assert refusal(os.lstat(sock), frozenset({ME})) == "hardlink"


def test_a_socket_of_another_user_is_refused(sock: Path) -> None:
    assert refusal(os.lstat(sock), frozenset({ME + 1})) == "foreign_owner"


def test_a_regular_file_is_refused(short_tmp: Path) -> None:
    path = short_tmp / "c.socket"
    path.write_bytes(b"")
    assert refusal(os.lstat(path), frozenset({ME})) == "not_socket"


def test_default_owners_are_the_bridge_user_and_root() -> None:
    assert default_owners() == frozenset({ME, 0})
