"""Shared fixtures: one real Kafka broker per test session, a unique topic prefix per test.

With VMPULSE_KAFKA_BOOTSTRAP set the suite uses that cluster instead of
starting a broker (the same rule as ``vmpulse up``). Nothing here mocks Kafka.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from infra.broker import LocalBroker
from schemas.topics import Topics
from streams.store import ClickHouseStore
from vmpulse.config import Settings
from vmpulse.kafka_io import ensure_topics


def pytest_report_header(config: pytest.Config) -> str:
    where = (
        os.environ.get("VMPULSE_KAFKA_BOOTSTRAP") or "a local Kafka broker started for this session"
    )
    return f"vmpulse integration tests run against: {where}"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of a real broker, started once for the whole session."""
    external = os.environ.get("VMPULSE_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    work = Path(tempfile.mkdtemp(prefix="vmpulse-test-kafka-"))
    broker = LocalBroker(work)
    bootstrap = broker.start()
    print(f"\nKafka broker for this session: {bootstrap} (log {broker.log_path})")
    try:
        yield bootstrap
    finally:
        broker.stop()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory: unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="vp-", dir="/tmp"))
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(kafka_bootstrap: str, short_tmp: Path) -> Settings:
    """Settings for one test: its own topic prefix, data dir and socket dir."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    return Settings(
        data_dir=short_tmp,
        kafka_bootstrap=kafka_bootstrap,
        clickhouse_url=f"chdb://{short_tmp / 'ch'}",
        socket_dir=short_tmp / "s",
        gateway_host="127.0.0.1",
        gateway_port=0,
        topic_prefix=prefix,
        partitions=3,
        replication_factor=1,
        live_interval_s=0.0,
    )


@pytest.fixture
async def topics_ready(settings: Settings) -> AsyncIterator[Topics]:
    """Create this test's topics on the real broker."""
    assert settings.kafka_bootstrap is not None
    topics = Topics(settings.topic_prefix)
    await ensure_topics(
        settings.kafka_bootstrap,
        topics,
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
    )
    yield topics


@pytest.fixture(scope="session")
async def chdb_store() -> AsyncIterator[ClickHouseStore]:
    """The embedded store through clickhouse-connect; one per session (chDB: one path a process)."""
    path = Path(tempfile.mkdtemp(prefix="vmpulse-test-chdb-"))
    store = ClickHouseStore(f"chdb://{path}")
    await store.start()
    yield store
    store.close()
