"""`vmpulse query` on the embedded store of a standalone `vmpulse worker`, as a user runs it.

chDB lets one process open a directory. While the worker runs, the command names it
(command and pid) instead of chDB's "Error initializing EmbeddedServer"; a second
worker on the same directory is refused the same way; once the worker stopped, the
command reads the store itself, with the admin SQL policy, and finds the rows the
worker stored. Real parts: the session's broker, the worker and the commands as
processes, chDB.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from infra.config import Settings
from schemas.topics import Topics
from store.owner import OWNER_FILE
from streams.app import ingest_group_id
from tests.integration.streams.worker_process import WorkerProcess, drained, metrics_line
from tests.support.kafka import produce

VMPULSE = str(Path(sys.executable).with_name("vmpulse"))
LINES = 12


def query(settings: Settings, sql: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
    env["VMPULSE_DATA_DIR"] = str(settings.data_dir)  # the worker's: its store, no broker
    return subprocess.run(
        [VMPULSE, "query", "--json", sql],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_query_names_a_running_worker_and_reads_its_store_once_it_stopped(
    settings: Settings, topics_ready: Topics, short_tmp: Path
) -> None:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    lines = [
        (b"vm-q", metrics_line("vm-q", i, start + dt.timedelta(seconds=i))) for i in range(LINES)
    ]
    await produce(settings, topics_ready.agent_raw, lines)
    worker = WorkerProcess(settings, short_tmp / "worker.log", VMPULSE_WORKER_ID="query-test")
    worker.start()
    try:
        deadline = time.monotonic() + 120
        group = ingest_group_id(settings.kafka.topic_prefix)
        while not await drained(settings, topics_ready, group):  # committed = stored
            assert worker.proc is not None and worker.proc.poll() is None, "worker exited"
            assert time.monotonic() < deadline, "the worker did not store the lines in time"
            await asyncio.sleep(0.5)

        running = await asyncio.to_thread(query, settings, "SELECT count() FROM system_metrics")
        assert running.returncode == 1, running.stdout
        assert f"`vmpulse worker` (pid {worker.pid}," in running.stderr, running.stderr
        assert "stop that process" in running.stderr
        assert "Traceback" not in running.stderr and "EmbeddedServer" not in running.stderr

        second = await asyncio.to_thread(
            subprocess.run,
            [VMPULSE, "worker"],
            env={**worker.env, "VMPULSE_WORKER_ID": "query-test-2"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert second.returncode == 1, second.stderr[-2000:]
        assert f"`vmpulse worker` (pid {worker.pid}," in second.stderr, second.stderr[-2000:]
        assert "Traceback" not in second.stderr
    finally:
        worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0

    # the worker's record stays behind, naming a process that no longer holds the lock
    record = json.loads((settings.data_dir / "clickhouse" / OWNER_FILE).read_text())
    assert record["pid"] == worker.pid
    stopped = await asyncio.to_thread(
        query, settings, "SELECT count(), uniqExact(ts) FROM system_metrics WHERE vm_id = 'vm-q'"
    )
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["rows"] == [[LINES, LINES]]
    # the same policy as the gateway's admin SQL: nothing but reads
    refused = await asyncio.to_thread(query, settings, "DROP TABLE system_metrics")
    assert refused.returncode == 1 and "query failed" in refused.stderr


def test_query_says_where_no_store_is(settings: Settings) -> None:
    missing = settings.replace(data_dir=settings.data_dir / "nothing-here")
    done = query(missing, "SELECT 1")
    assert done.returncode == 1
    assert f"no store at {missing.data_dir / 'clickhouse'}" in done.stderr
    assert not (missing.data_dir / "clickhouse").exists()
