"""`vmpulse simulate`'s loop over TCP in dialect 2, into a real bridge and broker."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from agents.bridge import Bridge
from agents.simulator.runner import run_fleet
from infra.config import Settings
from schemas.topics import Topics
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
