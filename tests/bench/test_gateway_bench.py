"""The gateway benchmark as a pytest run (``make bench``): a small fleet, figures printed.

The full-size run (5,000 clients) is ``python -m tests.bench.gateway_bench``;
see docs/BENCHMARKS.md. This one checks the harness end to end and that every
expected delivery arrives at both servers.
"""

from __future__ import annotations

import argparse
import shutil

import pytest

from tests.bench.gateway_bench import NODE_DIR, run

pytestmark = pytest.mark.bench


async def test_gateway_beside_node_reference(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir():
        pytest.fail(f"the benchmark needs node and `npm install` in {NODE_DIR}")
    monkeypatch.setenv("VMPULSE_KAFKA_BOOTSTRAP", kafka_bootstrap)
    args = argparse.Namespace(
        clients=500,
        vms=50,
        steady_rate=50.0,
        steady_seconds=4.0,
        burst_events=500,
        settle_seconds=1.0,
        servers=["python", "node"],
    )
    results = await run(args)
    for result in results:
        for phase in ("steady", "burst"):
            assert result[phase]["received"] == result[phase]["expected"], result
