"""`vmpulse emit` and `vmpulse directory` as a shell user runs them, against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import Settings
from schemas.topics import Topics
from tests.support.kafka import collect, reading_from_start

pytestmark = pytest.mark.integration


def vmpulse(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "VMPULSE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap or "",
        "VMPULSE_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "VMPULSE_DATA_DIR": str(settings.data_dir),
    }
    exe = Path(sys.executable).with_name("vmpulse")
    return subprocess.run(
        [str(exe), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def read_all(settings: Settings, topic: str, count: int) -> list[tuple[bytes, bytes | None]]:
    async with reading_from_start(settings, (topic,)) as consumer:
        return [(r.key, r.value) for r in await collect(consumer, count, 10)]


async def test_emit_and_directory_commands_publish(
    settings: Settings, topics_ready: Topics
) -> None:
    done = vmpulse(settings, "emit", "vms", "power_on", "--data", '{"id": "vm-9"}', "--by", "ann")
    assert done.returncode == 0, done.stderr
    assert "published vms:power_on" in done.stdout
    ((key, value),) = await read_all(settings, topics_ready.control_events, 1)
    event = json.loads(value or b"")
    assert key == b"vm-9"
    assert (event["resource"], event["action"], event["triggered_by"]) == ("vms", "power_on", "ann")
    assert event["data"] == {"id": "vm-9"}

    for args in (
        ("put", "user", "ann", "--role", "admin", "--name", "Ann"),
        ("put", "vm", "vm-9", "--owner", "ann", "--department", "eng"),
        ("put", "department", "eng"),
        ("delete", "vm", "vm-9"),
    ):
        done = vmpulse(settings, "directory", *args)
        assert done.returncode == 0, done.stderr
    records = await read_all(settings, topics_ready.directory, 4)
    assert [k for k, _ in records if k.startswith(b"vm:")] == [b"vm:vm-9", b"vm:vm-9"]
    values = dict(records)
    assert json.loads(values[b"user:ann"] or b"")["role"] == "admin"
    assert [v for k, v in records if k == b"vm:vm-9"][-1] is None  # the tombstone


@pytest.mark.parametrize(
    "args",
    [
        ("emit", "vms", "update", "--data", "{bad json"),
        ("emit", "Vms", "update"),
        ("directory", "put", "user", "x", "--role", "root"),
        ("directory", "delete", "printer", "p1"),
        ("directory", "put", "vm", " padded"),
    ],
)
def test_bad_input_exits_2_with_a_reason(settings: Settings, args: tuple[str, ...]) -> None:
    done = vmpulse(settings, *args)
    assert done.returncode == 2
    assert done.stderr.strip()
    assert "Traceback" not in done.stderr
