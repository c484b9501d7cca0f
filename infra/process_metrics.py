"""A stage's Prometheus registry: its own series beside the process's (memory, CPU, GC).

A registry per stage object, not the process-global default, so that tests can run many
in one process; the process's collectors are added to each, so a health port's
``/metrics`` still shows what the default registry showed.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.registry import Collector

__all__ = ["stage_registry"]


def stage_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry with ``collectors`` and the process's own series."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry
