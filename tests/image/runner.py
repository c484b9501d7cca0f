"""podman for the container tests: this repository's containers.conf, errors with output."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["IMAGE", "KAFKA_IMAGE", "ROOT", "podman", "podman_env"]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/vmpulse:dev"
KAFKA_IMAGE = "localhost/vmpulse-kafka:dev"


def podman_env() -> dict[str, str]:
    """The environment podman needs here (infra/podman/env.sh does the same for shells)."""
    return {**os.environ, "CONTAINERS_CONF": str(ROOT / "infra/podman/containers.conf")}


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.returncode}\n{done.stderr}")
    return done
