"""Fixtures shared by the agents integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from infra.config import Settings
from schemas.topics import Topics
from tests.support.kafka import Collector, agent_collector


@pytest.fixture
async def collector(settings: Settings, topics_ready: Topics) -> AsyncIterator[Collector]:
    """This test's agent.raw and agent.dlq, read from the beginning."""
    async with agent_collector(settings, topics_ready) as found:
        yield found
