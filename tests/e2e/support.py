"""Shared by the end-to-end modules: run `vmpulse up` as a subprocess, as a user would.

Each module starts its own `vmpulse up` (a module-scoped fixture calling
:func:`start_up`), so a module that stops it with SIGINT leaves the others alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from infra.broker import free_port
from infra.config import Settings

__all__ = ["VMPULSE", "Up", "run_up", "until"]

VMPULSE = str(Path(sys.executable).parent / "vmpulse")


async def until(cond: Callable[[], object], within: float, what: str) -> None:
    """Poll ``cond`` until it is truthy; fail with ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


class Up:
    def __init__(
        self, proc: subprocess.Popen[bytes], data_dir: Path, env: dict[str, str], port: int
    ):
        self.proc = proc
        self.data_dir = data_dir
        self.env = env
        self.port = port

    @property
    def info(self) -> dict[str, str]:
        return dict(json.loads((self.data_dir / "up.json").read_text()))

    @property
    def settings(self) -> Settings:
        """The settings this `vmpulse up` runs with, its own broker and topic prefix included."""
        info = self.info
        return Settings.from_env(self.env).replace(
            kafka={"bootstrap": info["kafka_bootstrap"], "topic_prefix": info["topic_prefix"]}
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [VMPULSE, *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def query(self, sql: str) -> list[list[Any]]:
        out = self.run("query", "--json", sql)
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout)["rows"])

    def output(self) -> str:
        return (self.data_dir / "up.log").read_text(errors="replace")


def run_up(args: Sequence[str]) -> Iterator[Up]:
    """Start `vmpulse up <args>` on fresh embedded defaults; yield once up.json exists."""
    data_dir = Path(os.path.realpath(tempfile.mkdtemp(prefix="vp-up-", dir="/tmp")))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
    env.update({"VMPULSE_DATA_DIR": str(data_dir), "VMPULSE_GATEWAY_ADDR": f"127.0.0.1:{port}"})
    log = (data_dir / "up.log").open("wb")
    proc = subprocess.Popen([VMPULSE, "up", *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    up = Up(proc, data_dir, env, port)
    deadline = time.monotonic() + 90
    while not (data_dir / "up.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"vmpulse up did not come up:\n{up.output()[-5000:]}")
        time.sleep(0.2)
    try:
        yield up
    finally:
        if proc.poll() is None:
            # as a user stops it; kill only if it does not stop in time
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
