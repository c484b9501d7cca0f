"""What compressing a live path's small batches costs, both ways, per record.

Why: the worker's live updates leave in batches of one to a few records (linger 0, one
request in flight per broker), and the gateway unpacks each of them. aiokafka's lz4 is
LZ4 HC (level 9). This prints, for batches of 1 to 200 live events, each codec's cost per
record to compress and the ratio, then aiokafka's cost per record to unpack one-record
batches of agent.raw lines (five headers, as the bridge writes them), with and without
compression. Process CPU time, the best of three: compare the rows of one run.
Run: ``.venv/bin/python -m tests.bench.codec_cost``.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable

from aiokafka import codec
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from agents.simulator.fleet import system_metrics_line
from schemas.events import encode_outbound, utc_now_iso
from streams.pipeline import RawRecord, live_event, process_batch

CODECS: dict[str, tuple[Callable[[bytes], bytes], int]] = {
    "none": (bytes, 0),
    "lz4 (HC)": (codec.lz4_encode, 3),
    "zstd": (codec.zstd_encode, 4),
    "snappy": (codec.snappy_encode, 2),
}
HEADERS = [
    ("received_at", b"1796185266000"),
    ("transport", b"virtio"),
    ("conn_id", b"c0a8f3e1"),
    ("peer", b"vm-00001"),
    ("line_no", b"12"),
]


def _best(run: Callable[[], object], rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best


def _lines(count: int) -> list[bytes]:
    rng, now = random.Random(1), time.time()
    return [system_metrics_line(f"vm-{i:05d}", now, rng) for i in range(count)]


def _batches(lines: list[bytes], per_batch: int, compression: int) -> bytes:
    out = bytearray()
    for base in range(0, len(lines), per_batch):
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=compression,
            is_transactional=0,
            producer_id=1,
            producer_epoch=0,
            base_sequence=base,
            batch_size=1 << 24,
        )
        for i, line in enumerate(lines[base : base + per_batch]):
            builder.append(i, timestamp=None, key=b"vm-00001", value=line, headers=HEADERS)
        batch = builder.build()
        struct.pack_into(">q", batch, 0, base)  # the batch's base offset
        out += batch
    return bytes(out)


def main() -> None:
    lines = _lines(2000)
    records = [
        RawRecord(topic="t", partition=0, offset=i, key=f"vm-{i:05d}".encode(), value=v, headers={})
        for i, v in enumerate(lines[:200])
    ]
    now = utc_now_iso()
    events = [encode_outbound(live_event(s, now)) for s in process_batch(records).samples]
    print(f"compressing live events ({len(events[0])} B each): us per record, ratio")
    for size in (1, 2, 20, 200):
        payload = b"".join(events[:size])
        cells = []
        for name, (encode, _) in CODECS.items():
            n = max(1, 2000 // size)

            def compress(
                e: Callable[[bytes], bytes] = encode, p: bytes = payload, n: int = n
            ) -> None:
                for _ in range(n):
                    e(p)

            cost = _best(compress) / n / size
            ratio = len(payload) / len(encode(payload))
            cells.append(f"{name} {cost * 1e6:6.1f} us x{ratio:4.1f}")
        print(f"  {size:3d} a batch: " + " | ".join(cells))
    print("unpacking agent.raw batches (aiokafka, 5 headers a record): us per record")
    for per_batch in (1, 5, 50):
        cells = []
        for name, (_, compression) in CODECS.items():
            data = _batches(lines, per_batch, compression)

            def unpack(d: bytes = data) -> int:
                tp = TopicPartition("t", 0)
                return len(list(PartitionRecords(tp, MemoryRecords(d), [], 0, None, None, True, 0)))

            cells.append(f"{name} {_best(unpack) / len(lines) * 1e6:5.1f}")
        print(f"  {per_batch:3d} a batch: " + " | ".join(cells))


if __name__ == "__main__":
    main()
