"""Real-shaped agent messages of both dialects, from Linux and Windows guests.

Shapes follow what the agents write (PROTOCOL.md; the InfiniService agent's
serde structs for dialect 2): Windows agents send ``null`` for the CPU
temperature and the load average, ``C:\\`` mount points, ``svchost.exe``
processes and a ``windows_services`` list; Linux agents send load averages and
an empty ``windows_services``. Used by the tests, the end-to-end run and the
decode benchmark; pure, returns plain dicts (``line()`` makes the wire bytes).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "all_examples",
    "d1_application_usage",
    "d1_port_usage",
    "d1_process_snapshot",
    "d1_system_metrics",
    "d1_vm_identification",
    "d2_agent_event",
    "d2_circuit_breaker_state",
    "d2_connection_status",
    "d2_error",
    "d2_error_report",
    "d2_handshake",
    "d2_keep_alive",
    "d2_metrics",
    "d2_ping",
    "d2_request_pending_scripts",
    "d2_response",
    "d2_script_completion",
    "iso",
    "line",
    "rfc3339",
]

Msg = dict[str, Any]


def iso(epoch_s: float) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``, as dialect 1 agents write it."""
    import datetime as dt

    return (
        dt.datetime.fromtimestamp(epoch_s, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def rfc3339(epoch_s: float) -> str:
    """RFC 3339 as the InfiniService agent writes it: chrono's ``Utc::now().to_rfc3339()``,
    nanoseconds and ``+00:00`` (the system clock has nanoseconds, so all nine digits show)."""
    import datetime as dt

    whole = int(epoch_s)
    nanos = round((epoch_s - whole) * 1e9) or 123_456_789
    base = dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}+00:00"


def line(msg: Msg) -> bytes:
    """The message as the agent writes it, without the newline."""
    return json.dumps(msg, separators=(",", ":")).encode()


def _processes(n: int, windows: bool, start: float) -> list[Msg]:
    names = (
        ("System", "svchost.exe", "explorer.exe", "MsMpEng.exe", "chrome.exe")
        if windows
        else ("systemd", "sshd", "postgres", "nginx", "python3")
    )
    out = []
    for i in range(n):
        name = names[i % len(names)]
        path = f"C:\\Windows\\System32\\{name}" if windows else f"/usr/bin/{name}"
        out.append(
            {
                "id": 4 + i * 4 if windows else 1 + i,
                "parent_id": None if i == 0 else (4 if windows else 1),
                "name": name,
                "executable_path": None if windows and i == 0 else path,
                "command_line": None if windows and i == 0 else f"{path} --worker {i}",
                "cpu_usage_percent": round((i * 7.3) % 100, 2),
                "memory_usage_kb": 1024 * (i % 300 + 1),
                "status": "Run" if i % 3 else "Sleep",
                "start_time": int(start) - 60 * i,
            }
        )
    return out


def _ports(n: int, windows: bool) -> list[Msg]:
    out = []
    for i in range(n):
        port = (135, 445, 3389, 5985)[i % 4] if windows else (22, 80, 443, 5432)[i % 4]
        out.append(
            {
                "port": port if i < 4 else 1024 + (i * 61) % 64000,
                "protocol": "tcp" if i % 5 else "udp",
                "state": "LISTEN" if i % 2 == 0 else "ESTABLISHED",
                "process_id": None if i % 7 == 6 else 100 + i,
                "process_name": None if i % 7 == 6 else ("svchost.exe" if windows else "sshd"),
                "is_listening": i % 2 == 0,
            }
        )
    return out


def d1_vm_identification(vm: str, *, windows: bool = False) -> Msg:
    return {
        "type": "vm_identification",
        "vmId": vm,
        "hostname": "WIN-DESKTOP-07" if windows else "ubuntu-web-01",
        "os": "Windows 11 Pro" if windows else "Ubuntu 24.04 LTS",
        "version": "10.0.22631" if windows else "6.8.0-45-generic",
        "agent_version": "1.4.2",
    }


def d1_system_metrics(vm: str, ts: float, *, windows: bool = False, cpu: float = 37.5) -> Msg:
    return {
        "type": "system_metrics",
        "vmId": vm,
        "timestamp": iso(ts),
        "metrics": {
            "cpu": {
                "usage_percent": cpu,
                "cores_usage": [cpu, 12.0, 99.5, 0.0],
                "temperature": None if windows else 48.5,
            },
            "memory": {
                "total_kb": 8_388_608,
                "used_kb": 4_194_304,
                "available_kb": 4_194_304,
                "swap_total_kb": 2_097_152,
                "swap_used_kb": 1024 if not windows else None,
            },
            "disk": {
                "usage_stats": [
                    {
                        "mount_point": "C:\\" if windows else "/",
                        "total_gb": 127.0,
                        "used_gb": 64.25,
                        "available_gb": 62.75,
                    }
                ],
                "io_stats": {"read_bytes_per_sec": 409_600, "write_bytes_per_sec": 204_800},
            },
            "network": {
                "stats": [
                    {
                        "interface": "Ethernet" if windows else "eth0",
                        "bytes_received": 123_456_789,
                        "bytes_sent": 98_765_432,
                        "packets_received": 123_456,
                        "packets_sent": 98_765,
                    }
                ]
            },
            "system": {
                "uptime": 86_400,
                "load_average": None
                if windows
                else {"load1min": 0.52, "load5min": 0.61, "load15min": 0.7},
            },
        },
    }


def d1_process_snapshot(vm: str, ts: float, *, windows: bool = False, n: int = 5) -> Msg:
    procs = []
    for p in _processes(n, windows, ts):
        procs.append(
            {
                "pid": p["id"],
                "parent_pid": p["parent_id"],
                "name": p["name"],
                "executable_path": p["executable_path"],
                "command_line": p["command_line"],
                "cpu_usage_percent": p["cpu_usage_percent"],
                "memory_usage_kb": p["memory_usage_kb"],
                "status": p["status"],
                "user": "SYSTEM" if windows else "root",
                "start_time": iso(p["start_time"]),
            }
        )
    return {"type": "process_snapshot", "vmId": vm, "timestamp": iso(ts), "processes": procs}


def d1_application_usage(vm: str, ts: float, *, windows: bool = False) -> Msg:
    apps = (
        [("Microsoft Edge", "C:\\Program Files (x86)\\Microsoft\\Edge\\msedge.exe", "Microsoft")]
        if windows
        else [("Firefox", "/usr/bin/firefox", "Mozilla")]
    )
    return {
        "type": "application_usage",
        "vmId": vm,
        "timestamp": iso(ts),
        "applications": [
            {
                "name": name,
                "executable_path": path,
                "version": "131.0",
                "publisher": publisher,
                "is_running": True,
                "usage_count": 12,
                "usage_minutes": 95.5,
                "last_used": iso(ts - 60),
            }
            for name, path, publisher in apps
        ]
        + [{"name": "Notepad" if windows else "vim", "version": None, "last_used": None}],
    }


def d1_port_usage(vm: str, ts: float, *, windows: bool = False, n: int = 4) -> Msg:
    return {"type": "port_usage", "vmId": vm, "timestamp": iso(ts), "ports": _ports(n, windows)}


def d2_handshake(vm: str, ts: float, *, windows: bool = False) -> Msg:
    return {
        "type": "handshake",
        "timestamp": int(ts),
        "vm_id": vm,
        "version": "0.9.3",
        "platform": "windows" if windows else "linux",
        "capabilities": ["metrics", "commands", "scripts", "keep_alive"],
    }


def d2_metrics(
    vm: str,
    ts: float,
    *,
    windows: bool = False,
    processes: int = 5,
    ports: int = 4,
    cpu: float = 23.25,
) -> Msg:
    return {
        "type": "metrics",
        "timestamp": int(ts),
        "data": {
            "system": {
                "cpu": {
                    "usage_percent": cpu,
                    "cores_usage": [cpu, 5.5],
                    "temperature": None if windows else 51.0,
                },
                "memory": {
                    "total_kb": 16_777_216,
                    "used_kb": 6_291_456,
                    "available_kb": 10_485_760,
                    "swap_total_kb": None if windows else 4_194_304,
                    "swap_used_kb": None if windows else 0,
                },
                "disk": {
                    "usage_stats": [
                        {
                            "mount_point": "C:\\" if windows else "/",
                            "total_gb": 256.0,
                            "used_gb": 100.5,
                            "available_gb": 155.5,
                            "filesystem": "NTFS" if windows else "ext4",
                        }
                    ],
                    "io_stats": {
                        "read_bytes_per_sec": 1_048_576,
                        "write_bytes_per_sec": 524_288,
                        "read_ops_per_sec": 120,
                        "write_ops_per_sec": 80,
                    },
                },
                "network": {
                    "interfaces": [
                        {
                            "name": "Ethernet 2" if windows else "ens3",
                            "bytes_received": 9_876_543_210,
                            "bytes_sent": 1_234_567_890,
                            "packets_received": 7_654_321,
                            "packets_sent": 1_234_567,
                            "errors_in": 0,
                            "errors_out": 0,
                            "ip_addresses": ["192.168.122.45", "fe80::5054:ff:fe12:3456"],
                            "is_up": True,
                        }
                    ]
                },
                "system": {
                    "uptime_seconds": 123_456,
                    "name": "Windows" if windows else "Ubuntu",
                    "os_version": "11 (22631)" if windows else "24.04",
                    "kernel_version": "22631" if windows else "6.8.0-45-generic",
                    "hostname": "WIN-DESKTOP-07" if windows else "ubuntu-web-01",
                    "load_average": None
                    if windows
                    else {"load_1min": 1.25, "load_5min": 0.75, "load_15min": 0.5},
                },
                "processes": _processes(processes, windows, ts),
                "ports": _ports(ports, windows),
                "windows_services": [
                    {"name": "wuauserv", "display_name": "Windows Update", "state": "Running"},
                    {"name": "Spooler", "display_name": "Print Spooler", "state": "Stopped"},
                ]
                if windows
                else [],
            }
        },
    }


def d2_keep_alive(seq: int, ts: float) -> Msg:
    return {"type": "keep_alive", "sequence_number": seq, "timestamp": int(ts)}


def d2_response(*, windows: bool = False, success: bool = True) -> Msg:
    return {
        "type": "response",
        "id": "cmd-7f3a",
        "success": success,
        "exit_code": 0 if success else 1,
        "stdout": "Windows IP Configuration\r\n" if windows else "eth0: UP\n",
        "stderr": "" if success else "access denied",
        "execution_time_ms": 42,
        "command_type": "SystemInfo" if windows else "Shell",
        "data": {"packages": [{"name": "curl", "version": "8.5.0"}]} if success else None,
    }


def d2_error(ts: float) -> Msg:
    return {
        "type": "error",
        "timestamp": int(ts),
        "error": "collector failed: permission denied",
        "details": {"component": "ports"},
    }


def d2_error_report(vm: str, ts: float, *, windows: bool = True) -> Msg:
    return {
        "type": "error_report",
        "timestamp": int(ts),
        "error_type": "VirtioConnection",
        "severity": "Recoverable",
        "windows_error_code": 5 if windows else None,
        "retry_attempt": 2,
        "max_retries": 5,
        "recovery_suggestion": "Run the service as Administrator",
        "vm_id": vm,
    }


def d2_agent_event(ts: float) -> Msg:
    return {
        "type": "agent_event",
        "timestamp": iso(ts),
        "severity": "warn",
        "source": "script_runner",
        "message": "script exceeded soft timeout",
        "executionId": "exec-42",
        "context": {"elapsed_ms": 31_000, "limit_ms": 30_000},
    }


def d2_script_completion(ts: float, *, windows: bool = False) -> Msg:
    return {
        "type": "script_completion",
        "timestamp": int(ts),
        "execution_id": "exec-42",
        "exit_code": 0,
        "stdout": "done\r\n" if windows else "done\n",
        "stderr": "",
        "log_file": "C:\\ProgramData\\infiniservice\\logs\\exec-42.log"
        if windows
        else "/var/log/infiniservice/exec-42.log",
    }


def d2_request_pending_scripts(vm: str, ts: float) -> Msg:
    return {
        "type": "request_pending_scripts",
        "timestamp": int(ts),
        "vm_id": vm,
        "request_timestamp": int(ts),
    }


# The next three are built with serde_json::json! in the agent (communication.rs), whose
# map is a BTreeMap without the preserve_order feature: keys come in alphabetical order.


def d2_connection_status(vm: str, ts: float, *, state: str = "connected") -> Msg:
    details = {
        "connected": "VirtIO connection established with IP data successfully",
        "connected_pending_ips": "VirtIO connection established but waiting for IP addresses",
        "disconnected": "VirtIO connection lost",
        "degraded": "Service operating with reduced functionality due to connection issues",
    }.get(state, "Retrying connection")
    return {
        "details": details,
        "state": state,
        "timestamp": rfc3339(ts),
        "type": "connection_status",
        "vm_id": vm,
    }


def d2_ping(ts: float) -> Msg:
    stamp = rfc3339(ts)  # the agent reads its clock twice: ms of the same instant here
    return {"sequence": int(ts) * 1000 + int(stamp[20:23]), "timestamp": stamp, "type": "ping"}


def d2_circuit_breaker_state(ts: float, *, state: str = "Open") -> Msg:
    is_open = state == "Open"
    return {
        "failure_count": 5 if is_open else 0,
        "last_failure_time": int(ts) - 2 if is_open else None,
        "recovery_eta_seconds": 30 if is_open else None,
        "state": state,
        "timestamp": int(ts),
        "type": "circuit_breaker_state",
    }


def all_examples(vm: str, ts: float) -> list[tuple[str, Msg]]:
    """Every message type of both dialects, from a Linux and from a Windows agent."""
    out: list[tuple[str, Msg]] = []
    for os_name, win in (("linux", False), ("windows", True)):
        out += [
            (f"d1-vm_identification-{os_name}", d1_vm_identification(vm, windows=win)),
            (f"d1-system_metrics-{os_name}", d1_system_metrics(vm, ts, windows=win)),
            (f"d1-process_snapshot-{os_name}", d1_process_snapshot(vm, ts, windows=win)),
            (f"d1-application_usage-{os_name}", d1_application_usage(vm, ts, windows=win)),
            (f"d1-port_usage-{os_name}", d1_port_usage(vm, ts, windows=win)),
            (f"d2-handshake-{os_name}", d2_handshake(vm, ts, windows=win)),
            (f"d2-metrics-{os_name}", d2_metrics(vm, ts, windows=win)),
            (f"d2-keep_alive-{os_name}", d2_keep_alive(7, ts)),
            (f"d2-response-{os_name}", d2_response(windows=win)),
            (f"d2-error-{os_name}", d2_error(ts)),
            (f"d2-error_report-{os_name}", d2_error_report(vm, ts, windows=win)),
            (f"d2-agent_event-{os_name}", d2_agent_event(ts)),
            (f"d2-script_completion-{os_name}", d2_script_completion(ts, windows=win)),
            (f"d2-request_pending_scripts-{os_name}", d2_request_pending_scripts(vm, ts)),
            (f"d2-connection_status-{os_name}", d2_connection_status(vm, ts)),
            (f"d2-ping-{os_name}", d2_ping(ts)),
            (f"d2-circuit_breaker_state-{os_name}", d2_circuit_breaker_state(ts)),
        ]
    return out
