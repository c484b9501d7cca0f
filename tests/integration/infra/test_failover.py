"""Broker failure under load: the whole pipeline as processes on a 3-broker cluster (issue 14.2).

Real parts only: a local KRaft cluster of 3 combined nodes (infra/cluster.py),
a simulated fleet serving unix sockets (`vmpulse simulate`), one `vmpulse bridge`,
two `vmpulse worker` and two `vmpulse gateway` processes, and a Socket.IO
watcher on each gateway subscribed to some VMs. Mid-run the broker that leads
the most agent.raw partitions is killed with SIGKILL and restarted later; then
the same with the active controller (the KRaft quorum's leader).

What a user would check:
- every line the bridge had acknowledged is stored: the bridge's own counter of
  acknowledged lines = the lines on agent.raw = the distinct (partition, offset)
  positions stored; each store holds a line at most once and its 1-minute rollup
  counts its raw rows, minute by minute. chDB lets one process own a store, so
  each worker process has its own chDB directory and the rows of both are
  counted together. A block stored but not committed when its partitions moved
  (the broker kills make the group rebalance) is stored again by the next owner:
  on one ClickHouse server its dedup tokens drop it (the one-store case is
  tests/integration/streams/test_two_workers.py, in-process); across two chDB
  stores it shows as a position in both, counted and printed;
- no stage exits;
- the watchers on both gateways get every live update from the first kill on:
  every sample of a watched VM stored with a timestamp after the kill reached
  both (the workers run without the live throttle, so every sample goes live);
- the pause at each failover, measured and printed: the longest silence between
  live updates at a watcher around the kill, and the worst agent-to-watcher
  delay of the samples written then.

Load: VMPULSE_FAILOVER_VMS VMs (default 200) at VMPULSE_FAILOVER_INTERVAL_S
(default 1 s). The issue asks for about 1,000 VMs at 2,000 messages a second;
on this 2-core machine shared by several engineers the 3 JVMs and 6 Python
processes do not keep up with that (docs/BENCHMARKS.md, "Failover"), so the
default is what runs here, and the figure says so.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import socketio
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError

from gateway.auth import issue_token
from infra.broker import free_port
from infra.cluster import LocalCluster
from infra.config import Settings
from infra.kafka_io import ensure_settings_topics
from schemas.directory import User, Vm
from schemas.events import decode_outbound
from schemas.topics import Topics
from streams.app import ingest_group_id
from tests.integration.gateway.harness import put_directory
from tests.integration.streams.worker_process import committed_and_end
from tests.support.kafka import reading_from_start, wait_group_stable
from tests.support.stages import BridgeProcess, GatewayProcess, StageProcess, stage_env
from vmpulse.demo import demo_vm_ids

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1200)]

VMS = int(os.environ.get("VMPULSE_FAILOVER_VMS", "200"))
INTERVAL_S = float(os.environ.get("VMPULSE_FAILOVER_INTERVAL_S", "1.0"))
PARTITIONS = 6
WATCHED = 8  # VMs each watcher subscribes to
STEADY_S = 12.0  # load before, between and after the kills
DOWN_S = 10.0  # how long a killed broker stays down
DEADLINE_S = 120.0


def _sample_ms(live: dict[str, Any]) -> int:
    """The sample time of a live update's payload (``metricsUpdate``), in epoch ms."""
    return int(dt.datetime.fromisoformat(live["timestamp"]).timestamp() * 1000)


