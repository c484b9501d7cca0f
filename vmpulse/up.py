"""`vmpulse up`: broker (if needed), bridge, worker and gateway in one process, and a fleet.

The Faust worker hosts the other stages as mode services beside the app
(``faust.Worker(app, bridge, gateway, fleet, ...)``), so one SIGINT stops them
all in order; the broker and the simulated fleet, which are child processes, are
stopped with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import faust
import mode
import prometheus_client

from agents.bridge import Bridge
from agents.metrics import BridgeMetrics
from gateway.auth import issue_token
from gateway.service import GatewayService
from infra.broker import LocalBroker, die_with_parent
from infra.cluster import LocalCluster
from infra.config import Settings
from infra.kafka_io import (
    Durability,
    ensure_topics,
    make_producer,
    wait_for_group_coordinator,
    wait_for_leaders,
)
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore, redact_url
from store.reader import Reader, ReadLimits
from streams.app import create_app, ingest_group_id
from vmpulse.demo import demo_directory, demo_user_ids, demo_vm_ids, publish_records
from vmpulse.up_info import UpInfo, write_up_info

__all__ = ["FleetService", "run_up", "run_worker", "start_broker_if_needed", "tune_gc"]

log = logging.getLogger("vmpulse.up")

SIMULATOR_STOP_S = 10.0


class FleetService(mode.Service):  # type: ignore[misc]
    """The simulated guests, as a child process (`vmpulse simulate`): one unix socket per
    VM, as QEMU serves a virtio-serial port.

    A process of their own, as real guests are: at a few thousand VMs, writing
    their lines cost the pipeline's one event loop a sixth of its time (issue 11).
    Its output goes to ``<data dir>/simulator.log``; it dies with this process.
    """

    def __init__(self, settings: Settings, vm_count: int, interval_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._args = ["--vms", str(vm_count), "--interval", str(interval_s), "--progress", "10"]
        self._proc: asyncio.subprocess.Process | None = None

    async def on_start(self) -> None:
        s = self._settings
        env = {
            **os.environ,
            "VMPULSE_DATA_DIR": str(s.data_dir),
            "VMPULSE_SOCKET_DIR": str(s.socket_dir),
        }
        with (s.data_dir / "simulator.log").open("ab") as out:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "vmpulse.cli", "simulate", *self._args,
                env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            )  # fmt: skip

    async def on_stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), SIMULATOR_STOP_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class Announcer(mode.Service):  # type: ignore[misc]
    """Prints where things are and writes ``up.json`` once the gateway listens."""

    def __init__(
        self,
        settings: Settings,
        gateway: GatewayService,
        users: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.gateway = gateway
        self.users = users or []

    async def on_started(self) -> None:
        info = UpInfo(
            kafka_bootstrap=self.settings.kafka_bootstrap,
            gateway_url=self.gateway.url,
            clickhouse_url=redact_url(self.settings.clickhouse_url),
            socket_dir=str(self.settings.socket_dir),
            topic_prefix=self.settings.topic_prefix,
        )
        path = write_up_info(self.settings.data_dir, info)
        print(
            f"vmpulse is up: gateway {self.gateway.url}  (details in {path}; Ctrl-C stops)",
            flush=True,
        )
        print(self.sign_in_text(), flush=True)

    def sign_in_text(self) -> str:
        """The dashboard's URL and, with the development key only, a sign-in link per demo user.

        A link carries a token, a credential: with a real key none is printed
        (logs are kept), and tokens come from the platform or `vmpulse token`.
        """
        url = self.gateway.url
        lines = [f"dashboard: {url}/"]
        if not self.settings.jwt_secret_is_dev:
            lines.append("  sign in with a token from your platform (or `vmpulse token --user ID`)")
            return "\n".join(lines)
        for user in self.users:
            token = issue_token(self.settings.jwt_secret, user, admin=user == "admin")
            lines.append(f"  sign in as {user:<6} {url}/#token={token}")
        return "\n".join(lines)


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot path of a streaming process.

    A batch of 20,000 agent lines allocates hundreds of thousands of short-lived
    containers; with CPython's default threshold (700) the collector ran so often
    that it took about 40 % of validating a batch (docs/BENCHMARKS.md, worker).
    Everything built during start-up is frozen out of the collections, and young
    collections run every 50,000 allocations instead of 700.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def start_broker_if_needed(
    settings: Settings,
) -> tuple[Settings, LocalBroker | LocalCluster | None]:
    """With no VMPULSE_KAFKA_BOOTSTRAP, start a local broker (or cluster) under the data dir."""
    if settings.kafka_bootstrap:
        return settings, None
    broker: LocalBroker | LocalCluster
    if settings.local_brokers > 1:
        broker = LocalCluster(settings.data_dir / "kafka-cluster", settings.local_brokers)
        print(f"starting a local Kafka cluster of {settings.local_brokers} ...", flush=True)
    else:
        broker = LocalBroker(settings.data_dir / "kafka")
        print("starting a local Kafka broker ...", flush=True)
    bootstrap = broker.start()
    print(f"Kafka broker on {bootstrap}", flush=True)
    return settings.replace(kafka_bootstrap=bootstrap), broker


async def _prepare(settings: Settings, vm_ids: list[str]) -> Durability:
    """Topics, leaders, the group coordinator and the demo directory; returns the
    durability the topics got, which Faust's own topics get too (one rule)."""
    assert settings.kafka_bootstrap is not None
    topics = Topics(settings.topic_prefix)
    plan = await ensure_topics(
        settings.kafka_bootstrap,
        topics,
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
    )
    # a fresh broker: first sends and joins would be refused, with warnings, for a moment
    await wait_for_leaders(settings.kafka_bootstrap, topics.all(), settings.partitions)
    await wait_for_group_coordinator(
        settings.kafka_bootstrap, ingest_group_id(settings.topic_prefix)
    )
    if vm_ids and settings.kafka_bootstrap:
        producer = make_producer(settings.kafka_bootstrap)
        await producer.start()
        try:
            await publish_records(producer, topics, demo_directory(vm_ids))
        finally:
            await producer.stop()
    return plan


