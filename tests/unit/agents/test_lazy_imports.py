"""Importing a pure module of agents/ loads no Kafka client (agents/__init__ is lazy)."""

from __future__ import annotations

import subprocess
import sys

import pytest

KAFKA_CLIENTS = ("aiokafka", "confluent_kafka", "faust")


@pytest.mark.parametrize(
    "module",
    [
        "agents",
        "agents.framing",
        "agents.handshake",
        "agents.identity",
        "agents.admission",
        "agents.simulator.fleet",
        "agents.simulator.dialect2_lines",
    ],
)
def test_pure_module_loads_no_kafka_client(module: str) -> None:
    # A fresh interpreter: this test process has long imported everything.
    probe = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        f"print(','.join(m for m in {KAFKA_CLIENTS!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"importing {module} loaded {out.stdout.strip()}"


def test_lazy_names_still_resolve() -> None:
    import agents
    from agents.bridge import Bridge
    from agents.simulator.fleet import FleetSimulator

    assert agents.Bridge is Bridge
    assert agents.FleetSimulator is FleetSimulator
    with pytest.raises(AttributeError):
        _ = agents.NoSuchThing
