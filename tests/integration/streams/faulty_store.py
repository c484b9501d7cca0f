"""The real store with inserts that fail where a test says: a crash or a lost connection."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from store.clickhouse import ClickHouseStore, QueryResult

__all__ = ["FaultyStore"]


class FaultyStore:
    """Delegates to ``store``; the inserts ``fail`` picks raise before anything is written.

    ``fail(n, table)`` is asked for the n-th insert (from 0) and returns the
    exception to raise, or None to let it through.
    """

    def __init__(
        self, store: ClickHouseStore, fail: Callable[[int, str], Exception | None]
    ) -> None:
        self.store = store
        self.fail = fail
        self.inserts = 0
        self.failed = 0

    async def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        *,
        token: str | None,
    ) -> None:
        error = self.fail(self.inserts, table)
        self.inserts += 1
        if error is not None:
            self.failed += 1
            raise error
        await self.store.insert(table, rows, columns, token=token)

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, max_rows: int = 10_000
    ) -> QueryResult:
        return await self.store.query(sql, parameters, max_rows=max_rows)
