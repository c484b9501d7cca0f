"""Each stage as its own process, as a container runs it (issue 13): the health port says
when it is ready, SIGTERM stops it cleanly within an orchestrator's grace period, and the
secrets it read from mounted files appear nowhere in what it logs (debug logging on), in
text or in JSON lines (VMPULSE_LOG_FORMAT=json). And the stages as a user deploys them
against a Kafka cluster that wants a SASL user (VMPULSE_KAFKA_SECURITY_PROTOCOL).

Real parts: the session's Kafka broker, chDB in the worker, real sockets, real signals.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import prometheus_client
import pytest
import socketio

from gateway.auth import issue_token
from infra.broker import free_port
from infra.config import DEV_JWT_SECRET, KafkaAuth, Settings
from infra.kafka_io import ensure_settings_topics, make_producer
from vmpulse.demo import demo_directory, demo_vm_ids, publish_records
from vmpulse.health import HealthServer, probe

JSON_STAGE = "worker"
"""The stage that logs JSON (VMPULSE_LOG_FORMAT=json): every line of its output must parse."""

GRACE_S = 10.0
"""`docker stop` and `podman stop` wait 10 s before SIGKILL (Kubernetes: 30 s)."""

JWT = "stage-test-jwt-" + "k" * 40
AGENT = "stage-test-agent-secret-" + "a" * 16


async def test_the_health_port_answers_liveness_readiness_and_metrics() -> None:
    state = {"ready": False}
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Counter("probe_test_total", "a counter", registry=registry).inc(3)
    server = HealthServer("127.0.0.1", 0, ready=lambda: state["ready"], registry=registry)
    await server.start()
    try:
        port = server.port
        assert port != 0
        # probe() is the blocking client of `vmpulse probe`: run it off the loop
        live = await asyncio.to_thread(probe, "0.0.0.0", port, "/healthz")
        assert live == (True, '200 {"status": "ok"}')
        assert await asyncio.to_thread(probe, "127.0.0.1", port) == (
            False,
            '503 {"status": "not ready"}',
        )
        state["ready"] = True
        assert (await asyncio.to_thread(probe, "127.0.0.1", port))[0]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as resp,
        ):
            assert resp.status == 200
            assert "probe_test_total 3.0" in await resp.text()
    finally:
        await server.stop()
    ok, said = await asyncio.to_thread(probe, "127.0.0.1", port)
    assert not ok and "no answer" in said


class Stage:
    """`vmpulse -v <stage>` as a child process with its health port and its log file."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.health_port = free_port()
        self.log_path = log
        self.env = {**env, "VMPULSE_HEALTH_ADDR": f"127.0.0.1:{self.health_port}"}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vmpulse.cli", "-v", name],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        said = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
            ok, said = await asyncio.to_thread(probe, "127.0.0.1", self.health_port)
            if ok:
                return
            await asyncio.sleep(0.3)
        raise AssertionError(f"{self.name} not ready within {within_s}s ({said}):\n{self.log()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def test_every_stage_is_ready_stops_on_sigterm_and_logs_no_secret(
    settings: Settings, short_tmp: Path
) -> None:
    secrets = short_tmp / "secrets"
    secrets.mkdir()
    (secrets / "jwt").write_text(JWT + "\n")
    (secrets / "agent").write_text(AGENT + "\n")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("VMPULSE_") or key == "VMPULSE_KAFKA_BOOTSTRAP"
    }
    env.update(
        {
            "VMPULSE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap or "",
            "VMPULSE_TOPIC_PREFIX": settings.kafka.topic_prefix,
            "VMPULSE_PARTITIONS": "2",
            "VMPULSE_JWT_SECRET_FILE": str(secrets / "jwt"),
            "VMPULSE_AGENT_SECRET_FILE": str(secrets / "agent"),
            "VMPULSE_AGENT_TCP_ADDR": f"127.0.0.1:{free_port()}",
            "VMPULSE_GATEWAY_ADDR": f"127.0.0.1:{free_port()}",
        }
    )
    stages = []
    try:
        for name in ("bridge", "worker", "gateway"):
            data = short_tmp / name
            stage_env = {
                **env,
                "VMPULSE_DATA_DIR": str(data),
                "VMPULSE_SOCKET_DIR": str(short_tmp / "sockets"),
            }
            if name == JSON_STAGE:  # as a container platform's log collector wants it
                stage_env["VMPULSE_LOG_FORMAT"] = "json"
            stages.append(Stage(name, stage_env, short_tmp / f"{name}.log"))
        for stage in stages:
            await stage.wait_ready(120.0)
        bridge = stages[0]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{bridge.health_port}/metrics") as resp,
        ):
            assert "vmpulse_bridge_active_connections" in await resp.text()

        for stage in stages:
            started = time.monotonic()
            stage.proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(stage.proc.wait, GRACE_S)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"{stage.name} still running {GRACE_S}s after SIGTERM:\n{stage.log()}"
                ) from None
            took = time.monotonic() - started
            print(f"{stage.name}: stopped on SIGTERM in {took:.2f}s")
            assert code == 0, f"{stage.name} exited {code}:\n{stage.log()}"
            log = stage.log()
            assert "Traceback" not in log, log
            assert "DEBUG" in log  # debug logging was on: the check below saw everything
            assert JWT not in log and AGENT not in log, f"a secret in the {stage.name} log"
            assert JWT[:16] not in log and AGENT[:20] not in log
            if stage.name == JSON_STAGE:
                entries = [json.loads(line) for line in log.splitlines() if line]
                assert all(isinstance(e, dict) for e in entries), log[-3000:]
                assert {"time", "level", "logger", "message"} <= set.intersection(
                    *(set(e) for e in entries)
                )
                assert {e["level"] for e in entries} >= {"DEBUG", "INFO"}
            ok, said = probe("127.0.0.1", stage.health_port)
            assert not ok and "no answer" in said
    finally:
        for stage in stages:
            stage.kill()


