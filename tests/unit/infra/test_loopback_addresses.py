"""Which listen addresses stay on this machine (development keys are for loopback only)."""

from __future__ import annotations

import pytest

from infra.network import is_loopback_host


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "::ffff:127.0.0.1", "localhost"]
)
def test_loopback_addresses(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "", "[::]", "192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7"]
)
def test_addresses_beyond_loopback(host: str) -> None:
    assert not is_loopback_host(host)
