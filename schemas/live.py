"""The ``metricsUpdate`` payload as msgspec Structs: the same JSON, a third of the cost.

A wire contract (the Socket.IO event and the ``data`` of a ``metrics`` event on
``events.outbound``, schemas/asyncapi.json), so it lives with the schemas.

At 10,000 VMs that each report once a second every message becomes a live update,
and building the payload as nested dicts cost 12 us a sample, more than half of
decoding and validating the line (docs/BENCHMARKS.md). Structs with ``gc=False``
are built and encoded without per-key dict work; field names are the wire keys,
so the JSON is what the dicts gave (``tests/unit/streams/test_pipeline.py``).
"""

from __future__ import annotations

import datetime as dt

import msgspec

from schemas.facts import DiskFigure, InterfaceFigure, SystemSample

__all__ = ["LiveData", "live_data"]


class _Cpu(msgspec.Struct, gc=False):
    usage_percent: float | None
    cores_usage: tuple[float, ...]
    temperature: float | None


class _Memory(msgspec.Struct, gc=False):
    total_kb: int | None
    used_kb: int | None
    available_kb: int | None
    swap_total_kb: int | None
    swap_used_kb: int | None


class _DiskIo(msgspec.Struct, gc=False):
    read_bytes_per_sec: int | None
    write_bytes_per_sec: int | None
    read_ops_per_sec: int | None
    write_ops_per_sec: int | None


class _Disk(msgspec.Struct, gc=False):
    usage_stats: tuple[DiskFigure, ...]  # its fields are the payload's keys
    io_stats: _DiskIo


class _Interface(msgspec.Struct, gc=False):
    name: str
    bytes_received: int | None
    bytes_sent: int | None
    packets_received: int | None
    packets_sent: int | None


class _Network(msgspec.Struct, gc=False):
    interfaces: list[_Interface]


class _Load(msgspec.Struct, gc=False):
    load_1min: float | None
    load_5min: float | None
    load_15min: float | None


class _System(msgspec.Struct, gc=False):
    uptime_seconds: int | float | None
    load_average: _Load


class _Metrics(msgspec.Struct, gc=False):
    cpu: _Cpu
    memory: _Memory
    disk: _Disk
    network: _Network
    system: _System
    ts_source: str


class LiveData(msgspec.Struct, gc=False):
    """``data`` of a ``metricsUpdate``: the VM, everything its sample carries, its time."""

    vmId: str
    metrics: _Metrics
    timestamp: str


def _iso(ts: dt.datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _interface(n: InterfaceFigure) -> _Interface:
    return _Interface(n.name, n.bytes_received, n.bytes_sent, n.packets_received, n.packets_sent)


def live_data(s: SystemSample) -> LiveData:
    return LiveData(
        s.vm_id,
        _Metrics(
            _Cpu(s.cpu_usage_percent, s.cpu_cores_usage, s.cpu_temperature),
            _Memory(
                s.memory_total_kb,
                s.memory_used_kb,
                s.memory_available_kb,
                s.swap_total_kb,
                s.swap_used_kb,
            ),
            _Disk(
                s.disks,
                _DiskIo(
                    s.disk_read_bytes_per_sec,
                    s.disk_write_bytes_per_sec,
                    s.disk_read_ops_per_sec,
                    s.disk_write_ops_per_sec,
                ),
            ),
            _Network([_interface(n) for n in s.interfaces]),
            _System(s.uptime_seconds, _Load(s.load_1min, s.load_5min, s.load_15min)),
            s.ts_source,
        ),
        _iso(s.ts),
    )
