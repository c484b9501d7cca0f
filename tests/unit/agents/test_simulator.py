"""system_metrics_line: valid dialect 1 JSON with the documented fields and sane values."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from agents.simulator.fleet import FleetSimulator, system_metrics_line
from tests.support.kafka import wait_until

VM = "0b5c4a52-1f7e-4c3e-9d57-3f4c2a1b9e01"
T0 = 1_780_000_000.0  # 2026-05-28, well after every simulated boot
SEED = 1234


def decode(t: float = T0, seed: int = SEED, vm: str = VM) -> dict[str, Any]:
    line = system_metrics_line(vm, t, random.Random(seed))
    assert b"\n" not in line
    message = json.loads(line)
    assert isinstance(message, dict)
    return message


def test_line_has_the_documented_dialect_1_fields() -> None:
    print(f"seed={SEED}")
    m = decode()
    assert m["type"] == "system_metrics"
    assert m["vmId"] == VM
    stamp = dt.datetime.fromisoformat(m["timestamp"].replace("Z", "+00:00"))
    assert stamp == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert m["timestamp"].endswith("Z")
    metrics = m["metrics"]
    assert set(metrics) == {"cpu", "memory", "disk", "network", "system"}
    assert set(metrics["cpu"]) == {"usage_percent", "cores_usage", "temperature"}
    assert set(metrics["memory"]) == {
        "total_kb",
        "used_kb",
        "available_kb",
        "swap_total_kb",
        "swap_used_kb",
    }
    for disk in metrics["disk"]["usage_stats"]:
        assert set(disk) == {"mount_point", "total_gb", "used_gb", "available_gb"}
    assert {d["mount_point"] for d in metrics["disk"]["usage_stats"]} >= {"/"}
    assert set(metrics["disk"]["io_stats"]) == {"read_bytes_per_sec", "write_bytes_per_sec"}
    for nic in metrics["network"]["stats"]:
        assert set(nic) == {
            "interface",
            "bytes_received",
            "bytes_sent",
            "packets_received",
            "packets_sent",
        }
    assert set(metrics["system"]) == {"uptime", "load_average"}
    assert set(metrics["system"]["load_average"]) == {"load1min", "load5min", "load15min"}


def test_values_are_in_range_over_a_day() -> None:
    rng = random.Random(SEED)
    for step in range(0, 86400, 600):
        m = json.loads(system_metrics_line(VM, T0 + step, rng))["metrics"]
        assert 0 <= m["cpu"]["usage_percent"] <= 100
        assert m["cpu"]["cores_usage"]
        assert all(0 <= c <= 100 for c in m["cpu"]["cores_usage"])
        mem = m["memory"]
        assert mem["used_kb"] + mem["available_kb"] == mem["total_kb"]
        assert 0 <= mem["swap_used_kb"] <= mem["swap_total_kb"]
        for disk in m["disk"]["usage_stats"]:
            assert 0 <= disk["used_gb"] <= disk["total_gb"]
        assert all(v >= 0 for v in m["disk"]["io_stats"].values())
        assert m["system"]["uptime"] > 0
        assert all(v >= 0 for v in m["system"]["load_average"].values())


def test_counters_only_grow() -> None:
    rng = random.Random(SEED)
    previous: dict[tuple[str, str], int] = {}
    uptime = -1
    for step in range(0, 3 * 86400, 97):
        m = json.loads(system_metrics_line(VM, T0 + step, rng))["metrics"]
        assert m["system"]["uptime"] >= uptime
        uptime = m["system"]["uptime"]
        for nic in m["network"]["stats"]:
            for field in ("bytes_received", "bytes_sent", "packets_received", "packets_sent"):
                key = (nic["interface"], field)
                assert nic[field] >= previous.get(key, 0), key
                previous[key] = nic[field]


def test_same_seed_same_line_and_cpu_varies() -> None:
    assert decode(seed=7) == decode(seed=7)
    usages = {
        json.loads(system_metrics_line(VM, T0 + h * 3600, random.Random(h)))["metrics"]["cpu"][
            "usage_percent"
        ]
        for h in range(24)
    }
    assert len(usages) > 10


def test_stopping_with_a_client_connected_ends_its_handler_without_an_error(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # `vmpulse up` stops its fleet with the bridge still connected: each connection's
    # handler must end with the fleet, not be cancelled at exit (Python 3.11 logged
    # every cancelled one as an asyncio ERROR in simulator.log)
    async def run() -> None:
        fleet = FleetSimulator(short_tmp, [VM], interval_s=60.0)
        await fleet.start()
        _, writer = await asyncio.open_unix_connection(fleet.socket_path(VM))
        try:
            await wait_until("the fleet's client", lambda: fleet.clients(VM) == 1)
            await fleet.stop()
        finally:
            writer.close()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(run())
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
