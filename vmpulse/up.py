"""`vmpulse up`: broker (if needed), worker and gateway in one process, bridge and fleet beside.

The Faust worker hosts the gateway as a mode service beside the app, and the
bridge and the simulated fleet as child processes (vmpulse/child.py), so one
SIGINT stops them all in order; the broker, a child process too, is stopped
with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import faust
import mode
import prometheus_client

from gateway.auth import issue_token
from gateway.service import GatewayService
from infra.broker import LocalBroker
from infra.cluster import LocalCluster
from infra.config import Settings
from infra.kafka_io import (
    Durability,
    ensure_topics,
    make_producer,
    wait_for_broker,
    wait_for_group_coordinator,
    wait_for_leaders,
)
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore, redact_url
from store.reader import Reader, ReadLimits
from streams.app import create_app, ingest_group_id
from vmpulse.child import ChildProcess
from vmpulse.demo import demo_directory, demo_user_ids, demo_vm_ids, publish_records
from vmpulse.health import HealthServer
from vmpulse.tuning import tune_gc
from vmpulse.up_info import UpInfo, remove_up_info, write_up_info

__all__ = [
    "health_services",
    "run_up",
    "run_worker",
    "seed_demo_directory",
    "start_broker_if_needed",
]

log = logging.getLogger("vmpulse.up")


class Announcer(mode.Service):  # type: ignore[misc]
    """Prints where things are and writes ``up.json`` once the gateway listens; removes
    it on the way out."""

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
            kafka_bootstrap=self.settings.kafka.bootstrap,
            gateway_url=self.gateway.url,
            clickhouse_url=redact_url(self.settings.store.url),
            socket_dir=str(self.settings.bridge.socket_dir),
            topic_prefix=self.settings.kafka.topic_prefix,
            pid=os.getpid(),
        )
        path = write_up_info(self.settings.data_dir, info)
        log.info("vmpulse is up: gateway %s  (details in %s; Ctrl-C stops)", self.gateway.url, path)
        log.info("%s", self.sign_in_text())

    async def on_stop(self) -> None:
        remove_up_info(self.settings.data_dir, os.getpid())

    def sign_in_text(self) -> str:
        """The dashboard's URL and, with the development key only, a sign-in link per demo user.

        A link carries a token, a credential: with a real key none is printed
        (logs are kept), and tokens come from the platform or `vmpulse token`.
        """
        url = self.gateway.url
        lines = [f"dashboard: {url}/"]
        if not self.settings.tokens.secret_is_dev:
            lines.append("  sign in with a token from your platform (or `vmpulse token --user ID`)")
            return "\n".join(lines)
        for user in self.users:
            token = issue_token(self.settings.tokens.secret, user, admin=user == "admin")
            lines.append(f"  sign in as {user:<6} {url}/#token={token}")
        return "\n".join(lines)


def start_broker_if_needed(
    settings: Settings,
) -> tuple[Settings, LocalBroker | LocalCluster | None]:
    """With no VMPULSE_KAFKA_BOOTSTRAP, start a local broker (or cluster) under the data dir."""
    if settings.kafka.bootstrap:
        return settings, None
    broker: LocalBroker | LocalCluster
    if settings.kafka.local_brokers > 1:
        broker = LocalCluster(settings.data_dir / "kafka-cluster", settings.kafka.local_brokers)
        log.info("starting a local Kafka cluster of %d ...", settings.kafka.local_brokers)
    else:
        broker = LocalBroker(
            settings.data_dir / "kafka", jars_dir=settings.kafka.jars_dir, long_running=True
        )
        log.info("starting a local Kafka broker ...")
    bootstrap = broker.start()
    log.info("Kafka broker on %s", bootstrap)
    return settings.replace(kafka={"bootstrap": bootstrap}), broker


def health_services(
    settings: Settings,
    ready: Callable[[], bool],
    registry: prometheus_client.CollectorRegistry | None = None,
) -> list[mode.Service]:
    """The health port (vmpulse/health.py) when VMPULSE_HEALTH_ADDR is set, else nothing.

    First among a worker's services, so it answers while the stage starts.
    """
    if settings.health_host is None:
        return []
    return [
        HealthServer(
            settings.health_host,
            settings.health_port,
            ready=ready,
            registry=registry if registry is not None else prometheus_client.REGISTRY,
        )
    ]


async def _prepare(settings: Settings, vm_ids: list[str]) -> Durability:
    """Topics, leaders, the group coordinator and the demo directory; returns the
    durability the topics got, which Faust's own topics get too (one rule)."""
    assert settings.kafka.bootstrap is not None
    # containers start in any order: the broker may not answer yet (VMPULSE_KAFKA_WAIT_S)
    auth = settings.kafka.auth
    await wait_for_broker(settings.kafka.bootstrap, settings.kafka.wait_s, auth=auth)
    topics = Topics(settings.kafka.topic_prefix)
    plan = await ensure_topics(
        settings.kafka.bootstrap,
        topics,
        partitions=settings.kafka.partitions,
        replication_factor=settings.kafka.replication_factor,
        auth=auth,
    )
    # a fresh broker: first sends and joins would be refused, with warnings, for a moment
    await wait_for_leaders(
        settings.kafka.bootstrap, topics.all(), settings.kafka.partitions, auth=auth
    )
    await wait_for_group_coordinator(
        settings.kafka.bootstrap, ingest_group_id(settings.kafka.topic_prefix), auth=auth
    )
    if vm_ids and settings.kafka.bootstrap:
        producer = make_producer(settings.kafka.bootstrap, auth=auth)
        await producer.start()
        try:
            await publish_records(producer, topics, demo_directory(vm_ids))
        finally:
            await producer.stop()
    return plan


