"""CPU seconds from Linux /proc: of one process, and of the whole machine.

Benchmarks on a shared two-core machine report where the CPU went beside their
figures (a latency is only read right next to how full the cores were).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["machine_busy_seconds", "process_cpu_seconds"]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` (all its threads) used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every core spent busy (not idle, not waiting for I/O) since boot."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