def _run_worker(
    app: faust.App, services: list[mode.Service], loop: asyncio.AbstractEventLoop
) -> None:
    worker = faust.Worker(app, *services, loglevel="WARN", quiet=True, loop=loop)
    worker.spinner = None  # its terminal escapes garble logs that are not a terminal
    tune_gc()
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass


@contextlib.contextmanager
def _runtime(
    settings: Settings,
) -> Iterator[tuple[Settings, ClickHouseStore, asyncio.AbstractEventLoop]]:
    """The broker (if needed), the open store and the loop of a worker process.

    On the way out the store closes before the broker stops, whatever happened.
    """
    settings, broker = start_broker_if_needed(settings)
    store = ClickHouseStore(settings.clickhouse_url, cluster=settings.clickhouse_cluster)
    try:
        store.open()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        yield settings, store, loop
    finally:
        store.close()
        if broker is not None:
            broker.stop()


def run_up(settings: Settings, *, vms: int = 5, interval_s: float = 1.0) -> int:
    """Run the whole pipeline in this process until SIGINT."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.socket_dir.mkdir(parents=True, exist_ok=True)
    if settings.jwt_secret_is_dev:
        print(
            "using the DEVELOPMENT JWT key (set VMPULSE_JWT_SECRET for anything real)", flush=True
        )
    try:
        with _runtime(settings) as (settings, store, loop):
            # Reads get connections of their own on the same engine: a history or
            # admin query never waits for, nor holds up, the worker's inserts.
            reader = Reader(settings.read_url, ReadLimits.from_settings(settings))
            reader.open()
            try:
                vm_ids = demo_vm_ids(vms)
                plan = loop.run_until_complete(_prepare(settings, vm_ids))
                app = create_app(settings, store, plan=plan)
                gateway = GatewayService(settings, reader=reader)
                services: list[mode.Service] = [
                    # The bridge's series go to the process-wide registry, which the
                    # gateway's /metrics (one per process) can expose.
                    Bridge(settings, metrics=BridgeMetrics(prometheus_client.REGISTRY)),
                    gateway,
                    FleetService(settings, len(vm_ids), interval_s),
                    Announcer(settings, gateway, demo_user_ids() if vm_ids else []),
                ]
                if settings.libvirt_uri:
                    from agents.hypervisor import HypervisorWatcher

                    services.append(HypervisorWatcher(settings))
                _run_worker(app, services, loop)
            finally:
                reader.close()
    finally:
        print("vmpulse stopped", flush=True)
    return 0


def run_worker(settings: Settings) -> int:
    """Run only the stream worker (production: one per container, scaled by partitions)."""
    with _runtime(settings) as (settings, store, loop):
        plan = loop.run_until_complete(_prepare(settings, []))
        _run_worker(create_app(settings, store, plan=plan), [], loop)
    return 0
