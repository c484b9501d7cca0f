"""Shared fixtures: one real Kafka broker per test session, a unique topic prefix per test.

Beside its PLAINTEXT listener the broker has secured ones (SASL_PLAINTEXT, SASL_SSL, and
SSL wanting a client certificate) for the tests of the clients' security settings.

With VMPULSE_KAFKA_BOOTSTRAP set the suite uses that cluster instead of
starting a broker (the same rule as ``vmpulse up``). Nothing here mocks Kafka.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.broker import KAFKA_VERSION, LocalBroker
from infra.config import (
    BridgeSettings,
    GatewaySettings,
    KafkaAuth,
    KafkaSettings,
    Secret,
    Settings,
    StoreSettings,
    WorkerSettings,
)
from infra.kafka_io import ensure_settings_topics
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore
from store.reader import Reader, ReadLimits
from tests.support.tls import make_loopback_certificates

_BROKER_USED: list[str] = []
# the session broker's secured listeners (SASL_PLAINTEXT, SASL_SSL, SSL) and how to reach them
_SECURED: dict[str, tuple[str, KafkaAuth]] = {}


def pytest_report_header(config: pytest.Config) -> str:
    where = os.environ.get("VMPULSE_KAFKA_BOOTSTRAP") or "a local Kafka broker (one per session)"
    return f"vmpulse integration tests run against: {where}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration and tests/e2e needs the real broker or chDB."""
    for item in items:
        parts = item.path.parts
        if "integration" in parts or "e2e" in parts:
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say plainly what the integration tests ran against and that none was skipped."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in counts:
        for report in terminalreporter.stats.get(outcome, []):
            if "integration" not in getattr(report, "keywords", {}):
                continue
            if report.when == "call" or outcome != "passed":
                counts[outcome] += 1
    broker = _BROKER_USED[0] if _BROKER_USED else "(none was needed)"
    terminalreporter.write_line(
        f"integration tests on the real Kafka broker {broker} and chDB: "
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    )


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A test that runs ``vmpulse.cli.main`` configures logging (vmpulse/logs.py); put the
    root handlers and vmpulse's levels back, so no later test logs to a closed capture."""
    import logging

    from vmpulse.logs import OWN_LOGGERS

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    own = {name: logging.getLogger(name).level for name in OWN_LOGGERS}
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    for name, old in own.items():
        logging.getLogger(name).setLevel(old)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of a real broker, started once for the whole session."""
    external = os.environ.get("VMPULSE_KAFKA_BOOTSTRAP")
    if external:
        _BROKER_USED.append(f"{external} (VMPULSE_KAFKA_BOOTSTRAP)")
        yield external
        return
    work = Path(tempfile.mkdtemp(prefix="vmpulse-test-kafka-"))
    user, password = "vmpulse-test", secrets.token_hex(16)
    tls = make_loopback_certificates(work / "tls")
    broker = LocalBroker(work, sasl_user=(user, password), tls=(tls.broker_keystore, tls.ca))
    bootstrap = broker.start()
    sasl = KafkaAuth("SASL_PLAINTEXT", "SCRAM-SHA-512", user, Secret(password))
    _SECURED["SASL_PLAINTEXT"] = (f"127.0.0.1:{broker.sasl_port}", sasl)
    _SECURED["SASL_SSL"] = (
        f"127.0.0.1:{broker.sasl_ssl_port}",
        dataclasses.replace(sasl, protocol="SASL_SSL", cafile=tls.ca),
    )
    _SECURED["SSL"] = (  # mutual TLS: the client's certificate is its identity
        f"127.0.0.1:{broker.ssl_port}",
        KafkaAuth("SSL", cafile=tls.ca, certfile=tls.client_cert, keyfile=tls.client_key),
    )
    _BROKER_USED.append(f"{bootstrap} (Apache Kafka {KAFKA_VERSION}, KRaft, from infra/)")
    print(f"\nKafka broker for this session: {bootstrap} (log {broker.log_path})")
    try:
        yield bootstrap
    finally:
        broker.stop()
        # The topics' data (~1 GB after the benchmarks) goes; broker.log stays for a
        # post-mortem. Sessions that kept it filled this machine's disk (session 13).
        shutil.rmtree(work / "logs", ignore_errors=True)
        shutil.rmtree(work / "tls", ignore_errors=True)  # the session's keys go with it


def _secured(protocol: str) -> tuple[str, KafkaAuth]:
    """A secured listener of the session broker and how its clients reach it.

    Only the broker this session starts has them: against VMPULSE_KAFKA_BOOTSTRAP the
    tests that need them fail, saying so, rather than pass unrun.
    """
    if not _SECURED:
        pytest.fail("no secured listener: VMPULSE_KAFKA_BOOTSTRAP names a broker not started here")
    return _SECURED[protocol]


@pytest.fixture(scope="session", params=["SASL_PLAINTEXT", "SASL_SSL", "SSL"])
def kafka_secured(kafka_bootstrap: str, request: pytest.FixtureRequest) -> tuple[str, KafkaAuth]:
    """Each secured listener in turn: SASL_PLAINTEXT and SASL_SSL as a user the broker
    knows (SCRAM and PLAIN), SSL with a client certificate (mutual TLS); the TLS ones
    with certificates of a CA made for the session (tests/support/tls.py)."""
    return _secured(request.param)


@pytest.fixture(scope="session", params=["SASL_PLAINTEXT", "SASL_SSL"])
def kafka_sasl(kafka_bootstrap: str, request: pytest.FixtureRequest) -> tuple[str, KafkaAuth]:
    """The SASL listeners in turn (see :func:`kafka_secured`)."""
    return _secured(request.param)


@pytest.fixture(scope="session")
def kafka_sasl_ssl(kafka_bootstrap: str) -> tuple[str, KafkaAuth]:
    """The SASL_SSL listener alone (see :func:`kafka_secured`)."""
    return _secured("SASL_SSL")


@pytest.fixture(scope="session")
def kafka_mtls(kafka_bootstrap: str) -> tuple[str, KafkaAuth]:
    """The SSL listener that wants a client certificate (see :func:`kafka_secured`)."""
    return _secured("SSL")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory: unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="vp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(kafka_bootstrap: str, short_tmp: Path) -> Settings:
    """Settings for one test: its own topic prefix, data dir and socket dir."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    return Settings(
        data_dir=short_tmp,
        kafka=KafkaSettings(
            bootstrap=kafka_bootstrap, topic_prefix=prefix, partitions=3, replication_factor=1
        ),
        store=StoreSettings(url=f"chdb://{short_tmp / 'ch'}"),
        bridge=BridgeSettings(socket_dir=short_tmp / "s"),
        gateway=GatewaySettings(host="127.0.0.1", port=0),
        worker=WorkerSettings(live_interval_s=0.0),
    )


