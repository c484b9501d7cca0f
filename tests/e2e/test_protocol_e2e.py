"""End to end: both agent dialects, from Linux and Windows guests, through `vmpulse up`.

Four fake guests, each a unix socket in the socket directory as the
hypervisor creates them, write real-shaped traffic with malformed lines in
between (bad JSON, invalid UTF-8, wrong types, NaN, another VM's id, absurd
nesting, a negative counter), and a message of a type vmpulse does not know,
which is stored as an ``unrecognized`` agent event instead. The test checks what an operator
and a user would: every metrics message is one system_metrics row with the
values sent, its processes, ports, disks and interfaces are rows, every
malformed line is one DLQ record with its reason (`vmpulse dlq` counts them),
the good lines around them are stored, and an admin watching two of the VMs
receives their metricsUpdate events.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from gateway.auth import issue_token
from infra.config import DEV_JWT_SECRET
from infra.kafka_io import make_producer
from schemas.directory import Department, User, Vm
from schemas.topics import Topics
from tests.e2e.support import Up, run_up, until
from tests.support import examples as ex
from tests.support.kafka import collect, reading_from_start
from vmpulse.demo import publish_records

pytestmark = pytest.mark.integration

ADMIN = "protocol-admin"


@pytest.fixture(scope="module")
def up_process() -> Iterator[Up]:
    yield from run_up(["--vms", "0"])


class Guest:
    """One VM's agent: a script of lines, written once to the first host connection."""

    def __init__(self, vm_id: str) -> None:
        self.vm_id = vm_id
        self.lines: list[bytes] = []
        self.metrics: list[dict[str, Any]] = []  # good metrics messages, in order
        self.bad: list[tuple[bytes, str]] = []  # (line, expected reason)
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self._sent = False

    def good(self, msg: dict[str, Any]) -> None:
        if msg["type"] in ("system_metrics", "metrics"):
            self.metrics.append(msg)
        self.lines.append(ex.line(msg))

    def malformed(self, raw: bytes, reason: str) -> None:
        self.bad.append((raw, reason))
        self.lines.append(raw)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        if not self._sent:  # a reconnecting host must not get the script twice
            self._sent = True
            writer.write(b"".join(line + b"\n" for line in self.lines))
            await writer.drain()
        try:
            await reader.read()  # keep the port open like a real agent, until stop()
        except OSError:
            pass
        writer.close()

    async def start(self, socket_dir: Path) -> None:
        path = socket_dir / f"{self.vm_id}.socket"
        self.server = await asyncio.start_unix_server(self._serve, path=str(path))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


def _guests() -> dict[str, Guest]:
    a, b, c, d = (Guest(str(uuid.uuid4())) for _ in range(4))
    now = time.time()
    # A: Linux, dialect 1
    a.good(ex.d1_vm_identification(a.vm_id))
    a.good(ex.d1_system_metrics(a.vm_id, now, cpu=11.5))
    a.good(ex.d1_process_snapshot(a.vm_id, now, n=5))
    a.good(ex.d1_port_usage(a.vm_id, now, n=4))
    a.good(ex.d1_application_usage(a.vm_id, now))
    a.malformed(b'{"type": "system_metrics", "vmId": ', "invalid_json")
    a.malformed(ex.line(ex.d1_system_metrics(b.vm_id, now)), "vm_mismatch")
    wrong = ex.d1_system_metrics(a.vm_id, now)
    wrong["metrics"]["cpu"]["usage_percent"] = "high"
    a.malformed(ex.line(wrong), "schema_violation")
    a.good(ex.d1_system_metrics(a.vm_id, now + 1, cpu=12.5))
    # B: Windows, dialect 1
    b.good(ex.d1_vm_identification(b.vm_id, windows=True))
    b.good(ex.d1_system_metrics(b.vm_id, now, windows=True, cpu=33.25))
    b.malformed(
        b'{"type":"vm_identification","vmId":"' + b.vm_id.encode() + b'","hostname":"\xff\xfe"}',
        "invalid_utf8",
    )
    # a type this version does not know: stored as unrecognized, not dead-lettered (issue 10)
    b.good({"type": "self_destruct", "vmId": b.vm_id})
    b.good(ex.d1_system_metrics(b.vm_id, now + 1, windows=True, cpu=34.25))
    b.good(ex.d1_process_snapshot(b.vm_id, now, windows=True, n=3))
    # C: Linux, dialect 2
    c.good(ex.d2_handshake(c.vm_id, now))
    c.good(ex.d2_metrics(c.vm_id, now, processes=6, ports=3, cpu=21.5))
    c.good(ex.d2_keep_alive(1, now))
    c.malformed(b'{"type":"keep_alive","sequence_number":2,"timestamp":NaN}', "non_finite_number")
    deep = b'{"type":"agent_event","severity":"info","message":"m","context":'
    c.malformed(deep + b"[" * 5000 + b"]" * 5000 + b"}", "too_deep")
    c.good(ex.d2_metrics(c.vm_id, now + 1, processes=6, ports=3, cpu=22.5))
    c.good(ex.d2_agent_event(now))
    c.good(ex.d2_response())
    c.good(ex.d2_script_completion(now))
    # D: Windows, dialect 2, with a 1,000-process metrics line
    d.good(ex.d2_handshake(d.vm_id, now, windows=True))
    d.good(ex.d2_metrics(d.vm_id, now, windows=True, processes=1000, ports=20, cpu=41.5))
    d.malformed(ex.line(ex.d2_handshake(a.vm_id, now, windows=True)), "vm_mismatch")
    negative = ex.d2_metrics(d.vm_id, now, windows=True)
    negative["data"]["system"]["memory"]["used_kb"] = -5
    d.malformed(ex.line(negative), "out_of_range")
    d.good(ex.d2_error_report(d.vm_id, now, windows=True))
    d.good(ex.d2_metrics(d.vm_id, now + 1, windows=True, processes=4, ports=2, cpu=42.5))
    d.good(ex.d2_keep_alive(1, now))
    return {"a": a, "b": b, "c": c, "d": d}


