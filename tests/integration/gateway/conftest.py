"""Fixtures for the gateway integration tests: a client list that is always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.gateway.harness import Client, close_all


@pytest.fixture
async def opened() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    await close_all(made)
