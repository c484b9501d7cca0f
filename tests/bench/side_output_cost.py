"""CPU per sample of the worker's side outputs: the live update and the alert rules.

Why: at 10,000 VMs reporting once a second every message becomes a
``metricsUpdate``, so building and encoding it is per-message cost, next to
decoding the line (``process_batch``). Run:
``.venv/bin/python -m tests.bench.side_output_cost``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from schemas.events import encode_outbound, utc_now_iso
from streams.alerts import AlertEngine
from streams.event_agents import alert_sample
from streams.pipeline import RawRecord, live_event, process_batch
from tests.support import examples as ex

SAMPLES = 5000
ROUNDS = 3


def _per_call_us(fn: Callable[[Any], object], items: list[Any]) -> float:
    start = time.perf_counter()
    for _ in range(ROUNDS):
        for item in items:
            fn(item)
    return (time.perf_counter() - start) / (ROUNDS * len(items)) * 1e6


def main() -> None:
    now = time.time()
    received = str(int(now * 1000)).encode()
    records = [
        RawRecord(
            "agent.raw",
            0,
            i,
            f"vm-{i}".encode(),
            ex.line(ex.d1_system_metrics(f"vm-{i}", now)),
            {"received_at": received},
        )
        for i in range(SAMPLES)
    ]
    samples = process_batch(records).samples
    stamp = utc_now_iso()
    alerts = AlertEngine()
    figures = {
        "process_batch (decode, validate, rows) per line": _per_call_us(
            lambda r: process_batch([r]), records
        ),
        "live update, built and encoded": _per_call_us(
            lambda s: encode_outbound(live_event(s, stamp)), samples
        ),
        "alert sample from a system sample": _per_call_us(alert_sample, samples),
        "alert rules on one sample": _per_call_us(
            lambda s: alerts.observe(alert_sample(s)), samples
        ),
    }
    for name, us in figures.items():
        print(f"{name:<50} {us:6.1f} us")


if __name__ == "__main__":
    main()
