"""CPU seconds from Linux /proc: of one process, and of the whole machine; and how long a
process's threads waited for a core.

Benchmarks on a shared two-core machine report where the CPU went beside their
figures (a latency is only read right next to how full the cores were).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["machine_busy_seconds", "process_cpu_seconds", "process_runqueue_wait_seconds"]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` (all its threads) used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_runqueue_wait_seconds(pid: int) -> float:
    """Time the threads of process ``pid`` alive now spent ready to run but waiting for a
    core (the second figure of each thread's schedstat). Beside the CPU time it tells a
    stage that had little work from one that could not get a core for it."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # the thread ended meanwhile
    return total / 1e9


def machine_busy_seconds() -> float:
    """CPU time every core spent busy (not idle, not waiting for I/O) since boot."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
