"""What faces guests and the hypervisor: transports, framing, the bridge, the fleet simulator.

The bridge turns bytes from guest agents into ``agent.raw`` records; it never
parses JSON (validation is the worker's job). Public names are re-exported
here; import the submodules for the rest.
"""

from __future__ import annotations

from agents.bridge import Bridge
from agents.exceptions import AgentsError, ConnectError, FramingError, StreamError
from agents.framing import LineFramer, Overflow, Oversize, Truncated
from agents.simulator import FleetSimulator, system_metrics_line

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
