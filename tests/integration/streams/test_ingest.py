"""The worker's ingest when the store fails: nothing is committed, the batch comes again."""

from __future__ import annotations

import uuid

from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore
from store.exceptions import StoreError
from streams.app import create_app

from .browsers import metrics_line, until
from .faulty_store import FaultyStore


def _first_insert_fails(n: int, table: str) -> Exception | None:
    return (
        StoreError("insert into system_metrics failed: connection reset (test)") if n == 0 else None
    )


async def test_a_failed_insert_is_retried_and_stored_once(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> None:
    await chdb_store.command("TRUNCATE TABLE IF EXISTS system_metrics")
    vm = f"vm-{uuid.uuid4().hex[:8]}"
    producer = make_producer(settings.kafka.bootstrap or "")
    await producer.start()
    try:
        for i in range(50):
            await producer.send(topics_ready.agent_raw, metrics_line(vm, float(i)), key=vm.encode())
        await producer.flush()
    finally:
        await producer.stop()

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
