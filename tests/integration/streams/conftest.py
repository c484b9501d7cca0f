"""Fixtures for the worker's integration tests: the real Faust app in this process.

The app runs on the session broker and the session chDB store (chDB allows one
data path per process, so an in-process worker must share it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import faust
import pytest

from infra.config import Settings
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore

from .browsers import running_worker

pytestmark = pytest.mark.integration


@pytest.fixture
async def worker(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> AsyncIterator[faust.App]:
    async with running_worker(settings, chdb_store) as app:
        yield app