class Watcher:
    """A Socket.IO client on one gateway: every metricsUpdate with its receipt time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sio = socketio.AsyncClient(reconnection=True)
        self.updates: list[tuple[float, str, int]] = []  # (received, vm, sample ts in ms)
        self.sio.on("metricsUpdate", self._update)

    async def _update(self, payload: dict[str, Any]) -> None:
        self.updates.append((time.time(), payload["vmId"], _sample_ms(payload)))

    async def watch(self, url: str, token: str, vms: list[str]) -> None:
        await self.sio.connect(url, auth={"token": token}, transports=["websocket"])
        for vm in vms:
            answer = await self.sio.call("subscribe", {"vmId": vm}, timeout=10)
            assert answer["ok"], (vm, answer)

    def pause_around(self, at: float, within_s: float = 40.0) -> tuple[float, float]:
        """(longest silence between updates received near ``at``, worst delay from the
        agent to this watcher of the samples written in the 10 s after ``at``)."""
        got = sorted(u for u in self.updates if at - 1.0 <= u[0] <= at + within_s)
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(got)]
        written = [r - ts / 1000 for r, _, ts in self.updates if at <= ts / 1000 <= at + 10.0]
        return (max(gaps, default=float("inf")), max(written, default=float("inf")))


async def _until(what: str, check: Callable[[], Awaitable[bool]], within_s: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await check():
        assert loop.time() - start < within_s, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)
    return loop.time() - start


async def _raw_partitions(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        [described] = await admin.describe_topics([topic])
        return list(described["partitions"])
    finally:
        await admin.close()


async def _described(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The topic's partitions; a client may first ask a broker that is down."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            return await _raw_partitions(bootstrap, topic)
        except (NodeNotReadyError, KafkaConnectionError, ValueError, KeyError):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)


def _active_controller(cluster: LocalCluster) -> int:
    """The KRaft quorum's leader, from the quorum state each running node keeps on disk."""
    best: tuple[int, int] = (-1, -1)
    for _node_id, broker in cluster.brokers.items():
        if broker.pid is None:
            continue
        state = broker.work_dir / "logs" / "__cluster_metadata-0" / "quorum-state"
        found = json.loads(state.read_text())
        if found.get("leaderId", -1) >= 0:
            best = max(best, (int(found["leaderEpoch"]), int(found["leaderId"])))
    assert best[1] > 0, "no node knows a quorum leader"
    return best[1]


async def _live_sent(s: Settings, topic: str, vms: set[str], since: float) -> set[tuple[str, int]]:
    """(VM, sample ms) of every live update on events.outbound for ``vms`` sampled since
    ``since`` (epoch s): what the workers sent the gateways, read to the topic's end."""
    sent: set[tuple[str, int]] = set()
    async with reading_from_start(s, [topic]) as consumer:
        while batches := await consumer.getmany(timeout_ms=2000):
            for records in batches.values():
                for r in records:
                    event = decode_outbound(r.value)
                    if event.resource == "metrics" and event.data["vmId"] in vms:
                        ms = _sample_ms(event.data)
                        if ms / 1000 >= since:
                            sent.add((event.data["vmId"], ms))
    return sent


