"""`vmpulse simulate`: its loop over TCP in dialect 2, into a real bridge and broker, and
the command's descriptor budget."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from agents.bridge import Bridge
from agents.simulator.runner import run_fleet
from infra.config import Settings
from schemas.topics import Topics
from tests.e2e.support import VMPULSE
from tests.support.kafka import Collector
from vmpulse.demo import demo_vm_ids

pytestmark = pytest.mark.integration


async def test_tcp_dialect_2_fleet_with_bad_lines_reaches_agent_raw(
    settings: Settings, topics_ready: Topics, collector: Collector
) -> None:
    settings = settings.replace(bridge={"tcp_host": "127.0.0.1", "tcp_port": 0})
    bridge = Bridge(settings)
    await bridge.start()
    vms = demo_vm_ids(3)
    out = io.StringIO()
    stop = asyncio.Event()
    fleet = asyncio.create_task(
        run_fleet(
            vms,
            interval_s=0.05,
            dialect=2,
            transport="tcp",
            bad_rate=0.2,
            socket_dir=settings.bridge.socket_dir,
            tcp_addr=bridge.listeners[0].address[:2],
            agent_secret=settings.bridge.agent_secret.reveal(),
            progress_s=0.3,
            out=out,
            stop=stop,
        )
    )
    try:

        def types(vm: str) -> set[str]:
            found = set()
            for r in collector.for_vm(vm):
                try:
                    found.add(json.loads(r.value)["type"])
                except ValueError:
                    found.add("<invalid>")
            return found

        await collector.wait_for(
            "handshake, metrics, keep_alive and a bad line from every VM",
            lambda: all(
                types(vm) == {"handshake", "metrics", "keep_alive", "<invalid>"} for vm in vms
            ),
            10.0,
        )
        stop.set()
        assert await fleet == 0
    finally:
        stop.set()
        await bridge.stop()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("simulating 3 agents (dialect 2) over tcp")
    assert any(line.startswith("sent ") and line.endswith(" lines/s") for line in lines[1:])
    assert all(r.key.decode() in vms for r in collector.raw)
    assert {dict(r.headers)["transport"] for r in collector.raw} == {b"tcp"}


def _simulate(
    short_tmp: Path, vms: int, limits: tuple[int, int], *more: str
) -> subprocess.Popen[str]:
    def limit() -> None:  # the descriptor limit of a host where `ulimit -n` is low
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)

    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
    env["VMPULSE_SOCKET_DIR"] = str(short_tmp)
    return subprocess.Popen(
        [VMPULSE, "simulate", "--vms", str(vms), "--progress", "60", *more],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
    )


def test_a_fleet_beyond_the_descriptor_limit_is_refused_with_the_reason(short_tmp: Path) -> None:
    # 200 VMs over unix sockets hold ~464 descriptors; before, each accept past the
    # limit printed a traceback and its VM went silent while the fleet ran on
    proc = _simulate(short_tmp, 200, (256, 256))
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()  # it ran on instead of refusing
        raise
    assert proc.returncode == 2, (out, err)
    assert "200 VMs over unix need about 464 file descriptors" in err
    assert "may open 256 (ulimit -n)" in err and "--transport tcp" in err
    assert "Traceback" not in err


def test_a_low_soft_descriptor_limit_is_raised_to_the_hard_one(short_tmp: Path) -> None:
    # every vmpulse command does this (infra/descriptors.py): a container's soft 1,024
    # would turn away the bridge's agents and the gateway's browsers past that many
    proc = _simulate(short_tmp, 200, (128, 1024))
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("simulating 200 agents"), (line, proc.poll())
        assert len(list(short_tmp.glob("*.socket"))) == 200
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert re.search(r"Max open files\s+1024\s+1024", limits), limits
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_shards_of_a_fleet_serve_it_together_each_vm_once(short_tmp: Path) -> None:
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    shards = [_simulate(short_tmp, 5, limits, "--shard", f"{i}/2") for i in range(2)]
    try:
        lines = [p.stdout.readline() if p.stdout else "" for p in shards]
        assert [line.split(" agents")[0] for line in lines] == ["simulating 3", "simulating 2"]
        served = sorted(p.name.removesuffix(".socket") for p in short_tmp.glob("*.socket"))
        assert served == sorted(demo_vm_ids(5))
    finally:
        for proc in shards:
            proc.send_signal(signal.SIGINT)
        for proc in shards:
            proc.communicate(timeout=30)


def test_a_malformed_shard_is_a_usage_error() -> None:
    proc = subprocess.run(
        [VMPULSE, "simulate", "--shard", "2/2"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "--shard: must be I/N with 0 <= I < N, got '2/2'" in proc.stderr
