"""The 3-broker cluster the cluster tests run on (``make cluster``), one per test."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from infra.cluster import LocalCluster


@pytest.fixture
async def cluster() -> AsyncIterator[LocalCluster]:
    """Three broker+controller processes on loopback, stopped (and their data removed) after."""
    work = Path(tempfile.mkdtemp(prefix="vmpulse-test-cluster-"))
    made = LocalCluster(work, 3)
    began = time.monotonic()
    made.start()  # from this thread: the brokers die with the thread that started them
    print(f"\ncluster of 3 on {made.bootstrap} started in {time.monotonic() - began:.1f} s")
    try:
        yield made
    finally:
        made.kill_all()  # its data is removed next: no controlled shutdown to wait for
        shutil.rmtree(work, ignore_errors=True)