def _scrape(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


STORE_QUERY = """
import asyncio, json, sys
from store.clickhouse import ClickHouseStore

async def main():
    store = ClickHouseStore(sys.argv[1])
    await store.start()
    q = lambda sql, params=None: store.query(sql, params, max_rows=10_000_000)
    out = {
        "positions": (await q("SELECT kafka_partition, kafka_offset FROM system_metrics"))["rows"],
        "rollup": (await q("SELECT sum(samples) FROM system_metrics_1m"))["rows"][0][0],
        "mismatched_minutes": (await q(
            "SELECT count() FROM (SELECT vm_id, toStartOfMinute(ts) AS b, count() AS n "
            "FROM system_metrics GROUP BY vm_id, b) r FULL OUTER JOIN "
            "(SELECT vm_id, bucket AS b, sum(samples) AS n FROM system_metrics_1m "
            "GROUP BY vm_id, b) m USING (vm_id, b) WHERE r.n != m.n"))["rows"][0][0],
        "samples": (await q(
            "SELECT vm_id, toUnixTimestamp64Milli(ts) FROM system_metrics "
            "WHERE vm_id IN {vms:Array(String)}", {"vms": json.loads(sys.argv[2])}))["rows"],
    }
    store.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def _read_store(data_dir: Path, watched: list[str]) -> dict[str, Any]:
    """One worker's chDB store, read by a separate process once the worker stopped."""
    done = subprocess.run(
        [sys.executable, "-c", STORE_QUERY, f"chdb://{data_dir / 'clickhouse'}",
         json.dumps(watched)],
        capture_output=True, text=True, timeout=120, check=False,
        cwd=str(Path(__file__).resolve().parents[3]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def test_kill_9_of_the_busiest_broker_then_the_controller_loses_and_doubles_nothing(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    prefix = f"f{os.getpid()}."
    s = Settings(data_dir=tmp_path).replace(
        kafka={"bootstrap": cluster.bootstrap, "topic_prefix": prefix, "partitions": PARTITIONS},
        bridge={"socket_dir": Path(tempfile.mkdtemp(prefix="vp-fo-", dir="/tmp"))},
    )
    topics = Topics(prefix)
    await ensure_settings_topics(s)
    vms = demo_vm_ids(VMS)
    watched = vms[:WATCHED]
    await put_directory(
        s, User(id="root", role="admin"), *(Vm(id=v, owner="root") for v in watched)
    )
    bridge_port = free_port()
    quick = {"VMPULSE_KAFKA_SESSION_TIMEOUT_S": "6", "VMPULSE_LIVE_INTERVAL_MS": "0"}
    workers = [
        StageProcess(
            "worker",
            f"worker-{i}",
            stage_env(s, tmp_path / f"worker-{i}", VMPULSE_WORKER_ID=f"w{i}", **quick),
            tmp_path,
        )
        for i in (1, 2)
    ]
    gateways = [GatewayProcess(s, f"gateway-{i}", tmp_path) for i in (1, 2)]
    bridge = BridgeProcess(s, "bridge", tmp_path, VMPULSE_BRIDGE_METRICS_PORT=str(bridge_port))
    fleet = StageProcess(
        "simulate",
        "fleet",
        stage_env(s, tmp_path / "fleet"),
        tmp_path,
        args=["--vms", str(VMS), "--interval", str(INTERVAL_S), "--progress", "5"],
    )
    stages = [*workers, *gateways, bridge, fleet]
    for stage in stages:
        os.makedirs(stage.env["VMPULSE_DATA_DIR"], exist_ok=True)
    watchers = [Watcher(f"watcher on gateway {i}") for i in (1, 2)]
    group = ingest_group_id(prefix)
    token = issue_token(s.tokens.secret, "root")
    pauses: list[str] = []
    try:
        for stage in stages:
            stage.start()
        await asyncio.gather(*(g.ready(DEADLINE_S) for g in gateways))
        for watcher, gateway in zip(watchers, gateways, strict=True):
            await watcher.watch(gateway.url, token, watched)

        async def flowing() -> bool:
            return all(len(w.updates) > WATCHED * 3 for w in watchers)

        await _until("live updates at both watchers", flowing, DEADLINE_S)
        began = time.time()
        await asyncio.sleep(STEADY_S)

        async def all_in_sync() -> bool:
            parts = await _described(cluster.bootstrap, topics.agent_raw)
            return all(len(p["isr"]) == 3 for p in parts)

        first_kill = 0.0
        for what in ("the broker leading most agent.raw partitions", "the active controller"):
            await _until("every replica in sync", all_in_sync, DEADLINE_S)
            # each kill starts from a settled group: both workers hold their partitions
            await wait_group_stable(cluster.bootstrap, group, DEADLINE_S, members=2)
            if what.startswith("the broker"):
                parts = await _described(cluster.bootstrap, topics.agent_raw)
                leaders = collections.Counter(int(p["leader"]) for p in parts)
                victim = leaders.most_common(1)[0][0]
                note = f"leads {leaders[victim]} of {PARTITIONS} partitions"
            else:
                victim = _active_controller(cluster)
                note = "quorum leader"
            killed_at = time.time()
            first_kill = first_kill or killed_at
            cluster.kill(victim)
            await asyncio.sleep(DOWN_S)
            for stage in stages:
                assert stage.alive(), f"{stage.name} exited:\n{stage.output()}"
            await asyncio.to_thread(cluster.restart, victim)
            await asyncio.sleep(STEADY_S)
            for watcher in watchers:
                gap, delay = watcher.pause_around(killed_at)
                pauses.append(
                    f"kill -9 of node {victim} ({what}, {note}): {watcher.name}: "
                    f"longest silence {gap:.2f} s, worst sample delay {delay:.2f} s"
                )
                print(pauses[-1])

        fleet.stop()
        lines = -1.0

        async def bridge_settled() -> bool:
            nonlocal lines
            now = await asyncio.to_thread(_scrape, bridge_port, "vmpulse_bridge_lines_total")
            settled, lines = now == lines, now
            return settled

        await _until("the bridge's acknowledgements to settle", bridge_settled, DEADLINE_S)
        send_errors = await asyncio.to_thread(
            _scrape, bridge_port, "vmpulse_bridge_send_errors_total"
        )

        async def drained() -> bool:
            done, end = await committed_and_end(s, topics, group)
            return done >= end

        drain_s = await _until("the workers to store everything", drained, DEADLINE_S * 3)
        print(f"workers drained agent.raw {drain_s:.1f} s after the bridge settled")
        # the workers sent every live update of the tail: it reaches the watchers
        sent = await _live_sent(s, topics.events_outbound, set(watched), first_kill)

        async def delivered() -> bool:
            return all(sent <= {(vm, ts) for _, vm, ts in w.updates} for w in watchers)

        await _until("the live updates sent to reach both watchers", delivered, DEADLINE_S)
        for stage in stages:
            if stage is not fleet:
                assert stage.alive(), f"{stage.name} exited:\n{stage.output()}"
    finally:
        for watcher in watchers:
            if watcher.sio.connected:
                await watcher.sio.disconnect()
        for stage in stages:
            stage.stop()

    async with reading_from_start(s, [topics.agent_raw]) as consumer:
        on_topic = 0
        while batches := await consumer.getmany(timeout_ms=2000):
            on_topic += sum(
                1
                for rs in batches.values()
                for r in rs
                if not any(k == "control" for k, _ in r.headers)
            )
    stores = [
        await asyncio.to_thread(_read_store, tmp_path / f"worker-{i}", watched) for i in (1, 2)
    ]
    rows = sum(len(st["positions"]) for st in stores)
    per_store = [{tuple(p) for p in st["positions"]} for st in stores]
    positions = set().union(*per_store)
    in_both = len(per_store[0] & per_store[1])
    took = time.time() - began
    print(
        f"{VMS} VMs at {VMS / INTERVAL_S:.0f} lines/s for {took:.0f} s: bridge acknowledged "
        f"{lines:.0f} (send errors {send_errors:.0f}), agent.raw holds {on_topic}, "
        f"{len(positions)} distinct positions stored; rows per worker store "
        f"{[len(st['positions']) for st in stores]}, {in_both} positions in both stores"
    )
    assert lines > VMS * 10
    assert send_errors == 0
    assert on_topic == lines, "agent.raw holds exactly the acknowledged lines"
    assert len(positions) == lines, "every acknowledged line stored"
    for st, distinct in zip(stores, per_store, strict=True):
        assert len(st["positions"]) == len(distinct), "a store holds a line twice"
    # A block stored but not committed when its partitions moved to the other worker is
    # stored again there: on one ClickHouse server its dedup tokens drop the repeat (the
    # one-store test, tests/integration/streams/test_two_workers.py); two chDB stores
    # cannot see each other, so here a repeat can only be such a block, in the other store.
    assert rows == len(positions) + in_both
    assert [st["rollup"] for st in stores] == [len(p) for p in per_store]
    assert [st["mismatched_minutes"] for st in stores] == [0, 0]

    # every sample of a watched VM written after the first kill went live to both gateways
    stored_after = {
        (vm, ts) for st in stores for vm, ts in st["samples"] if ts / 1000 >= first_kill
    }
    assert stored_after
    for watcher in watchers:
        seen = {(vm, ts) for _, vm, ts in watcher.updates}
        missing = stored_after - seen
        assert not missing, f"{watcher.name} missed {len(missing)} of {len(stored_after)}"

    # Faust's own topics are as durable as vmpulse's on a cluster (one rule: kafka_io)
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        faust_topics = [t for t in await admin.list_topics() if t.startswith(prefix + "vmpulse")]
        assert faust_topics, "the workers' Faust app made its topics"
        for name in faust_topics:
            [described] = await admin.describe_topics([name])
            assert all(len(p["replicas"]) == 3 for p in described["partitions"]), name
    finally:
        await admin.close()
    shutil.rmtree(s.bridge.socket_dir, ignore_errors=True)