async def _fails_to_start(stage: str, env: dict[str, str], *options: str) -> str:
    """Run `vmpulse <stage>` to its end, check it exited 1; what it said (stderr, stdout)."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vmpulse.cli", *options, stage],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    said = done.stderr + done.stdout
    assert done.returncode == 1, f"{stage}: {done.returncode}\n{said[-3000:]}"
    return said


async def test_a_stage_waits_for_its_broker_then_fails_with_exit_code_1(
    kafka_bootstrap: str, short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from aiokafka.errors import KafkaConnectionError

    from infra.kafka_io import wait_for_broker

    await wait_for_broker(kafka_bootstrap, 0.0)  # up: answers at once
    closed = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        await wait_for_broker(closed, 1.5)
    assert time.monotonic() - started >= 1.5
    assert [r.message for r in caplog.records if "does not answer yet" in r.message] == [
        f"Kafka at {closed} does not answer yet; waiting up to 2 s"
    ]
    # a stage that cannot reach its broker says so with a failing exit code, so that an
    # orchestrator's restart policy (on-failure) restarts it
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
    env.update(
        {
            "VMPULSE_KAFKA_BOOTSTRAP": closed,
            "VMPULSE_KAFKA_WAIT_S": "1",
            "VMPULSE_DATA_DIR": str(short_tmp),
        }
    )
    for stage in ("bridge", "gateway", "worker"):
        said = await _fails_to_start(stage, env)
        # one line that says what and which settings, not a library's traceback
        because = f"Kafka at {closed} did not answer within 1 s (VMPULSE_KAFKA_BOOTSTRAP;"
        assert f"cannot start: {because}" in said and "Traceback" not in said, said[-3000:]


def test_a_stage_stopped_while_it_waits_for_kafka_says_so(short_tmp: Path) -> None:
    """SIGTERM (an orchestrator's stop) while the worker still waits for its broker, before
    its own signal handling runs: it stops there with one line, not killed mid-way."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
    env.update(
        {
            "VMPULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "VMPULSE_KAFKA_WAIT_S": "120",
            "VMPULSE_DATA_DIR": str(short_tmp),
        }
    )
    log_path = short_tmp / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmpulse.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "does not answer yet" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(GRACE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    said = log_path.read_text(errors="replace")
    assert code == 128 + signal.SIGTERM, said
    assert "vmpulse worker stopped by SIGTERM" in said and "Traceback" not in said, said


async def test_a_stage_that_cannot_listen_says_where_and_exits_1(
    kafka_bootstrap: str, short_tmp: Path
) -> None:
    """A port another process holds: the stage names the address, the setting and the
    reason in one line and exits 1, instead of a traceback (or of running without it).

    On a topic prefix no stage has used: the gateway, first here, makes the topics it
    reads (it failed on the missing directory topic after 40 s before it did)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
        env.update(
            {
                "VMPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
                "VMPULSE_TOPIC_PREFIX": f"listen-{uuid.uuid4().hex[:8]}.",
                "VMPULSE_DATA_DIR": str(short_tmp),
            }
        )
        cases = {
            "gateway": ("VMPULSE_GATEWAY_ADDR", "browsers"),
            "bridge": ("VMPULSE_AGENT_TCP_ADDR", "agents over TCP"),
            "worker": ("VMPULSE_HEALTH_ADDR", "health checks"),
        }
        for stage, (setting, what) in cases.items():
            said = await _fails_to_start(stage, {**env, setting: f"127.0.0.1:{port}"})
            line = f"cannot start: cannot listen for {what} on 127.0.0.1:{port} ({setting}): "
            assert line + "Address already in use" in said, said[-3000:]
            # that line is the only error: no traceback, no refused first fetch
            assert said.count(" ERROR ") == 1 and "Traceback" not in said, said[-3000:]


async def test_the_bridge_without_a_usable_socket_directory_says_which(
    kafka_bootstrap: str, short_tmp: Path
) -> None:
    (short_tmp / "a-file").write_text("not a directory")
    sockets = short_tmp / "a-file" / "sockets"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
    env.update(
        {
            "VMPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "VMPULSE_SOCKET_DIR": str(sockets),
            "VMPULSE_DATA_DIR": str(short_tmp),
        }
    )
    said = await _fails_to_start("bridge", env)
    line = f"cannot start: cannot use {sockets} for the agents' sockets (VMPULSE_SOCKET_DIR): "
    assert line + "Not a directory" in said and "Traceback" not in said, said[-3000:]


async def test_the_stages_carry_a_sample_to_a_browser_over_tls_as_a_sasl_user(
    kafka_sasl_ssl: tuple[str, KafkaAuth], short_tmp: Path
) -> None:
    """bridge, worker and gateway as processes, each configured only through its
    environment (VMPULSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL, SCRAM-SHA-512, the CA file, the
    password from a mounted file), against the broker's SASL_SSL listener: a simulated
    agent's sample reaches a Socket.IO client, and the password is in none of their
    (debug) logs."""
    bootstrap, auth = kafka_sasl_ssl
    assert auth.username is not None and auth.password is not None and auth.cafile is not None
    security = {
        "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "VMPULSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "VMPULSE_KAFKA_SASL_USERNAME": auth.username,
        "VMPULSE_KAFKA_SASL_PASSWORD_FILE": str(short_tmp / "kafka_password"),
        "VMPULSE_KAFKA_SSL_CAFILE": str(auth.cafile),
    }
    password = auth.password.reveal()
    (short_tmp / "kafka_password").write_text(password + "\n")
    prefix = f"sasl{uuid.uuid4().hex[:8]}."
    settings = Settings.from_env(
        {
            "VMPULSE_KAFKA_BOOTSTRAP": bootstrap,
            "VMPULSE_TOPIC_PREFIX": prefix,
            "VMPULSE_PARTITIONS": "2",
            "VMPULSE_DATA_DIR": str(short_tmp),
            **security,
        }
    )
    assert settings.kafka.auth == auth
    # the users and the VMs of `vmpulse simulate` (5), published as the platform would:
    # over SASL too
    vms = demo_vm_ids(5)
    topics = await ensure_settings_topics(settings)
    producer = make_producer(bootstrap, auth=settings.kafka.auth)
    await producer.start()
    try:
        await publish_records(producer, topics, demo_directory(vms))
    finally:
        await producer.stop()

    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
    env.update(
        {
            "VMPULSE_KAFKA_BOOTSTRAP": bootstrap,
            "VMPULSE_TOPIC_PREFIX": prefix,
            "VMPULSE_PARTITIONS": "2",
            **security,
            "VMPULSE_SOCKET_DIR": str(short_tmp / "sockets"),
            "VMPULSE_GATEWAY_ADDR": f"127.0.0.1:{free_port()}",
        }
    )
    (short_tmp / "sockets").mkdir()
    stages: list[Stage] = []
    try:
        for name in ("worker", "gateway", "bridge"):
            stage_env = {**env, "VMPULSE_DATA_DIR": str(short_tmp / name)}
            stages.append(Stage(name, stage_env, short_tmp / f"{name}.log"))
        for stage in stages:
            await stage.wait_ready(120.0)
        fleet = Stage("simulate", {**env, "VMPULSE_DATA_DIR": str(short_tmp / "fleet")},
                      short_tmp / "fleet.log")  # fmt: skip
        url = f"http://{env['VMPULSE_GATEWAY_ADDR']}"
        token = issue_token(DEV_JWT_SECRET, "admin", admin=True)
        try:
            sample = await _first_update(url, token, vms[0])
        finally:
            fleet.kill()
        assert sample["vmId"] == vms[0] and "cpu" in sample["metrics"], sample
        # the worker's health port shows what it stored (beside the process's own series)
        worker = stages[0]
        deadline = time.monotonic() + 30
        while True:
            url = f"http://127.0.0.1:{worker.health_port}/metrics"
            async with aiohttp.ClientSession() as http, http.get(url) as resp:
                text = await resp.text()
            stored = [ln for ln in text.splitlines() if ln.startswith("vmpulse_worker_records_st")]
            lag = "vmpulse_worker_consumer_lag " in text  # librdkafka's statistics: 5 s
            if lag and stored and stored[0] != "vmpulse_worker_records_stored_total 0.0":
                break
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.3)
        assert "process_cpu_seconds_total" in text and "vmpulse_worker_store_failing 0.0" in text
        # and every stage's health port shows its own series beside the process's
        for stage, series in ((stages[1], "vmpulse_gateway_events_in_total"),
                              (stages[2], "vmpulse_bridge_lines_total")):  # fmt: skip
            url = f"http://127.0.0.1:{stage.health_port}/metrics"
            async with aiohttp.ClientSession() as http, http.get(url) as resp:
                text = await resp.text()
            assert series in text and "process_cpu_seconds_total" in text, (stage.name, text)
        for stage in stages:
            stage.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(stage.proc.wait, GRACE_S)
            assert code == 0, f"{stage.name} exited {code}:\n{stage.log()}"
            log = stage.log()
            assert "DEBUG" in log and "Traceback" not in log, log[-3000:]
            assert password not in log and password[:12] not in log, f"{stage.name} logged it"
    finally:
        for stage in stages:
            stage.kill()


async def _first_update(url: str, token: str, vm: str, within_s: float = 60.0) -> dict[str, Any]:
    """Subscribe a Socket.IO client to ``vm``; the first ``metricsUpdate`` for it."""
    client = socketio.AsyncClient(reconnection=False)
    got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    @client.on("metricsUpdate")  # type: ignore[untyped-decorator]
    async def on_update(payload: dict[str, Any]) -> None:
        if payload.get("vmId") == vm and not got.done():
            got.set_result(payload)

    await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    try:
        ack = await client.call("subscribe", {"vmId": vm}, timeout=10)
        assert isinstance(ack, dict) and ack.get("ok"), ack
        return await asyncio.wait_for(got, within_s)
    finally:
        await client.disconnect()


async def test_a_stage_refused_by_its_cluster_says_why_and_exits_1_without_waiting(
    kafka_sasl_ssl: tuple[str, KafkaAuth], short_tmp: Path
) -> None:
    """A wrong password is not a broker that is still starting: each stage gives up at
    once (not after VMPULSE_KAFKA_WAIT_S), says the cluster refused it, and shows neither
    the password it was given nor anything of the right one."""
    bootstrap, auth = kafka_sasl_ssl
    assert auth.username is not None and auth.password is not None and auth.cafile is not None
    wrong = "not-the-password-" + uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPULSE_")}
    env.update(
        {
            "VMPULSE_KAFKA_BOOTSTRAP": bootstrap,
            "VMPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "VMPULSE_KAFKA_SASL_USERNAME": auth.username,
            "VMPULSE_KAFKA_SASL_PASSWORD": wrong,
            "VMPULSE_KAFKA_SSL_CAFILE": str(auth.cafile),
            "VMPULSE_KAFKA_WAIT_S": "120",
            "VMPULSE_DATA_DIR": str(short_tmp),
        }
    )
    for stage in ("bridge", "gateway", "worker"):
        started = time.monotonic()
        said = await _fails_to_start(stage, env, "-v")
        assert time.monotonic() - started < 60, f"{stage} waited for a cluster that refused it"
        assert "refuses this client" in said and "Authentication failed" in said, said[-3000:]
        assert "Traceback" not in said, said[-3000:]
        assert wrong not in said and auth.password.reveal() not in said, stage
