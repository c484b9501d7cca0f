"""The images, built once per session by infra/podman/image.sh (cached by content)."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.image.runner import ROOT


@pytest.fixture(scope="session")
def images() -> None:
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(ROOT / "infra/podman/image.sh")],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    print(f"\n{done.stdout}images ready in {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, done.stdout + done.stderr
