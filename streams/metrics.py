"""Prometheus series of the worker, read when scraped from the counts it keeps anyway.

The worker's health port served only the process's own series (memory, CPU, GC): an
operator could not see whether it stores, how much it rejects, or that its store has
been refusing inserts for ten minutes. The counts exist as plain integers (the
conductor's ``stats``, the ingest's batches and failures), updated per batch and per
record on the hot path; a prometheus ``Counter`` per record would add a lock to each
(the bridge's totals, agents/metrics.py, session 15). So a collector reads them when
``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from infra.process_metrics import stage_registry

__all__ = ["STAT_SERIES", "IngestCounts", "WorkerCollector", "worker_registry"]

STAT_SERIES: dict[str, tuple[str, str]] = {
    "stored": ("vmpulse_worker_records_stored", "agent.raw records stored (each once)"),
    "rejected": ("vmpulse_worker_records_rejected", "agent.raw records sent to agent.dlq"),
    "rows": ("vmpulse_worker_rows", "Rows inserted into the store, all tables"),
    "live_sent": ("vmpulse_worker_live_updates", "Live metric updates sent to events.outbound"),
    "unrecognized": (
        "vmpulse_worker_records_unrecognized",
        "Agent messages of a type this version does not know (stored as agent events)",
    ),
    "skipped_replay": (
        "vmpulse_worker_records_replayed",
        "Records read again after a restart or rebalance that were stored before",
    ),
    "repaired": (
        "vmpulse_worker_records_repaired",
        "Records of a block cut off by a crash, inserted again (the store kept each once)",
    ),
}
"""The conductor's ``stats`` keys, as Prometheus counters: (name, help)."""


class IngestCounts(Protocol):
    """What :class:`WorkerCollector` reads of the ingest (streams/ingest.py ``RawIngest``)."""

    @property
    def batches(self) -> int: ...

    @property
    def failures(self) -> int: ...

    @property
    def failing(self) -> int: ...

    @property
    def lag(self) -> int | None: ...


class WorkerCollector(Collector):
    """The worker's counts as Prometheus series, read at scrape time (module docstring)."""

    def __init__(self, stats: Callable[[], Mapping[str, int]], ingest: IngestCounts) -> None:
        self._stats = stats
        self._ingest = ingest

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for key, (name, doc) in STAT_SERIES.items():
            yield CounterMetricFamily(name, doc, value=stats.get(key, 0))
        ingest = self._ingest
        yield CounterMetricFamily(
            "vmpulse_worker_batches_stored", "Batches stored and committed", value=ingest.batches
        )
        yield CounterMetricFamily(
            "vmpulse_worker_store_failures",
            "Attempts at storing a batch that failed (each is retried)",
            value=ingest.failures,
        )
        lag = ingest.lag
        if lag is not None:
            yield GaugeMetricFamily(
                "vmpulse_worker_consumer_lag",
                "Records of agent.raw on this worker's partitions not stored yet "
                "(librdkafka's statistics, every 5 s)",
                value=lag,
            )
        yield GaugeMetricFamily(
            "vmpulse_worker_store_failing",
            "Failed attempts in a row at storing the current batch; 0 while storing works",
            value=ingest.failing,
        )


def worker_registry(
    stats: Callable[[], Mapping[str, int]], ingest: IngestCounts
) -> CollectorRegistry:
    """The worker's series and the process's own (memory, CPU, GC), for its health port."""
    return stage_registry(WorkerCollector(stats, ingest))
