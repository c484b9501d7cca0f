"""`vmpulse emit` and `vmpulse directory` as a shell user runs them, against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

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
        "VMPULSE_PARTITIONS": str(settings.kafka.partitions),
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


async def test_the_platform_may_publish_before_any_stage_created_the_topics(
    settings: Settings,
) -> None:
    # A fresh prefix on the real broker: no stage ran, no topic exists yet. The
    # first command creates them all as a stage would (infra/kafka_io.py).
    topics = Topics(settings.kafka.topic_prefix)
    done = vmpulse(settings, "directory", "put", "user", "admin", "--role", "admin")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "put user:admin"
    assert "ERROR" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    ((key, value),) = await read_all(settings, topics.directory, 1)
    assert key == b"user:admin" and json.loads(value or b"")["role"] == "admin"

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(list(topics.all()))}
        assert all(t["error_code"] == 0 for t in described.values()), described
        assert {len(t["partitions"]) for t in described.values()} == {settings.kafka.partitions}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics.all()]
        configs = {
            name: {c[0]: c[1] for c in entries}
            for response in await admin.describe_configs(resources)
            for name, entries in ((r[3], r[4]) for r in response.resources)
        }
    finally:
        await admin.close()
    # the durability rule on one broker: 1 replica, 1 in sync; the directory compacted
    assert {c["min.insync.replicas"] for c in configs.values()} == {"1"}
    assert configs[topics.directory]["cleanup.policy"] == "compact"
    assert configs[topics.worker_state]["cleanup.policy"] == "compact"
    assert configs[topics.agent_raw]["cleanup.policy"] == "delete"

    # an event too, and the DLQ tool on a prefix where nothing ever ran
    done = vmpulse(settings, "emit", "vms", "power_on", "--data", '{"id": "vm-1"}')
    assert done.returncode == 0, done.stderr
    fresh = settings.replace(kafka={"topic_prefix": settings.kafka.topic_prefix + "none."})
    done = vmpulse(fresh, "dlq")
    assert done.returncode == 0, done.stderr
    assert "0 records scanned" in done.stdout
    assert "ERROR" not in done.stderr and "Traceback" not in done.stderr, done.stderr
