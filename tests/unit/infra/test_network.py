"""Which listen addresses stay on this machine."""

from __future__ import annotations

import pytest

from infra.network import is_loopback_host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.255.0.9", "::1", "[::1]", "localhost"])
def test_loopback(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "",
        " ",
        "0.0.0.0",
        "::",
        "[::]",
        "192.0.2.1",
        "10.0.0.1",
        "::ffff:192.0.2.1",
        "no-such.invalid",
    ],
)
def test_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)
