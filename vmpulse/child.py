"""A stage of `vmpulse up` run as a child process: `python -m vmpulse.cli <command>`.

`vmpulse up` keeps the worker and the gateway in its own process (the gateway
reads the embedded store, which belongs to one process) and runs the rest as
children, the way an operator runs the stages: the simulated fleet (real guests
are processes of their own) and the bridge. In one process, at 2,000 VMs a
second, the bridge's socket reads were a quarter of the one event loop's time
and that loop was 90 % busy; as a child the bridge has a core of its own and
the worker's live updates no longer queue behind 2,000 socket reads a second.

A child gets the parent's environment with the settings `up` decided (the
broker it started, its partitions, the data and socket directories), writes its
output to ``<data dir>/<name>.log``, dies with the parent (``PR_SET_PDEATHSIG``) and is
stopped with SIGTERM, then SIGKILL after ``stop_timeout_s``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import mode

from infra.broker import die_with_parent
from infra.config import Settings

__all__ = ["ChildProcess", "child_env"]

# Settings a child must not take over from the parent: each names a port the
# parent itself listens on.
_PARENTS_OWN = ("VMPULSE_GATEWAY_ADDR", "VMPULSE_HEALTH_ADDR")


def child_env(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child stage: ``base`` with the settings `up` resolved."""
    env = {k: v for k, v in base.items() if k not in _PARENTS_OWN}
    env["VMPULSE_DATA_DIR"] = str(settings.data_dir)
    env["VMPULSE_SOCKET_DIR"] = str(settings.bridge.socket_dir)
    env["VMPULSE_TOPIC_PREFIX"] = settings.kafka.topic_prefix
    # the child is told the broker, so it would take a cluster's default partitions
    env["VMPULSE_PARTITIONS"] = str(settings.kafka.partitions)
    if settings.kafka.bootstrap:
        env["VMPULSE_KAFKA_BOOTSTRAP"] = settings.kafka.bootstrap
    return env


class ChildProcess(mode.Service):  # type: ignore[misc]
    """Runs ``vmpulse <args>`` while the service runs (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        args: list[str],
        *,
        stop_timeout_s: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self.name = name
        self._args = args
        self._stop_timeout_s = stop_timeout_s
        self.proc: asyncio.subprocess.Process | None = None

    async def on_start(self) -> None:
        env = child_env(self._settings, os.environ)
        with (self._settings.data_dir / f"{self.name}.log").open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "vmpulse.cli", *self._args,
                env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            )  # fmt: skip

    async def on_stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), self._stop_timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
