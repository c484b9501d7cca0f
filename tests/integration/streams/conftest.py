"""Fixtures for the worker's integration tests: the real Faust app in this process.

The app runs on the session broker and the session chDB store (chDB allows one
data path per process, so an in-process worker must share it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import faust
import pytest

from schemas.topics import Topics
from streams.app import create_app
from streams.store import ClickHouseStore
from vmpulse.config import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def worker(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> AsyncIterator[faust.App]:
    app = create_app(settings, chdb_store, batch_within_s=0.05)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()
