"""Dialect 2 lines (the InfiniService agent as it ships) that the simulated agents write: pure.

The numbers come from the dialect 1 generator (:func:`agents.simulator.fleet.system_metrics_line`),
re-shaped into dialect 2's nesting (PROTOCOL.md): machine facts under
``data.system.system``, processes and ports under ``data.system``. Processes
churn: a few long-lived services plus short-lived jobs whose pids depend on
the time window, so snapshots gain and lose processes like a real guest.

Messages are the schemas' own Structs (:mod:`schemas.dialect2`): the dialect 1
line is decoded with the pipeline's decoder (so the generator is checked too)
and what the simulator writes is what the pipeline decodes.
"""

from __future__ import annotations

import random
import zlib
from typing import Final

import msgspec

from schemas.dialect1 import D1SystemMetrics
from schemas.dialect2 import (
    D2Handshake,
    D2Interface,
    D2KeepAlive,
    D2LoadAverage,
    D2Metrics,
    D2MetricsData,
    D2Network,
    D2Process,
    D2System,
    D2SystemInfo,
)
from schemas.machine import Disk, DiskIo, OpenPort

__all__ = ["handshake_line", "keep_alive_line", "metrics_line"]

_SERVICES: Final = (
    ("systemd", "/usr/lib/systemd/systemd", 1),
    ("sshd", "/usr/sbin/sshd", 612),
    ("infiniservice", "/opt/infiniservice/infiniservice", 733),
    ("postgres", "/usr/lib/postgresql/15/bin/postgres", 901),
)
_JOBS: Final = ("python3", "gcc", "rsync", "tar", "cc1", "node", "java")


_encode = msgspec.json.Encoder().encode
_decode_d1 = msgspec.json.Decoder(D1SystemMetrics).decode
_NO_SERVICES: Final = msgspec.Raw(b"[]")
_SSH: Final = OpenPort(
    port=22, protocol="tcp", state="LISTEN", process_id=612, process_name="sshd", is_listening=True
)


def handshake_line(vm_id: str, t: float) -> bytes:
    """The ``handshake`` an agent sends when it connects."""
    return _encode(
        D2Handshake(
            timestamp=int(t),
            vm_id=vm_id,
            version="1.4.2",
            platform="linux",
            capabilities=("metrics", "commands", "scripts", "keep_alive"),
        )
    )


def keep_alive_line(sequence: int, t: float) -> bytes:
    """A ``keep_alive``: ``sequence_number`` wraps as a u32."""
    return _encode(D2KeepAlive(sequence_number=sequence & 0xFFFFFFFF, timestamp=int(t)))


def _processes(vm_id: str, t: float, rng: random.Random, boot: float) -> list[D2Process]:
    procs = [
        D2Process(
            id=pid,
            parent_id=0 if pid == 1 else 1,
            name=name,
            executable_path=path,
            command_line=path,
            cpu_usage_percent=round(abs(rng.gauss(0.5, 0.5)), 2),
            memory_usage_kb=4_000 + zlib.crc32(name.encode()) % 200_000,
            status="running",
            start_time=int(boot),
        )
        for name, path, pid in _SERVICES
    ]
    window = int(t // 60)  # a job lives for about a minute
    for k in range(zlib.crc32(f"{vm_id}:{window}".encode()) % 4):
        h = zlib.crc32(f"{vm_id}:{window}:{k}".encode())
        name = _JOBS[h % len(_JOBS)]
        procs.append(
            D2Process(
                id=10_000 + h % 50_000,
                parent_id=612,
                name=name,
                executable_path=f"/usr/bin/{name}",
                command_line=f"/usr/bin/{name} --job {h % 997}",
                cpu_usage_percent=round(rng.uniform(5, 95), 2),
                memory_usage_kb=10_000 + h % 900_000,
                status="running",
                start_time=window * 60,
            )
        )
    return procs


def metrics_line(d1_line: bytes, t: float, rng: random.Random) -> bytes:
    """A dialect 2 ``metrics`` message carrying the same sample as dialect 1 ``d1_line``."""
    d1 = _decode_d1(d1_line)
    vm_id = d1.vmId
    m = d1.metrics
    assert m.disk is not None and m.disk.io_stats is not None and m.network is not None
    assert m.system is not None and m.system.load_average is not None
    io = m.disk.io_stats
    load = m.system.load_average
    uptime = m.system.uptime or 0
    system = D2System(
        cpu=m.cpu,
        memory=m.memory,
        disk=Disk(
            usage_stats=[
                msgspec.structs.replace(u, filesystem="ext4") for u in m.disk.usage_stats or []
            ],
            io_stats=DiskIo(
                read_bytes_per_sec=io.read_bytes_per_sec,
                write_bytes_per_sec=io.write_bytes_per_sec,
                read_ops_per_sec=(io.read_bytes_per_sec or 0) // 4096,
                write_ops_per_sec=(io.write_bytes_per_sec or 0) // 4096,
            ),
        ),
        network=D2Network(
            interfaces=[
                D2Interface(
                    name=s.interface,
                    bytes_received=s.bytes_received,
                    bytes_sent=s.bytes_sent,
                    packets_received=s.packets_received,
                    packets_sent=s.packets_sent,
                    errors_in=0,
                    errors_out=0,
                    ip_addresses=("127.0.0.1",) if s.interface == "lo" else ("10.0.0.12",),
                    is_up=True,
                )
                for s in m.network.stats or []
            ]
        ),
        system=D2SystemInfo(
            uptime_seconds=m.system.uptime,
            name="Linux",
            os_version="Debian 12",
            kernel_version="6.1.0-18-amd64",
            hostname=f"vm-{vm_id[:8]}",
            load_average=D2LoadAverage(
                load_1min=load.load1min, load_5min=load.load5min, load_15min=load.load15min
            ),
        ),
        processes=_processes(vm_id, t, rng, t - uptime),
        ports=[_SSH],
        windows_services=_NO_SERVICES,
    )
    return _encode(D2Metrics(timestamp=int(t), data=D2MetricsData(system=system)))