@pytest.fixture
async def topics_ready(settings: Settings) -> AsyncIterator[Topics]:
    """Create this test's topics on the real broker."""
    yield await ensure_settings_topics(settings)


@pytest.fixture(scope="session")
async def chdb_store() -> AsyncIterator[ClickHouseStore]:
    """The embedded store through clickhouse-connect; one per session (chDB: one path a process)."""
    path = Path(tempfile.mkdtemp(prefix="vmpulse-test-chdb-"))
    store = ClickHouseStore(f"chdb://{path}")
    await store.start()
    yield store
    store.close()


@pytest.fixture(scope="session")
async def chdb_reader(chdb_store: ClickHouseStore) -> AsyncIterator[Reader]:
    """Read-only connections of their own on the session's chDB engine (as `vmpulse up` has)."""
    reader = Reader(chdb_store.url, ReadLimits(concurrency=4, per_user=4, timeout_s=20))
    await reader.start()
    yield reader
    reader.close()


@pytest.fixture(scope="session")
async def other_db(chdb_store: ClickHouseStore) -> AsyncIterator[str]:
    """A database beside the metric one, with a row no read may reach (sql_attacks.py)."""
    from tests.support.sql_attacks import SECRET_ROW

    name = "vmpulse_other"
    await chdb_store.command(f"CREATE DATABASE IF NOT EXISTS {name}")
    await chdb_store.command(f"CREATE TABLE IF NOT EXISTS {name}.t (s String) ENGINE = Log")
    await chdb_store.command(f"INSERT INTO {name}.t VALUES ('{SECRET_ROW}')")
    await chdb_store.command(
        f"CREATE TABLE IF NOT EXISTS {name}.j (k UInt8, v String) ENGINE = Join(ANY, LEFT, k)"
    )
    await chdb_store.command(f"INSERT INTO {name}.j VALUES (1, '{SECRET_ROW}')")
    yield name
