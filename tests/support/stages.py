"""Stages as child processes (`vmpulse gateway`, `vmpulse bridge`), as production runs them.

For the tests of several instances of a stage and of failover (issue 14): each
process gets the test's broker, topic prefix and a data directory of its own,
writes its output to a log file, and can be stopped gracefully or killed with
SIGKILL. The worker's counterpart is tests/integration/streams/worker_process.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from infra.broker import free_port
from infra.config import Settings
from tests.support.cpu import process_cpu_seconds

__all__ = ["BridgeProcess", "GatewayProcess", "StageProcess", "stage_env"]

VMPULSE = str(Path(sys.executable).with_name("vmpulse"))


def stage_env(settings: Settings, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a stage process on the test's broker and topics."""
    return {
        **os.environ,
        "VMPULSE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap or "",
        "VMPULSE_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "VMPULSE_DATA_DIR": str(data_dir),
        "VMPULSE_SOCKET_DIR": str(settings.bridge.socket_dir),
        "VMPULSE_PARTITIONS": str(settings.kafka.partitions),
        "VMPULSE_JWT_SECRET": settings.tokens.secret.reveal(),
        **extra,
    }


class StageProcess:
    """One `vmpulse <stage>` child process; restartable, its output in ``<dir>/<name>.log``."""

    def __init__(
        self,
        stage: str,
        name: str,
        env: dict[str, str],
        log_dir: Path,
        args: Sequence[str] = (),
    ) -> None:
        self.stage = stage
        self.args = list(args)
        self.name = name
        self.env = env
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n--- start {self.starts} ---\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [VMPULSE, self.stage, *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU time the process used so far (Linux /proc)."""
        return process_cpu_seconds(self.pid)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()  # SIGKILL always ends it; a loaded machine may take a while

    def output(self, tail: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""


class GatewayProcess(StageProcess):
    """`vmpulse gateway` on a port of its own; ``ready()`` waits for its /readyz."""

    def __init__(self, settings: Settings, name: str, work: Path, **extra: str) -> None:
        self.port = free_port()
        data = work / name
        data.mkdir(parents=True, exist_ok=True)
        env = stage_env(settings, data, VMPULSE_GATEWAY_ADDR=f"127.0.0.1:{self.port}", **extra)
        super().__init__("gateway", name, env, work)
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self, within_s: float = 60.0) -> None:
        deadline = time.monotonic() + within_s
        while not await asyncio.to_thread(self._ready):
            assert self.alive(), self.output()
            assert time.monotonic() < deadline, f"{self.name} not ready:\n{self.output()}"
            await asyncio.sleep(0.2)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def counter(self, name: str) -> float:
        """A counter of this gateway's /metrics (Prometheus text), summed over its labels."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", re.MULTILINE)
        return sum(float(v) for v in pattern.findall(text))


class BridgeProcess(StageProcess):
    """`vmpulse bridge` over the test's socket directory."""

    def __init__(self, settings: Settings, name: str, work: Path, **extra: str) -> None:
        data = work / name
        data.mkdir(parents=True, exist_ok=True)
        super().__init__("bridge", name, stage_env(settings, data, **extra), work)
