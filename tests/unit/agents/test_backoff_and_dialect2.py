"""Reconnect back-off numbers, and dialect 2 simulator messages per PROTOCOL.md."""

from __future__ import annotations

import json
import random

from agents.simulator.dialect2_lines import handshake_line, keep_alive_line, metrics_line
from agents.simulator.fleet import next_lines, system_metrics_line
from infra.backoff import Backoff

VM = "0b5c4a52-1f7e-4c3e-9d57-3f4c2a1b9e01"


def test_backoff_is_3s_times_1_5_capped_at_120s() -> None:
    b = Backoff()
    delays = [b.next_delay() for _ in range(12)]
    assert delays[:4] == [3.0, 4.5, 6.75, 10.125]
    assert max(delays) == 120.0 and delays[-1] == 120.0
    b.reset()
    assert b.next_delay() == 3.0


def test_dialect_2_messages_have_the_documented_shape() -> None:
    t = 1_780_000_000.0
    hs = json.loads(handshake_line(VM, t))
    assert hs["type"] == "handshake" and hs["vm_id"] == VM
    assert set(hs) == {"type", "timestamp", "vm_id", "version", "platform", "capabilities"}
    ka = json.loads(keep_alive_line(2**32 + 5, t))
    assert ka == {"type": "keep_alive", "sequence_number": 5, "timestamp": int(t)}
    m = json.loads(metrics_line(system_metrics_line(VM, t, random.Random(1)), t, random.Random(1)))
    system = m["data"]["system"]
    assert m["type"] == "metrics"
    assert {"cpu", "memory", "disk", "network", "system", "processes", "ports"} <= set(system)
    assert {"uptime_seconds", "hostname", "load_average"} <= set(system["system"])
    assert set(system["system"]["load_average"]) == {"load_1min", "load_5min", "load_15min"}
    assert system["network"]["interfaces"][0]["name"] == "eth0"


def test_processes_churn_over_time() -> None:
    def pids(t: float) -> set[int]:
        line = metrics_line(system_metrics_line(VM, t, random.Random(1)), t, random.Random(1))
        return {p["id"] for p in json.loads(line)["data"]["system"]["processes"]}

    snapshots = [pids(1_780_000_000.0 + 60 * k) for k in range(10)]
    assert all({1, 612, 733, 901} <= s for s in snapshots)  # services stay
    assert len({frozenset(s) for s in snapshots}) > 3  # jobs come and go


def test_bad_rate_replaces_lines_with_invalid_json() -> None:
    rng = random.Random(3)
    lines = [
        line
        for i in range(200)
        for line in next_lines(VM, 1.78e9 + i, rng, dialect=2, bad_rate=0.25, seq=i)
    ]
    bad = 0
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            bad += 1
    assert 0.15 < bad / len(lines) < 0.35
