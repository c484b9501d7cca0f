"""Prometheus metrics of the bridge (and of the hypervisor watcher), in registries of their own.

A registry per bridge (not the process-global default) lets tests run many
bridges in one process; it carries the process's series too, and the bridge's
health port serves it (vmpulse/cli.py). :func:`serve_metrics` is the bridge's own
small endpoint (``VMPULSE_BRIDGE_METRICS_PORT``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from infra.process_metrics import stage_registry
from infra.startup import listening

__all__ = ["BridgeMetrics", "HypervisorMetrics", "serve_metrics"]


Totals = Callable[[], tuple[int, int]]
"""(lines acknowledged on agent.raw, bytes read from agents), as the bridge counts them."""


class _Totals(Collector):
    """The bridge's line and byte totals, read when scraped.

    They change on every read and every acknowledgement: a prometheus ``Counter``
    takes a lock per ``inc`` (0.43 us here), and at fleet rates (one line a read, one
    acknowledgement a line) the two of them were ~2 % of the bridge's CPU for numbers
    it keeps as plain integers anyway (docs/BENCHMARKS.md, session 15).
    """

    def __init__(self, totals: Totals) -> None:
        self._totals = totals

    def collect(self) -> Iterator[Metric]:
        lines, size = self._totals()
        yield CounterMetricFamily(
            "vmpulse_bridge_lines", "Lines acknowledged by Kafka on agent.raw", value=lines
        )
        yield CounterMetricFamily("vmpulse_bridge_bytes", "Bytes read from agents", value=size)


class BridgeMetrics:
    """Connections, lines, bytes, rejects by reason and produce latency.

    ``totals`` gives the line and byte counts (see :class:`_Totals`).
    """

    def __init__(self, totals: Totals) -> None:
        self.registry = stage_registry()
        r = self.registry
        self.connections = Counter(
            "vmpulse_bridge_connections", "Agent connections opened", ["transport"], registry=r
        )
        self.active = Gauge(
            "vmpulse_bridge_active_connections", "Agent connections open now", registry=r
        )
        self.refused = Counter(
            "vmpulse_bridge_refused_connections",
            "Connections refused before serving (caps, handshake, unknown CID, socket checks)",
            ["transport", "reason"],
            registry=r,
        )
        r.register(_Totals(totals))
        self.rejects = Counter(
            "vmpulse_bridge_rejects", "Lines sent to the DLQ by the bridge", ["reason"], registry=r
        )
        self.send_errors = Counter(
            "vmpulse_bridge_send_errors", "Records Kafka did not acknowledge", registry=r
        )
        self.read_holds = Counter(
            "vmpulse_bridge_read_holds",
            "Times every connection stopped reading because Kafka's budget was full",
            registry=r,
        )
        self.produce_latency = Histogram(
            "vmpulse_bridge_produce_latency_seconds",
            "From a line's read to the acknowledgement of its batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def serve_metrics(metrics: BridgeMetrics, host: str, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` on host:port; stop it with ``await runner.cleanup()``."""

    async def handle(_: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    with listening("the bridge's metrics", host, port, "VMPULSE_BRIDGE_METRICS_PORT"):
        await site.start()
    return runner


class HypervisorCounts(Protocol):
    """What :class:`HypervisorMetrics` reads of the watcher (agents/hypervisor.py)."""

    events: int
    reconciled: int
    connects: int

    @property
    def connected(self) -> bool: ...

    @property
    def waiting(self) -> int: ...


class _HypervisorSeries(Collector):
    def __init__(self, watcher: HypervisorCounts) -> None:
        self._watcher = watcher

    def collect(self) -> Iterator[Metric]:
        w = self._watcher
        yield GaugeMetricFamily(
            "vmpulse_hypervisor_connected", "1 while connected to libvirt", value=w.connected
        )
        yield CounterMetricFamily(
            "vmpulse_hypervisor_connects", "Connections made to libvirt", value=w.connects
        )
        yield CounterMetricFamily(
            "vmpulse_hypervisor_events", "Lifecycle events from libvirt", value=w.events
        )
        yield CounterMetricFamily(
            "vmpulse_hypervisor_reconciled",
            "Domain states sent after a (re)connect",
            value=w.reconciled,
        )
        yield GaugeMetricFamily(
            "vmpulse_hypervisor_waiting", "Events waiting to be sent to Kafka", value=w.waiting
        )


class HypervisorMetrics:
    """The hypervisor watcher's series (read when scraped) and the process's own, for its
    health port: whether it is connected to libvirt is what an operator alerts on."""

    def __init__(self, watcher: HypervisorCounts) -> None:
        self.registry = stage_registry(_HypervisorSeries(watcher))