async def _publish_directory(up: Up, vm_ids: list[str]) -> None:
    producer = make_producer(up.info["kafka_bootstrap"])
    await producer.start()
    try:
        records: list[User | Vm | Department] = [
            User(id=ADMIN, name="Protocol admin", role="admin")
        ]
        records += [Vm(id=vm, name=f"protocol-{i}") for i, vm in enumerate(vm_ids)]
        await publish_records(producer, Topics(up.info["topic_prefix"]), records)
    finally:
        await producer.stop()


class Api:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.headers = {"Authorization": f"Bearer {issue_token(DEV_JWT_SECRET, ADMIN, admin=True)}"}

    async def known(self) -> bool:
        """Whether the gateway accepts this admin's token (it has read the directory record)."""
        async with self.http.get(f"{self.url}/api/vms", headers=self.headers) as resp:
            return resp.status == 200

    async def query(self, sql: str) -> list[list[Any]]:
        async with self.http.post(
            f"{self.url}/api/query", json={"sql": sql}, headers=self.headers
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return list(body["rows"])


async def _poll(api: Api, sql: str, expected: object, within: float, what: str) -> None:
    last: object = None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        last = await api.query(sql)
        if last == expected:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: got {last!r}, want {expected!r}")


async def _dlq_records(up: Up, vm_ids: set[str], count: int) -> list[dict[str, Any]]:
    topics = Topics(up.info["topic_prefix"])
    async with reading_from_start(up.settings, (topics.agent_dlq,)) as consumer:
        found = await collect(
            consumer, count, 60, keep=lambda r: bool(r.key) and r.key.decode() in vm_ids
        )
    return [json.loads(r.value) for r in found]


async def test_both_dialects_are_stored_and_every_malformed_line_explained(
    up_process: Up,
) -> None:
    guests = _guests()
    vm_ids = [g.vm_id for g in guests.values()]
    watched = {guests["b"].vm_id, guests["c"].vm_id}
    await _publish_directory(up_process, vm_ids)
    url = up_process.info["gateway_url"]

    client = socketio.AsyncClient(reconnection=False)
    updates: list[dict[str, Any]] = []
    client.on("metricsUpdate", lambda data: updates.append(data))
    async with aiohttp.ClientSession() as http:
        api = Api(http, url)
        # the admin was just put in the directory: the gateway knows it shortly
        deadline = time.monotonic() + 30
        while not await api.known():
            assert time.monotonic() < deadline, "the gateway never learned the test's admin"
            await asyncio.sleep(0.2)
        await client.connect(url, auth={"token": api.headers["Authorization"][7:]}, wait_timeout=10)
        try:
            for vm in watched:  # the gateway sees the directory records shortly
                acks: list[Any] = []

                async def subscribe(vm: str = vm, acks: list[Any] = acks) -> bool:
                    acks.append(await client.call("subscribe", {"vmId": vm}, timeout=10))
                    return bool(acks[-1].get("ok"))

                deadline = time.monotonic() + 30
                while not await subscribe():
                    assert time.monotonic() < deadline, f"subscribe refused: {acks[-1]}"
                    await asyncio.sleep(0.3)

            socket_dir = Path(up_process.info["socket_dir"])
            for guest in guests.values():
                await guest.start(socket_dir)

            in_list = ", ".join(f"'{v}'" for v in vm_ids)
            expected_metrics = sorted(
                [
                    g.vm_id,
                    m["metrics"]["cpu"]["usage_percent"]
                    if m["type"] == "system_metrics"
                    else m["data"]["system"]["cpu"]["usage_percent"],
                    m["metrics"]["memory"]["used_kb"]
                    if m["type"] == "system_metrics"
                    else m["data"]["system"]["memory"]["used_kb"],
                    1 if m["type"] == "system_metrics" else 2,
                    "agent",
                ]
                for g in guests.values()
                for m in g.metrics
            )
            await _poll(
                api,
                "SELECT vm_id, cpu_usage_percent, memory_used_kb, dialect, ts_source "
                f"FROM system_metrics WHERE vm_id IN ({in_list}) ORDER BY vm_id, cpu_usage_percent",
                expected_metrics,
                90,
                "one system_metrics row per metrics message, with the values sent",
            )
            await until(lambda: {u["vmId"] for u in updates} >= watched, 30, "metricsUpdate")
        finally:
            for guest in guests.values():
                await guest.stop()
            await client.disconnect()

        a, b, c, d = (guests[k].vm_id for k in "abcd")

        async def settled(table: str, expected: dict[str, int]) -> None:
            """A block's tables are written one after another: wait for this one's rows."""
            await _poll(
                api,
                f"SELECT vm_id, count() FROM {table} WHERE vm_id IN ({in_list}) "
                "GROUP BY vm_id ORDER BY vm_id",
                [[vm, n] for vm, n in sorted(expected.items())],
                30,
                f"the rows of {table}",
            )

        await settled("process_snapshots", {a: 5, b: 3, c: 12, d: 1004})
        await settled("port_usage", {a: 4, c: 6, d: 22})
        await settled("disk_usage", {a: 2, b: 2, c: 2, d: 2})
        await settled("network_interfaces", {a: 2, b: 2, c: 2, d: 2})
        await settled("application_usage", {a: 2})
        expected_kinds = {
            a: ["hello"],
            b: ["hello", "unrecognized"],
            c: ["agent_event", "command_result", "hello", "script_completion"],
            d: ["error_report", "hello"],
        }
        await _poll(
            api,
            "SELECT vm_id, arraySort(groupArray(kind)) FROM agent_events "
            f"WHERE vm_id IN ({in_list}) GROUP BY vm_id ORDER BY vm_id",
            [[vm, k] for vm, k in sorted(expected_kinds.items())],
            30,
            "the agent_events rows",
        )
        procs = await api.query(
            "SELECT name, executable_path, round(toFloat64(cpu_usage_percent), 2), "
            f"memory_usage_kb, status FROM process_snapshots WHERE vm_id = '{c}' AND pid = 2"
        )
        assert procs == [["sshd", "/usr/bin/sshd", 7.3, 2048, "Run"]] * 2
        (port,) = await api.query(
            "SELECT port, protocol, state, process_name, is_listening "
            f"FROM port_usage WHERE vm_id = '{a}' AND port = 22"
        )
        assert port == [22, "udp", "LISTEN", "sshd", True]
        (sample,) = await api.query(
            "SELECT load_1min, swap_total_kb, uptime_seconds, cpu_cores_usage "
            f"FROM system_metrics WHERE vm_id = '{c}' AND cpu_usage_percent = 21.5"
        )
        assert sample == [1.25, 4_194_304, 123_456.0, [21.5, 5.5]]

    # every malformed line: one DLQ record with its reason and origin
    want = [(g.vm_id, raw, reason) for g in guests.values() for raw, reason in g.bad]
    records = await _dlq_records(up_process, set(vm_ids), len(want))
    got = Counter((r["origin"]["vm_id"], r["reason"]) for r in records)
    assert got == Counter((vm, reason) for vm, _, reason in want)
    for record in records:
        raw = (
            base64.b64decode(record["raw"])
            if record["raw_encoding"] == "base64"
            else record["raw"].encode()
        )
        assert (record["origin"]["vm_id"], raw, record["reason"]) in want
        if record["origin"]["topic"] is None:
            # Dead-lettered by the bridge itself (a line claiming another VM never
            # reaches agent.raw), so it has no offset; the transport says where from.
            assert record["reason"] == "vm_mismatch" and record["origin"]["offset"] is None
            assert record["origin"]["transport"] == "unix"
        else:
            assert record["origin"]["topic"].endswith("agent.raw")
            assert record["origin"]["offset"] is not None
        assert record["detail"]

    # the operator's view of the same
    out = up_process.run("dlq", "--json", "-n", "50")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    for reason, n in Counter(reason for _, _, reason in want).items():
        assert summary["counts"].get(reason, 0) >= n, (reason, summary["counts"])
    assert {e["key"] for e in summary["latest"]} >= set(vm_ids)

    # the admin received live updates for the watched VMs, in the contract shape
    assert all(set(u) == {"vmId", "metrics", "timestamp", "position"} for u in updates)
    sent = {
        (g.vm_id, m["metrics"]["cpu"]["usage_percent"])
        if m["type"] == "system_metrics"
        else (g.vm_id, m["data"]["system"]["cpu"]["usage_percent"])
        for g in guests.values()
        for m in g.metrics
    }
    assert {u["vmId"] for u in updates} == watched
    assert all((u["vmId"], u["metrics"]["cpu"]["usage_percent"]) in sent for u in updates)
