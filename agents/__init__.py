"""What faces guests and the hypervisor: transports, framing, the bridge, the fleet simulator.

The bridge turns bytes from guest agents into ``agent.raw`` records; it never
parses JSON (validation is the worker's job). Public names are re-exported
here, lazily (as gateway/__init__ does): importing a pure module such as
``agents.framing`` or ``agents.handshake`` must not load the bridge's Kafka
clients. Import the submodules for the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agents.exceptions import AgentsError, ConnectError, FramingError, StreamError
from agents.framing import LineFramer, Overflow, Oversize, Truncated

if TYPE_CHECKING:
    from agents.bridge import Bridge
    from agents.simulator.fleet import FleetSimulator, system_metrics_line

__all__ = [
    "AgentsError",
    "Bridge",
    "ConnectError",
    "FleetSimulator",
    "FramingError",
    "LineFramer",
    "Overflow",
    "Oversize",
    "StreamError",
    "Truncated",
    "system_metrics_line",
]

_LAZY = {
    "Bridge": "agents.bridge",
    "FleetSimulator": "agents.simulator.fleet",
    "system_metrics_line": "agents.simulator.fleet",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
