"""The image, built and run as containers with podman (issue 13).

``infra/podman/image.sh`` builds the images (cached by content), then the pipeline runs
as production runs it, one container per stage from the one image, on host networking:

- a Kafka broker: STAND-IN for apache/kafka, which cannot be pulled here (no container
  registry reachable): infra/kafka/Dockerfile, the same Apache Kafka jars from Maven
  Central, configured through apache/kafka's KAFKA_* variables;
- `vmpulse bridge`, `vmpulse worker`, `vmpulse gateway`: the real image;
- `vmpulse simulate`: the guests. STAND-IN for QEMU and real agents: it serves one unix
  socket per VM in a directory shared with the bridge, as QEMU serves virtio-serial ports;
- the store: chDB inside the worker container. STAND-IN for a clickhouse/clickhouse-server
  container, which cannot be pulled either; the same DDL and SQL run on both (the server
  path is covered by the schema, migration and read-policy tests on chDB).

Checked as a user would: every container becomes healthy through the image's own
HEALTHCHECK, a Socket.IO client with a token for the VM's owner receives live metrics of
that VM and is refused another's, rows reach the store (read after the worker stopped,
with the image's own Python), every stage stops on SIGTERM with exit code 0 within
podman's 10 s grace period, and no log shows a secret (they come from mounted files).
The base image is a STAND-IN for python:3.11-slim-bookworm (infra/podman/base.sh:
Debian's own python3 3.11, built with mmdebstrap from this machine's apt sources).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from gateway.auth import issue_token
from infra.broker import free_port
from infra.config import Secret
from tests.image.runner import IMAGE, KAFKA_IMAGE, podman
from tests.integration.streams.worker_process import QUERY
from vmpulse.demo import demo_vm_ids

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

GRACE_S = 10
UID = 10001  # the image's user (infra/Dockerfile)
JWT = "container-test-jwt-" + uuid.uuid4().hex + uuid.uuid4().hex
AGENT = "container-test-agent-" + uuid.uuid4().hex
VMS = demo_vm_ids(3)


class Containers:
    """The containers of one test run, named and labelled by it; all removed at the end."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.names: list[str] = []

    def start(
        self,
        role: str,
        image: str,
        *command: str,
        env: dict[str, str],
        options: tuple[str, ...] = (),
    ) -> str:
        name = f"vmpulse-test-{self.run_id}-{role}"
        flags = [f"--env={k}={v}" for k, v in env.items()]
        podman(
            "run", "--detach", "--name", name, "--label", f"vmpulse.test={self.run_id}",
            "--network", "host", *flags, *options, image, *command,
        )  # fmt: skip
        self.names.append(name)
        return name

    def wait_healthy(self, name: str, within_s: float) -> None:
        """Until the image's HEALTHCHECK passes (podman runs it on request: no systemd)."""
        deadline = time.monotonic() + within_s
        said = ""
        while time.monotonic() < deadline:
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            if state != "running":
                raise AssertionError(f"{name} is {state}:\n{self.logs(name)}")
            try:
                done = podman("healthcheck", "run", name, check=False, timeout=30)
            except subprocess.TimeoutExpired:
                # podman itself, not the probe (HEALTHCHECK --timeout=5s), can take this long
                # on a loaded machine: not healthy yet, asked again until the deadline
                said = "podman healthcheck run took over 30 s"
                continue
            if done.returncode == 0:
                return
            said = done.stdout + done.stderr
            time.sleep(1)
        raise AssertionError(f"{name} not healthy in {within_s} s ({said}):\n{self.logs(name)}")

    def logs(self, name: str) -> str:
        done = podman("logs", name, check=False)
        return done.stdout + done.stderr

    def stop(self, name: str) -> tuple[int, float]:
        """`podman stop`: SIGTERM, then SIGKILL after the grace period; (exit code, seconds)."""
        started = time.monotonic()
        podman("stop", "--time", str(GRACE_S), name, timeout=GRACE_S + 30)
        took = time.monotonic() - started
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        return int(code), took

    def remove_all(self) -> None:
        for name in reversed(self.names):
            podman("rm", "--force", "--volumes", "--time", "0", name, check=False)


@pytest.fixture
def containers() -> Iterator[Containers]:
    made = Containers()
    try:
        yield made
    finally:
        made.remove_all()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """Host directories mounted into the containers (secrets, sockets, the worker's data),
    owned by the image's user as a volume would be."""
    path = Path(tempfile.mkdtemp(prefix="vp-img-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def live_metrics(
    url: str, token: str, vm: str, other: str, within_s: float
) -> dict[str, Any]:
    """Connect as the VM's owner, be refused another VM, and return a metricsUpdate of ours."""
    client = socketio.AsyncClient(reconnection=False)
    got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    @client.on("metricsUpdate")  # type: ignore[untyped-decorator]
    def on_update(data: dict[str, Any]) -> None:
        if data.get("vmId") == vm and not got.done():
            got.set_result(data)

    await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=20)
    try:
        refused = await client.call("subscribe", {"vmId": other}, timeout=10)
        assert refused["ok"] is False, refused
        ack = await client.call("subscribe", {"vmId": vm}, timeout=10)
        assert ack == {"ok": True, "error": None} or ack.get("ok") is True, ack
        return await asyncio.wait_for(got, within_s)
    finally:
        await client.disconnect()


