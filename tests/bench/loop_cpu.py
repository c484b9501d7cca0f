"""Where `vmpulse up`'s event-loop thread spends its CPU, task by task, at a given fleet size.

Why: a sampling profiler run with ``--gil`` counts wall time while a thread holds the GIL,
and on a saturated 2-core machine a thread is often descheduled while holding it, so the
shares it shows for small per-record functions were several times their CPU cost. This
counts CPU itself: every callback the loop runs is timed with ``time.thread_time`` and
charged to its task's coroutine (or to the callback's name), and every ``--every`` seconds
it prints each task's share of one core and how many callbacks it ran. It also prints how
many Kafka fetches each aiokafka consumer made (per-request cost is a large part of a
live path at a few thousand records a second).

Run (ends itself; the fleet, bridge and broker are `up`'s own children):
``.venv/bin/python -m tests.bench.loop_cpu --vms 2000 --seconds 40``
Compare figures of one run, or runs taken back to back: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.events
import collections
import os
import signal
import sys
import threading
import time
from typing import Any

_cpu: dict[str, float] = collections.defaultdict(float)
_calls: collections.Counter[str] = collections.Counter()
_fetches: collections.Counter[str] = collections.Counter()


def _name(callback: Any) -> str:
    task = getattr(callback, "__self__", None)
    if task is not None and hasattr(task, "get_coro"):
        coro = task.get_coro()
        return f"task {getattr(coro, '__qualname__', type(coro).__name__)}"
    return str(getattr(callback, "__qualname__", None) or type(callback).__name__)


def _instrument() -> None:
    """Time every loop callback, and count aiokafka's fetch requests per consumer."""
    from aiokafka.consumer import fetcher

    run = asyncio.events.Handle._run
    clock = time.thread_time

    def timed(self: Any) -> None:
        start = clock()
        run(self)
        name = _name(self._callback)  # a private attribute: this is a measuring tool
        _cpu[name] += clock() - start
        _calls[name] += 1

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    proc = fetcher.Fetcher._proc_fetch_request

    async def counted(self: Any, assignment: Any, node_id: int, request: Any) -> Any:
        topics = sorted({tp.topic for tp in assignment.tps})
        _fetches[f"{','.join(topics)[:60]} (wait {self._fetch_max_wait_ms} ms)"] += 1
        return await proc(self, assignment, node_id, request)

    fetcher.Fetcher._proc_fetch_request = counted


def _report(every: float, seconds: float, top: int) -> None:
    """Print the shares every ``every`` s; stop `up` (SIGINT) after ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        time.sleep(every)
        total = sum(_cpu.values())
        print(f"\nloop thread: {total / every * 100:.0f} % of a core in callbacks", flush=True)
        for name, spent in sorted(_cpu.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {spent / every * 100:5.1f} %  {_calls[name]:>7} calls  {name}")
        for name, n in _fetches.most_common():
            print(f"  fetches {n / every:6.0f}/s  {name}")
        _cpu.clear()
        _calls.clear()
        _fetches.clear()
    os.kill(os.getpid(), signal.SIGINT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    _instrument()
    threading.Thread(target=_report, args=(args.every, args.seconds, args.top), daemon=True).start()
    from vmpulse.cli import main as vmpulse

    sys.argv = ["vmpulse", "up", "--vms", str(args.vms)]
    return int(vmpulse() or 0)


if __name__ == "__main__":
    sys.exit(main())
