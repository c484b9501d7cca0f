"""The worker's ingest when the store fails: nothing is committed, the batch comes again."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import prometheus_client
import pytest

from infra.backoff import Backoff
from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore
from store.exceptions import StoreError
from streams import ingest
from streams.app import create_app

from .browsers import metrics_line, until
from .faulty_store import FaultyStore


def _first_insert_fails(n: int, table: str) -> Exception | None:
    return (
        StoreError("insert into system_metrics failed: connection reset (test)") if n == 0 else None
    )


def _series(app: Any) -> dict[str, float]:
    """The worker's /metrics as its health port serves them: name -> value."""
    text = prometheus_client.generate_latest(app.vmpulse_metrics).decode()
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines())
        if name.startswith("vmpulse_worker_")
    }


async def _samples(settings: Settings, topics: Topics, vm: str, n: int) -> None:
    """``n`` samples of ``vm`` on agent.raw, acknowledged."""
    producer = make_producer(settings.kafka.bootstrap or "")
    await producer.start()
    try:
        for i in range(n):
            await producer.send(topics.agent_raw, metrics_line(vm, float(i)), key=vm.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def test_a_failed_insert_is_retried_and_stored_once(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> None:
    await chdb_store.command("TRUNCATE TABLE IF EXISTS system_metrics")
    vm = f"vm-{uuid.uuid4().hex[:8]}"
    await _samples(settings, topics_ready, vm, 50)

    store = FaultyStore(chdb_store, _first_insert_fails)
    app = create_app(settings, store, batch_within_s=0.05)
    await app.start()
    try:
        await until(lambda: app.vmpulse_stats["stored"] == 50, "50 stored after the retry")
        assert store.failed == 1 and app.vmpulse_ingest.failures == 1
    finally:
        await app.stop()
    result = await chdb_store.query(
        f"SELECT count(), uniqExact(kafka_offset) FROM system_metrics WHERE vm_id = '{vm}'"
    )
    assert result["rows"] == [[50, 50]]


async def test_a_store_that_stays_down_is_asked_less_often_and_logged_once(
    settings: Settings,
    topics_ready: Topics,
    chdb_store: ClickHouseStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Four failures in a row: one traceback, then a line each, the pauses doubling; when
    the store takes the batch again, one line says so, and every record is stored once."""
    vm = f"vm-{uuid.uuid4().hex[:8]}"
    await _samples(settings, topics_ready, vm, 20)

    down = StoreError("insert into system_metrics failed: Connection refused\n(detail)")
    store = FaultyStore(chdb_store, lambda n, table: down if n < 4 else None)
    retry = Backoff(base_s=0.05, factor=2.0, cap_s=0.2)
    app = create_app(settings, store, batch_within_s=0.05, store_retry=retry)
    with caplog.at_level(logging.INFO, logger="streams.ingest"):
        await app.start()
        try:
            # what an operator's alert on the worker's /metrics would see meanwhile
            await until(
                lambda: _series(app)["vmpulse_worker_store_failing"] >= 2, "failing, in /metrics"
            )
            await until(lambda: app.vmpulse_stats["stored"] == 20, "20 stored after the outage")
            await until(
                lambda: any("storing resumed" in r.getMessage() for r in caplog.records),
                "the worker saying that storing resumed",
            )
        finally:
            await app.stop()
    said = [r for r in caplog.records if r.name == "streams.ingest"]
    assert [r.getMessage() for r in said if r.exc_info] == [
        "storing a batch failed; retrying in 0.05 s"
    ]
    again = [r.getMessage() for r in said if "failed again" in r.getMessage()]
    assert again == [
        f"storing a batch failed again ({n} in a row): insert into system_metrics failed: "
        f"Connection refused; retrying in {pause} s"
        for n, pause in ((2, 0.1), (3, 0.2), (4, 0.2))
    ]
    assert sum("storing resumed after 4 failed attempts over" in r.getMessage() for r in said) == 1
    assert store.failed == 4 and app.vmpulse_ingest.failures == 4
    series = _series(app)
    assert series["vmpulse_worker_store_failures_total"] == 4
    assert series["vmpulse_worker_store_failing"] == 0
    assert series["vmpulse_worker_records_stored_total"] == 20
    assert series["vmpulse_worker_batches_stored_total"] >= 1
    result = await chdb_store.query(
        f"SELECT count(), uniqExact(kafka_offset) FROM system_metrics WHERE vm_id = '{vm}'"
    )
    assert result["rows"] == [[20, 20]]


class _HeldStore(FaultyStore):
    """The real store whose first system_metrics insert waits until the test lets it go:
    a slow insert, as a full block under load is."""

    def __init__(self, store: ClickHouseStore) -> None:
        super().__init__(store, lambda n, table: None)
        self.release = asyncio.Event()
        self.holding = False

    async def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        *,
        token: str | None,
    ) -> None:
        if table == "system_metrics" and not self.release.is_set():
            self.holding = True
            await self.release.wait()
        await super().insert(table, rows, columns, token=token)


async def test_live_updates_keep_flowing_past_a_full_batch_while_the_store_is_slow(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> None:
    """A full batch waiting for the previous insert must not hold back the live path:
    with batches of 10, the store held on the first, the next 20 records still go live
    (the batch after it grows to twice its size while it waits), and all 30 are stored
    once it is let go."""
    await chdb_store.command("TRUNCATE TABLE IF EXISTS system_metrics")
    tag = uuid.uuid4().hex[:8]
    vms = [f"vm-{tag}-{i}" for i in range(30)]  # one sample per VM: the throttle merges none
    store = _HeldStore(chdb_store)
    app = create_app(settings, store, batch_max=10, batch_within_s=0.05)
    producer = make_producer(settings.kafka.bootstrap or "")
    await app.start()
    await producer.start()
    try:
        for vm in vms[:10]:
            await producer.send(topics_ready.agent_raw, metrics_line(vm, 1.0), key=vm.encode())
        await producer.flush()
        await until(lambda: store.holding, "the first batch's insert to start")
        for vm in vms[10:]:
            await producer.send(topics_ready.agent_raw, metrics_line(vm, 2.0), key=vm.encode())
        await producer.flush()
        await until(lambda: app.vmpulse_stats["live_sent"] == 30, "30 live updates, store held")
        assert app.vmpulse_stats["stored"] == 0
        store.release.set()
        await until(lambda: app.vmpulse_stats["stored"] == 30, "30 stored once the store is free")
    finally:
        store.release.set()
        await producer.stop()
        await app.stop()
    result = await chdb_store.query(
        "SELECT count(), uniqExact(vm_id) FROM system_metrics WHERE vm_id LIKE {p:String}",
        {"p": f"vm-{tag}-%"},
    )
    assert result["rows"] == [[30, 30]]


async def test_a_batch_is_full_at_its_byte_bound_before_its_record_count(
    settings: Settings,
    topics_ready: Topics,
    chdb_store: ClickHouseStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Large lines fill a batch by bytes long before ``max_records``: with room for 1,000
    records and a 30 s window, but 100 bytes a batch (less than one ~180-byte line), every
    fetch is a full batch, and each group of ten lines is stored at once (a count-only
    batch would wait the whole window). At 1,000 bytes a batch a group fetched in two
    parts left its last few lines waiting for the window (1 run in 6 failed)."""
    monkeypatch.setattr(ingest, "BATCH_BYTES", 100)
    await chdb_store.command("TRUNCATE TABLE IF EXISTS system_metrics")
    tag = uuid.uuid4().hex[:8]
    app = create_app(settings, chdb_store, batch_max=1000, batch_within_s=30.0)
    producer = make_producer(settings.kafka.bootstrap or "")
    await app.start()
    await producer.start()
    try:
        for group in range(3):
            for i in range(10):
                vm = f"vm-{tag}-{group}-{i}"
                line = metrics_line(vm, float(i))
                await producer.send(topics_ready.agent_raw, line, key=vm.encode())
            await producer.flush()
            stored = 10 * (group + 1)

            def all_in(n: int = stored) -> bool:
                return bool(app.vmpulse_stats["stored"] == n)

            await until(all_in, f"{stored} stored")
        # a batch counts once committed, just after its rows are stored
        await until(lambda: app.vmpulse_ingest.batches >= 3, "three batches committed")
    finally:
        await producer.stop()
        await app.stop()
