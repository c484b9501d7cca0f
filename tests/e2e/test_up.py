"""End to end: `vmpulse up` on the embedded defaults, as a user runs it.

The process starts its own Kafka broker, chDB store, bridge, worker, gateway
and simulated fleet. The test then does what a user would: lists the VMs with
an admin token, subscribes to one over Socket.IO and receives live metrics,
watches the row count grow through `vmpulse query`, plays a guest of its own
that sends a malformed line between good ones, and stops everything with
SIGINT, checking that no process or port is left behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from gateway.auth import issue_token
from infra.config import DEV_JWT_SECRET
from schemas.topics import Topics
from tests.e2e.support import VMPULSE, Up, run_up, until
from tests.support.kafka import collect, reading_from_start

pytestmark = pytest.mark.integration


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def up_process() -> Iterator[Up]:
    yield from run_up(["--vms", "3", "--interval", "0.2"])


async def test_admin_lists_vms_and_receives_live_metrics(up_process: Up) -> None:
    url = up_process.info["gateway_url"]
    token = issue_token(DEV_JWT_SECRET, "admin", admin=True)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.get(f"{url}/api/vms", headers=headers) as resp:
        assert resp.status == 200
        vms = (await resp.json())["vms"]
    assert len(vms) == 3 and all("id" in vm for vm in vms)
    vm_id = vms[0]["id"]

    client = socketio.AsyncClient(reconnection=False)
    updates: list[dict[str, object]] = []
    connected: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def on_connected(data: dict[str, Any]) -> None:
        if not connected.done():
            connected.set_result(data)

    client.on("connected", on_connected)
    client.on("metricsUpdate", lambda data: updates.append(data))
    await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    try:
        hello = await asyncio.wait_for(connected, 10)
        assert hello["user"]["id"] == "admin"
        ack = await client.call("subscribe", {"vmId": vm_id}, timeout=10)
        assert ack["ok"] is True, ack
        await until(lambda: len(updates) >= 3, 20, "3 metricsUpdate events")
    finally:
        await client.disconnect()
    assert {u["vmId"] for u in updates} == {vm_id}
    # `position` is the gateway's resume cursor (docs/SOCKETIO.md), added to every payload.
    assert all(set(u) == {"vmId", "metrics", "timestamp", "position"} for u in updates)


async def test_row_count_grows(up_process: Up) -> None:
    first = up_process.query("SELECT count() FROM system_metrics")[0][0]
    await until(
        lambda: up_process.query("SELECT count() FROM system_metrics")[0][0] > first,
        20,
        "system_metrics to grow",
    )


async def test_malformed_line_goes_to_dlq_and_next_line_is_stored(up_process: Up) -> None:
    """A guest of our own: good line, broken line, good line on one virtio-serial socket."""
    vm_id = str(uuid.uuid4())
    sock_path = Path(up_process.info["socket_dir"]) / f"{vm_id}.socket"

    def line(cpu: float) -> bytes:
        msg = {
            "type": "system_metrics",
            "vmId": vm_id,
            "timestamp": "2026-11-25T12:00:00Z",
            "metrics": {"cpu": {"usage_percent": cpu}, "memory": {"total_kb": 100, "used_kb": 50}},
        }
        return json.dumps(msg).encode() + b"\n"

    async def guest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line(11.0) + b'{"type": "system_metrics", "vmId": \n' + line(22.0))
        await writer.drain()
        await reader.read()  # keep the port open like a real agent

    server = await asyncio.start_unix_server(guest, path=str(sock_path))
    try:
        sql = (
            "SELECT cpu_usage_percent FROM system_metrics "
            f"WHERE vm_id = '{vm_id}' ORDER BY cpu_usage_percent"
        )
        await until(lambda: len(up_process.query(sql)) == 2, 20, "both good lines stored")
        assert up_process.query(sql) == [[11.0], [22.0]]
    finally:
        server.close()
        sock_path.unlink(missing_ok=True)

    topics = Topics(up_process.info["topic_prefix"])
    async with reading_from_start(up_process.settings, (topics.agent_dlq,)) as consumer:
        mine = await collect(consumer, 1, 10, keep=lambda r: r.key == vm_id.encode())
    assert mine, "no DLQ record for the malformed line"
    found = json.loads(mine[-1].value)
    assert found["reason"] == "invalid_json"
    assert found["raw"] == '{"type": "system_metrics", "vmId": '
    assert found["origin"]["vm_id"] == vm_id


def test_sigint_stops_everything(up_process: Up) -> None:
    """Runs last in this module: SIGINT, then no process and no port is left."""
    kafka_port = int(up_process.info["kafka_bootstrap"].rsplit(":", 1)[1])
    broker_pids = subprocess.run(
        ["pgrep", "-f", f"{up_process.data_dir}/kafka"], capture_output=True, text=True
    ).stdout.split()
    assert broker_pids, "the embedded broker should be a child process under the data dir"
    started = time.monotonic()
    up_process.proc.send_signal(signal.SIGINT)
    up_process.proc.wait(timeout=15)
    elapsed = time.monotonic() - started
    assert elapsed < 15
    assert not _port_open(up_process.port), "gateway port still open"
    assert not _port_open(kafka_port), "broker port still open"
    left = subprocess.run(
        ["pgrep", "-f", f"{up_process.data_dir}/kafka"], capture_output=True, text=True
    )
    assert left.stdout.strip() == "", f"broker processes left: {left.stdout}"


def test_a_stop_while_it_starts_leaves_nothing_behind(tmp_path: Path) -> None:
    """Ctrl-C while `vmpulse up` still starts its Kafka broker: it stops there, says so in
    one line (no traceback), and the half-started broker goes with it."""
    data_dir = Path(tempfile.mkdtemp(prefix="vp-up-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
    env.update({"VMPULSE_DATA_DIR": str(data_dir), "VMPULSE_GATEWAY_ADDR": "127.0.0.1:0"})
    log_path = tmp_path / "up.log"
    try:
        with log_path.open("wb") as log:
            proc = subprocess.Popen([VMPULSE, "up"], env=env, stdout=log, stderr=subprocess.STDOUT)

        def broker_pids() -> list[str]:
            found = subprocess.run(
                ["pgrep", "-f", f"{data_dir}/kafka"], capture_output=True, text=True
            )
            return found.stdout.split()

        deadline = time.monotonic() + 60
        while not broker_pids():  # the JVM is there: the stop lands in the broker's start
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        said = log_path.read_text(errors="replace")
        assert code == 130, said
        assert "vmpulse up stopped by SIGINT" in said and "Traceback" not in said, said
        assert broker_pids() == [], said
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
