"""`vmpulse dlq` against the real broker: latest rejects and counts by reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.broker import free_port
from infra.config import Settings
from infra.dlq_reader import read_dlq
from infra.kafka_io import make_producer
from schemas.topics import Topics
from vmpulse.dlq_tool import render

pytestmark = pytest.mark.integration


async def test_latest_rejects_and_counts_by_reason(
    settings: Settings, topics_ready: Topics
) -> None:
    assert settings.kafka.bootstrap is not None
    producer = make_producer(settings.kafka.bootstrap)
    await producer.start()
    try:
        for i, reason in enumerate(["invalid_json"] * 3 + ["vm_mismatch"] * 2 + ["too_deep"]):
            record = {"reason": reason, "detail": f"d{i}", "raw": f"line {i}", "origin": {}}
            await producer.send_and_wait(
                topics_ready.agent_dlq, json.dumps(record).encode(), key=f"vm-{i % 2}".encode()
            )
        await producer.send_and_wait(topics_ready.agent_dlq, b"not json", key=b"vm-x")
    finally:
        await producer.stop()
    summary = await read_dlq(
        settings.kafka.bootstrap, settings.kafka.topic_prefix, max_per_partition=100, latest=2
    )
    assert summary.scanned == 7
    assert summary.counts == {
        "invalid_json": 3,
        "vm_mismatch": 2,
        "too_deep": 1,
        "unreadable_dlq_record": 1,
    }
    assert len(summary.latest) == 2
    text = render(summary)
    assert "counts by reason (7 records scanned)" in text
    assert ["invalid_json", "3"] in [line.split() for line in text.splitlines()]


def test_no_broker_at_the_address_is_one_line_and_exit_1(tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
    env.update({"VMPULSE_KAFKA_BOOTSTRAP": closed, "VMPULSE_DATA_DIR": str(tmp_path)})
    done = subprocess.run(
        [sys.executable, "-m", "vmpulse.cli", "dlq"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"cannot read the DLQ from Kafka at {closed}: " in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