async def seed_demo_directory(settings: Settings, vm_ids: list[str]) -> None:
    """Topics, then the demo users and VMs, as `vmpulse up` publishes them
    (`vmpulse simulate --seed-directory`: the compose stack's simulated fleet)."""
    await _prepare(settings, vm_ids)


def _run_worker(
    app: faust.App, services: list[mode.Service], loop: asyncio.AbstractEventLoop
) -> int:
    # logging stays as main() set it (vmpulse/logs.py): levels and VMPULSE_LOG_FORMAT
    worker = faust.Worker(app, *services, quiet=True, override_logging=False, loop=loop)
    worker.spinner = None  # its terminal escapes garble logs that are not a terminal
    tune_gc()
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:  # 1 when a service failed to start or crashed
        return exc.code if isinstance(exc.code, int) else 1
    return 0


@contextlib.contextmanager
def _runtime(
    settings: Settings, command: str
) -> Iterator[tuple[Settings, ClickHouseStore, asyncio.AbstractEventLoop]]:
    """The open store, the broker (if needed) and the loop of a worker process.

    The store first: an embedded one that another process has open stops the
    start at once, naming that process (store/owner.py; ``command`` names this
    one to others), before a local broker was started for nothing. On the way
    out the store closes before the broker stops, whatever happened.
    """
    store = ClickHouseStore(settings.store.url, cluster=settings.store.cluster, owner=command)
    broker: LocalBroker | LocalCluster | None = None
    try:
        store.open()
        settings, broker = start_broker_if_needed(settings)
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
    settings.bridge.socket_dir.mkdir(parents=True, exist_ok=True)
    code = 1  # unless the worker ran and stopped cleanly
    if settings.tokens.secret_is_dev:
        log.warning("using the DEVELOPMENT JWT key (set VMPULSE_JWT_SECRET for anything real)")
    try:
        with _runtime(settings, "vmpulse up") as (settings, store, loop):
            # Reads get connections of their own on the same engine: a history or
            # admin query never waits for, nor holds up, the worker's inserts.
            reader = Reader(settings.store.read_url, ReadLimits.from_settings(settings))
            reader.open()
            try:
                vm_ids = demo_vm_ids(vms)
                plan = loop.run_until_complete(_prepare(settings, vm_ids))
                app = create_app(settings, store, plan=plan)
                gateway = GatewayService(settings, reader=reader)
                fleet = ["--vms", str(len(vm_ids)), "--interval", str(interval_s)]

                def ready() -> bool:
                    return gateway.ready and app.vmpulse_ingest.joined and not app.should_stop

                services: list[mode.Service] = [
                    *health_services(settings, ready, app.vmpulse_metrics),
                    # the bridge and the fleet are processes of their own (vmpulse/child.py)
                    ChildProcess(settings, "bridge", ["bridge"]),
                    gateway,
                    ChildProcess(settings, "simulator", ["simulate", *fleet, "--progress", "10"]),
                    Announcer(settings, gateway, demo_user_ids() if vm_ids else []),
                ]
                if settings.libvirt_uri:
                    from agents.hypervisor import HypervisorWatcher

                    services.append(HypervisorWatcher(settings))
                code = _run_worker(app, services, loop)
            finally:
                reader.close()
    finally:
        log.info("vmpulse stopped")
    return code


def run_worker(settings: Settings) -> int:
    """Run only the stream worker (production: one per container, scaled by partitions)."""
    with _runtime(settings, "vmpulse worker") as (settings, store, loop):
        plan = loop.run_until_complete(_prepare(settings, []))
        app = create_app(settings, store, plan=plan)

        def ready() -> bool:
            return bool(app.vmpulse_ingest.joined) and not app.should_stop

        return _run_worker(app, health_services(settings, ready, app.vmpulse_metrics), loop)