def test_the_pipeline_runs_as_containers(
    images: None, containers: Containers, shared_dir: Path
) -> None:
    secrets, sockets, data = shared_dir / "secrets", shared_dir / "sockets", shared_dir / "worker"
    for d in (secrets, sockets, data):
        d.mkdir()
        os.chown(d, UID, UID)
    (secrets / "jwt").write_text(JWT + "\n")
    (secrets / "agent").write_text(AGENT + "\n")
    for f in secrets.iterdir():
        os.chown(f, UID, UID)
        f.chmod(0o400)

    kafka_port, controller_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    kafka = containers.start(
        "kafka", KAFKA_IMAGE,
        env={
            "KAFKA_LISTENERS": f"PLAINTEXT://127.0.0.1:{kafka_port},"
            f"CONTROLLER://127.0.0.1:{controller_port}",
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{bootstrap}",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@127.0.0.1:{controller_port}",
            "KAFKA_HEAP_OPTS": "-Xmx384m",
        },
    )  # fmt: skip
    # the image's probe asks localhost:9092; ours listens on a free port (host network)
    deadline = time.monotonic() + 120
    while True:
        probe = podman(
            "exec", kafka, "/opt/kafka/bin/kafka-broker-api-versions.sh",
            "--bootstrap-server", bootstrap, check=False, timeout=60,
        )  # fmt: skip
        if probe.returncode == 0:
            break
        assert time.monotonic() < deadline, f"no broker:\n{containers.logs(kafka)}"
        time.sleep(1)

    gateway_port = free_port()
    common = {
        "VMPULSE_KAFKA_BOOTSTRAP": bootstrap,
        "VMPULSE_TOPIC_PREFIX": f"img{containers.run_id}.",
        "VMPULSE_PARTITIONS": "3",
        "VMPULSE_JWT_SECRET_FILE": "/run/secrets/vmpulse/jwt",
        "VMPULSE_AGENT_SECRET_FILE": "/run/secrets/vmpulse/agent",
        "VMPULSE_SOCKET_DIR": "/var/lib/vmpulse/sockets",
        "VMPULSE_GATEWAY_ADDR": f"127.0.0.1:{gateway_port}",
    }
    mounts = ["--volume", f"{secrets}:/run/secrets/vmpulse:ro"]
    stages = {}
    for role, extra in (
        ("worker", ["--volume", f"{data}:/var/lib/vmpulse"]),
        ("bridge", ["--volume", f"{sockets}:/var/lib/vmpulse/sockets"]),
        ("gateway", []),
    ):
        env = {**common, "VMPULSE_HEALTH_ADDR": f"127.0.0.1:{free_port()}"}
        stages[role] = containers.start(role, IMAGE, role, env=env, options=(*mounts, *extra))
    for name in stages.values():
        containers.wait_healthy(name, 180)

    # the platform's side: the directory says who owns the VM (operator commands, in the image)
    owner, vm, other = "ann", VMS[0], VMS[1]
    podman(
        "run", "--rm", "--network", "host", *mounts, *(f"--env={k}={v}" for k, v in common.items()),
        "--entrypoint", "sh", IMAGE, "-c",
        f"vmpulse directory put user {owner} && vmpulse directory put vm {vm} --owner {owner}"
        f" && vmpulse directory put vm {other} --owner someone-else",
    )  # fmt: skip
    containers.start(
        "simulator", IMAGE, "simulate", "--vms", str(len(VMS)), "--interval", "0.5",
        env=common, options=(*mounts, "--volume", f"{sockets}:/var/lib/vmpulse/sockets"),
    )  # fmt: skip

    token = issue_token(Secret(JWT), owner)
    url = f"http://127.0.0.1:{gateway_port}"
    update = asyncio.run(live_metrics(url, token, vm, other, 90))
    assert update["vmId"] == vm and "cpu" in json.dumps(update["metrics"])

    # every stage stops on SIGTERM, cleanly and within the grace period
    for role in ("bridge", "gateway", "worker"):
        code, took = containers.stop(stages[role])
        print(f"{role}: stopped in {took:.1f} s with exit code {code}")
        assert code == 0 and took < GRACE_S, containers.logs(stages[role])

    # rows reached the store: read the worker's chDB directory with the image's Python
    read = podman(
        "run", "--rm", "--volume", f"{data}:/var/lib/vmpulse", "--entrypoint", "python3",
        IMAGE, "-c", QUERY, "chdb:///var/lib/vmpulse/clickhouse",
    )  # fmt: skip
    counts = json.loads(read.stdout.strip().splitlines()[-1])
    print(f"store: {counts}")
    assert counts["rows"] > 0 and counts["rows"] == counts["positions"]

    for name in containers.names:
        log = containers.logs(name)
        assert JWT not in log and AGENT not in log, f"a secret in the log of {name}"
