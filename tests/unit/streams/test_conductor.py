"""The worker's conductor with plain values: live per fetch, storage per batch, one decode.

The store is an in-memory stand-in that answers the one watermark query the
planner asks and keeps what is inserted (the real chDB path is covered by the
integration tests of streams/, e.g. test_watermarks.py and test_crash.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from schemas.events import decode_outbound
from schemas.facts import SystemSample
from streams.blocks import Span
from streams.conductor import Conductor, Polled
from streams.pipeline import RawRecord, process_batch
from streams.storing import BlockPlanner


class MemoryStore:
    def __init__(self) -> None:
        self.inserts: list[tuple[str, list[Sequence[Any]], str | None]] = []
        self.blocks: list[tuple[Any, ...]] = []

    async def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        *,
        token: str | None,
    ) -> None:
        if table == "ingest_blocks":
            self.blocks += [tuple(r) for r in rows]
        self.inserts.append((table, list(rows), token))

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, max_rows: int = 10_000
    ) -> dict[str, Any]:
        assert "FROM ingest_blocks" in sql and parameters is not None
        newest: dict[int, tuple[int, int, str]] = {}
        for topic, partition, first, last, block in self.blocks:
            if topic != parameters["topic"] or partition not in parameters["partitions"]:
                continue
            if partition not in newest or last > newest[partition][1]:
                newest[partition] = (first, last, block)
        return {"rows": [[p, f, last, b] for p, (f, last, b) in newest.items()]}

    def rows(self, table: str) -> list[Sequence[Any]]:
        return [row for t, rows, _ in self.inserts if t == table for row in rows]


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    async def send(self, *, key: bytes, value: bytes, partition: int | None = None) -> None:
        self.records.append((key, value))

    async def send_many(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        self.records += records


class Stages:
    def __init__(self) -> None:
        self.raw: list[RawRecord] = []
        self.samples: list[SystemSample] = []

    async def observe_raw(self, records: Sequence[RawRecord]) -> None:
        self.raw += records

    async def observe_samples(self, samples: Sequence[SystemSample]) -> None:
        self.samples += samples

    async def persist(self) -> None:
        pass


def _line(vm: str, second: int) -> bytes:
    return json.dumps(
        {
            "type": "system_metrics",
            "vmId": vm,
            "timestamp": f"2025-11-25T10:00:{second:02d}Z",
            "metrics": {"cpu": {"usage_percent": 10.0 + second}},
        }
    ).encode()


def _rec(partition: int, offset: int, vm: str, value: bytes | None = None) -> RawRecord:
    return RawRecord(
        topic="agent.raw",
        partition=partition,
        offset=offset,
        key=vm.encode(),
        value=value if value is not None else _line(vm, offset % 60),
        headers={"received_at": b"1764064800000", "transport": b"unix"},
    )


def _conductor(
    store: MemoryStore, interval_s: float = 0.0, topic: Sequence[RawRecord] = ()
) -> tuple[Conductor, Sent, Sent]:
    async def read_back(spans: Sequence[Span]) -> list[RawRecord]:
        """The topic's records in the spans, as streams/readback.py reads them."""
        return [
            r
            for r in topic
            for s in spans
            if r.partition == s.partition and s.first <= r.offset <= s.last
        ]

    live, dlq = Sent(), Sent()
    conductor = Conductor(
        store=store,
        raw_topic="agent.raw",
        planner=BlockPlanner(store, "agent.raw", read_back),
        stages=Stages(),
        outbound=live,
        dlq=dlq,
        live_interval_s=interval_s,
        clock=lambda: 100.0,
    )
    return conductor, live, dlq


async def test_samples_go_live_when_fetched_before_anything_is_stored() -> None:
    store = MemoryStore()
    conductor, live, _ = _conductor(store)
    await conductor.poll([_rec(0, 0, "vm-a"), _rec(1, 0, "vm-b")])
    assert [decode_outbound(v).rooms for _, v in live.records] == [["vm:vm-a"], ["vm:vm-b"]]
    assert store.inserts == []


async def test_a_batch_is_stored_from_its_fetches_in_block_order_decoded_once() -> None:
    fetches = [
        [_rec(1, 5, "vm-b"), _rec(0, 7, "vm-a")],
        [_rec(0, 8, "vm-a"), _rec(1, 6, "vm-b"), _rec(0, 9, "vm-a", b"{not json")],
    ]
    batch = [r for fetch in fetches for r in fetch]

    store = MemoryStore()
    conductor, _, dlq = _conductor(store)
    polled: list[Polled] = [await conductor.poll(fetch) for fetch in fetches]
    await conductor.store_batch(batch, polled)

    # the same rows, in the same order, as decoding the block in a replay's order
    expected = process_batch(sorted(batch, key=lambda r: (r.partition, r.offset)))
    assert store.rows("system_metrics") == expected.rows["system_metrics"]
    assert store.blocks == [
        ("agent.raw", 0, 7, 9, "0:7-9,1:5-6"),
        ("agent.raw", 1, 5, 6, "0:7-9,1:5-6"),
    ]
    assert conductor.stats["decoded_again"] == 0
    assert conductor.stats["stored"] == 4 and conductor.stats["rejected"] == 1
    assert len(dlq.records) == 1


async def test_a_batch_read_again_is_repaired_and_decoded_from_its_blocks() -> None:
    topic = [_rec(0, i, "vm-a") for i in range(3)]
    store = MemoryStore()
    conductor, _, _ = _conductor(store, topic=topic)
    first = topic[:2]
    await conductor.store_batch(first, [await conductor.poll(first)])
    # stored but not committed (a crash or a lost commit): the partition is read again
    conductor._planner.forget()
    again = topic[1:]
    await conductor.store_batch(again, [await conductor.poll(again)])
    assert conductor.stats["repaired"] == 2  # block 0:0-1 again, with its tokens
    assert conductor.stats["skipped_replay"] == 1  # offset 1 was in that block
    assert conductor.stats["decoded_again"] == 3  # the repair and the new block 0:2-2
    tokens = [token for table, _, token in store.inserts if table == "system_metrics"]
    assert tokens == [
        "system_metrics:agent.raw:0:0-1",
        "system_metrics:agent.raw:0:0-1",
        "system_metrics:agent.raw:0:2-2",
    ]


async def test_live_updates_are_throttled_per_vm() -> None:
    store = MemoryStore()
    conductor, live, _ = _conductor(store, interval_s=1.0)
    await conductor.poll([_rec(0, i, "vm-a") for i in range(5)])
    assert len(live.records) == 2  # the saved tokens; the rest is merged
    assert conductor.throttle.pending == 1
