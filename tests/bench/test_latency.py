"""Agent -> browser latency through `vmpulse up` (issue 11, goal 1; `make bench`).

`vmpulse up --vms N` (default 2,000 VMs, one sample a second each) as a user starts
it; one Socket.IO client watches 100 of the VMs. Printed beside one plain Kafka hop
on the same broker in the same run (tests/bench/latency.py says why that is the peer).

Targets: p50 <= 30 ms, p99 <= 100 ms, and no sample of a watched VM missed.
Knobs: VMPULSE_BENCH_LATENCY_VMS (2000), VMPULSE_BENCH_SECONDS (30).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from gateway.auth import issue_token
from tests.bench.latency import kafka_hop, percentile, watch
from tests.e2e.support import Up, run_up
from vmpulse.config import DEV_JWT_SECRET
from vmpulse.demo import demo_vm_ids

pytestmark = pytest.mark.bench

VMS = int(os.environ.get("VMPULSE_BENCH_LATENCY_VMS", "2000"))
SECONDS = float(os.environ.get("VMPULSE_BENCH_SECONDS", "30"))
WATCHED = 100
P50_MS, P99_MS = 30.0, 100.0


@pytest.fixture(scope="module")
def up_fleet() -> Iterator[Up]:
    yield from run_up(["--vms", str(VMS)])


async def test_live_latency_through_up(up_fleet: Up) -> None:
    url = up_fleet.info["gateway_url"]
    token = issue_token(DEV_JWT_SECRET, "admin", admin=True)
    fleet = demo_vm_ids(VMS)
    watched = fleet[:: max(1, len(fleet) // WATCHED)][:WATCHED]
    # the fleet connects and the first batches settle before the window opens
    warmup = 10.0
    live, hop = await asyncio.gather(
        watch(url, token, watched, warmup_s=warmup, seconds=SECONDS),
        kafka_hop(up_fleet.info["kafka_bootstrap"], rate=100, warmup_s=warmup, seconds=SECONDS),
    )
    ms = [v * 1000 for v in live.values]
    missed, expected = live.missed(1.0), live.expected(1.0)
    print(
        f"\n{VMS} VMs x 1/s through vmpulse up, {len(watched)} watched, {SECONDS:.0f} s:"
        f"\n  agent -> browser: {live.summary()}; received {len(ms)} of {expected} "
        f"expected, missed {missed}"
        f"\n  one Kafka hop (peer, same broker, same time): {hop.summary()}"
    )
    assert len(live.per_vm) == len(watched), "every watched VM delivered samples"
    assert missed == 0, f"{missed} samples of watched VMs never arrived"
    assert percentile(ms, 0.5) <= P50_MS, live.summary()
    assert percentile(ms, 0.99) <= P99_MS, live.summary()
