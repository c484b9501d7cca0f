"""The worker's ingest when the store fails: nothing is committed, the batch comes again."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from schemas.topics import Topics
from streams.app import create_app
from streams.exceptions import StoreError
from streams.store import ClickHouseStore, QueryResult
from vmpulse.config import Settings
from vmpulse.kafka_io import make_producer

from .browsers import metrics_line, until


class FailingOnce:
    """The real store, except that the first insert raises after nothing was written."""

    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self.failed = 0

    async def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        *,
        token: str | None,
    ) -> None:
        if not self.failed:
            self.failed += 1
            raise StoreError("insert into system_metrics failed: connection reset (test)")
        await self.store.insert(table, rows, columns, token=token)

    async def query(self, sql: str, *, max_rows: int = 10_000) -> QueryResult:
        return await self.store.query(sql, max_rows=max_rows)


async def test_a_failed_insert_is_retried_and_stored_once(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> None:
    await chdb_store.command("TRUNCATE TABLE IF EXISTS system_metrics")
    vm = f"vm-{uuid.uuid4().hex[:8]}"
    producer = make_producer(settings.kafka_bootstrap or "")
    await producer.start()
    try:
        for i in range(50):
            await producer.send(topics_ready.agent_raw, metrics_line(vm, float(i)), key=vm.encode())
        await producer.flush()
    finally:
        await producer.stop()

    store = FailingOnce(chdb_store)
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
