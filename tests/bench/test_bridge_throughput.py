"""Bridge throughput: 1,000 unix-socket VMs, ~1 KB lines, counted as acknowledged by Kafka.

Printed beside kcat (librdkafka) producing the very same lines (same keys, same
broker, zstd, acks=all, idempotence) as a ratio. Run with ``make bench`` or::

    .venv/bin/python -m pytest -q -m bench -s tests/bench/test_bridge_throughput.py

``BENCH_LINES_PER_VM`` (default 500) sets the load: 1,000 x 500 = 500,000 lines. At 100
the bridge's run lasted 0.8 s and its 50,000-line in-flight budget made the
acknowledgements come in a few bursts, so the 10-90 % rate swung 0.6-1.4x kcat from run
to run (docs/BENCHMARKS.md, session 12).
The load generator is a separate process (tests/bench/bridge_load.py); the
bridge runs in the pytest process and counts acknowledgements itself, on uvloop with
the collector tuned, as ``vmpulse bridge`` runs it (until session 13 it ran on asyncio's
own loop, which starts and reads differently: docs/BENCHMARKS.md, session 13). Each
side's CPU per line is printed beside the rates: on two shared cores a rate is as much
the machine's as the program's. So is the whole machine's CPU per line while each side
ran (the broker's share is the same for both, ~2.4 us a line, by perf in session 15):
with both cores busy, the ratio of the rates is about the inverse ratio of those.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from agents.bridge import Bridge
from agents.simulator.fleet import system_metrics_line
from infra.config import BridgeSettings, KafkaSettings, Settings
from infra.kafka_io import ensure_topics
from schemas.topics import Topics
from tests.support.cpu import machine_busy_seconds, process_cpu_seconds
from vmpulse.tuning import tune_gc, tune_malloc

pytestmark = pytest.mark.bench

VMS = 1000
PARTITIONS = 12


class _Watch(threading.Thread):
    """Times the bridge's counters from a thread of its own, every millisecond.

    The bridge takes its reads in the loop's read callbacks; a coroutine polling its
    counters on that loop ran only after a burst was taken, so its marks fell late
    together and the 10-90 % rate came out at ten times kcat's (sessions 11-12).
    """

    def __init__(self, bridge: Bridge, total: int) -> None:
        super().__init__(daemon=True)
        self.bridge, self.total = bridge, total
        self.stop, self.done = threading.Event(), threading.Event()
        self.marks: dict[int, float] = {}
        self.first_read = self.first_ack = self.all_connected = 0.0
        self.peak = 0

    def run(self) -> None:
        bridge, total = self.bridge, self.total
        while not self.stop.is_set():
            now = time.monotonic()
            lines = bridge.lines
            self.peak = max(self.peak, bridge.in_flight)
            if not self.all_connected and bridge.connections >= VMS:
                self.all_connected = now
            if not self.first_read and bridge.bytes:
                self.first_read = now
            if not self.first_ack and lines:
                self.first_ack = now
            for pct in (10, 90, 100):
                if pct not in self.marks and lines >= total * pct // 100:
                    self.marks[pct] = now
            if 100 in self.marks:
                self.done.set()
                return
            time.sleep(0.001)


def _write_lines(path: Path, per_vm: int) -> tuple[int, int]:
    rng = random.Random(5)
    t0 = time.time()
    total = size = 0
    with open(path, "wb") as f:
        for _ in range(VMS):
            vm = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            for i in range(per_vm):
                line = system_metrics_line(vm, t0 + i * 0.001, rng)
                f.write(vm.encode() + b"\t" + line + b"\n")
                total += 1
                size += len(line)
    return total, size


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _kcat(bootstrap: str, topic: str, lines_file: Path) -> float:
    start = time.monotonic()
    subprocess.run(
        [
            "kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-l", os.fspath(lines_file),
            "-z", "zstd", "-X", "enable.idempotence=true", "-X", "acks=all",
            "-X", "linger.ms=5", "-X", "batch.size=1000000",
        ],
        check=True,
    )  # fmt: skip
    return time.monotonic() - start


def _start_load(lines_file: Path, socket_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bench.bridge_load", lines_file, socket_dir],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def test_bridge_throughput_beside_kcat(kafka_bootstrap: str, short_tmp: Path) -> None:
    if shutil.which("kcat") is None:
        pytest.fail("kcat not installed: apt-get install -y kcat")
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_measure(kafka_bootstrap, short_tmp))


async def _measure(kafka_bootstrap: str, short_tmp: Path) -> None:
    per_vm = int(os.environ.get("BENCH_LINES_PER_VM", "500"))
    lines_file = short_tmp / "lines.tsv"
    total, size = _write_lines(lines_file, per_vm)
    prefix = f"b{uuid.uuid4().hex[:8]}."
    settings = Settings(
        data_dir=short_tmp,
        kafka=KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=prefix, partitions=PARTITIONS),
        bridge=BridgeSettings(socket_dir=short_tmp / "s"),
    )
    topics = Topics(prefix)
    kcat_topics = Topics(prefix + "kcat.")
    for t in (topics, kcat_topics):
        await ensure_topics(kafka_bootstrap, t, partitions=PARTITIONS, replication_factor=1)

    # Warm the broker first (a fresh broker loads its producer-id coordinator on the
    # first idempotent producer), so neither side is charged for it.
    warm = short_tmp / "warm.tsv"
    warm.write_bytes(b"k\tv\n")
    await asyncio.to_thread(_kcat, kafka_bootstrap, kcat_topics.agent_dlq, warm)
    kcat_cpu_start, kcat_busy_start = _children_cpu_s(), machine_busy_seconds()
    kcat_s = await asyncio.to_thread(_kcat, kafka_bootstrap, kcat_topics.agent_raw, lines_file)
    kcat_cpu_s = _children_cpu_s() - kcat_cpu_start
    kcat_busy_s = machine_busy_seconds() - kcat_busy_start

    # The bridge (and its producer) start first, as in production; the clock
    # starts when the 1,000 sockets appear and stops at the last acknowledgement.
    # As `vmpulse bridge` runs it: with the garbage collector and malloc tuned
    # (vmpulse/tuning.py; malloc's settings stay for the rest of this process).
    threshold = gc.get_threshold()
    tune_gc()
    tune_malloc()
    bridge = Bridge(settings)
    await bridge.start()
    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled")
        profiler.start()
    load = _start_load(lines_file, settings.bridge.socket_dir)
    try:
        assert load.stdout is not None
        assert load.stdin is not None
        assert (await asyncio.to_thread(load.stdout.readline)).strip() == b"bound"
        start = time.monotonic()
        cpu_start = time.process_time()
        busy_start, load_cpu_start = machine_busy_seconds(), process_cpu_seconds(load.pid)
        loop_cpu_start = time.thread_time()
        load.stdin.write(b"go\n")
        load.stdin.flush()
        watch = _Watch(bridge, total)
        watch.start()
        try:
            finished = await asyncio.to_thread(watch.done.wait, 600)
        finally:  # a failed run must not leave the thread polling for the session
            watch.stop.set()
            watch.join()
        assert finished, f"{bridge.lines}/{total} after 600 s"
        marks, peak = watch.marks, watch.peak
        done = marks[100]
        first_read, first, all_connected = (
            watch.first_read or done,
            watch.first_ack or done,
            watch.all_connected or done,
        )
        cpu_s = time.process_time() - cpu_start
        loop_cpu_s = time.thread_time() - loop_cpu_start
        busy_s = machine_busy_seconds() - busy_start
        load_cpu_s = process_cpu_seconds(load.pid) - load_cpu_start
        await bridge.stop()
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
    finally:
        load.kill()
        load.wait()
        gc.set_threshold(*threshold)
        gc.unfreeze()
    assert bridge.lines == total and bridge.send_errors == 0 and bridge.rejects == 0
    bridge_rate = total / (done - start)
    steady = total * 0.8 / max(marks[90] - marks[10], 1e-3)
    kcat_rate = total / kcat_s
    print(
        f"\nbridge benchmark: {VMS} unix-socket VMs, {total} lines, {size / total:.0f} B/line avg\n"
        f"  bridge: {bridge_rate:,.0f} lines/s acknowledged overall "
        f"({done - start:.2f} s), {steady:,.0f} lines/s steady (10%-90%)\n"
        f"  first read after {first_read - start:.2f} s, all {VMS} connected after "
        f"{all_connected - start:.2f} s, first acknowledgement after "
        f"{first - start:.2f} s, peak {peak} lines waiting for Kafka, every reader held "
        f"off {bridge.read_holds} times (the budget full)\n"
        f"  bridge CPU: {cpu_s:.2f} s, {total / cpu_s:,.0f} lines per CPU second; event loop "
        f"thread {loop_cpu_s:.2f} s ({loop_cpu_s / total * 1e6:.1f} us/line), librdkafka and "
        f"poll threads {cpu_s - loop_cpu_s:.2f} s\n"
        f"  kcat  : {kcat_rate:,.0f} lines/s ({kcat_s:.2f} s); CPU {kcat_cpu_s:.2f} s "
        f"({kcat_cpu_s / total * 1e6:.1f} us/line, the bridge {cpu_s / total * 1e6:.1f})\n"
        f"  the whole machine ({os.cpu_count()} cores, the broker and the load included): "
        f"{busy_s / total * 1e6:.1f} us of CPU a line while the bridge ran "
        f"({busy_s / (done - start) * 100:.0f} % busy; the load generator "
        f"{load_cpu_s / total * 1e6:.1f} us a line), {kcat_busy_s / total * 1e6:.1f} while "
        f"kcat ran ({kcat_busy_s / kcat_s * 100:.0f} % busy)\n"
        f"  ratio bridge/kcat: {bridge_rate / kcat_rate:.2f} overall, "
        f"{steady / kcat_rate:.2f} steady"
    )
