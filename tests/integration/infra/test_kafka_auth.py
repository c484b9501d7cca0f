"""Kafka clients that authenticate: every client library of vmpulse against a real broker's
secured listeners (the session broker's SASL_PLAINTEXT and SASL_SSL with a SCRAM-SHA-512
user, SSL with a client certificate), with the right credentials and with wrong ones.

The whole path as a user deploys it, each stage a process configured only through its
environment, is in tests/integration/vmpulse/test_stage_processes.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
import uuid

import pytest

from agents.producing import make_producer as make_bridge_producer
from infra.config import KafkaAuth, Secret
from infra.kafka_io import KafkaRefused, ensure_topics, make_producer, wait_for_broker
from infra.partition_reader import PartitionReader, Record
from schemas.topics import Topics
from streams.state_log import read_partitions


async def test_each_client_library_reaches_a_secured_listener(
    kafka_secured: tuple[str, KafkaAuth],
) -> None:
    bootstrap, auth = kafka_secured
    topics = Topics(f"sasl{uuid.uuid4().hex[:8]}.")
    # aiokafka's admin client: the broker answers, the topics are made
    await wait_for_broker(bootstrap, 10, auth=auth)
    await ensure_topics(bootstrap, topics, partitions=1, replication_factor=1, auth=auth)

    # librdkafka's producer (the bridge's)
    producer = make_bridge_producer(bootstrap, client_id="t-sasl-bridge", auth=auth)
    reports: list[object] = []

    def report(err: object, _msg: object) -> None:
        reports.append(err)

    producer.produce(topics.agent_raw, b"by-librdkafka", b"vm-1", -1, report, None, 0, [])
    assert await asyncio.to_thread(producer.flush, 20) == 0
    assert reports == [None]  # delivered: no error

    # aiokafka's producer (the platform tools', `up`'s)
    aio = make_producer(bootstrap, linger_ms=0, auth=auth)
    await aio.start()
    try:
        await aio.send_and_wait(topics.agent_raw, b"by-aiokafka", key=b"vm-2")
    finally:
        await aio.stop()

    # aiokafka's consumer (the worker's state read-back): both records
    latest = await read_partitions(bootstrap, topics.agent_raw, [0], timeout_s=20, auth=auth)
    assert latest == {"vm-1": (0, b"by-librdkafka"), "vm-2": (0, b"by-aiokafka")}

    # librdkafka's consumer (the gateway's reader)
    reader = PartitionReader(
        bootstrap, topics.agent_raw, client_id="t-sasl-reader", fetch_wait_ms=10, auth=auth
    )
    try:
        assert await reader.start() == [0]
        reader.begin({0: 0})
        got: list[Record] = []
        deadline = time.monotonic() + 20
        while len(got) < 2:
            got += await asyncio.wait_for(reader.getmany(), deadline - time.monotonic())
        assert [r.value for r in got] == [b"by-librdkafka", b"by-aiokafka"]
    finally:
        await reader.stop()


async def test_a_wrong_password_is_refused_by_every_library_and_never_shown(
    kafka_sasl: tuple[str, KafkaAuth], caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap, auth = kafka_sasl
    wrong_password = "wrong-" + secrets.token_hex(8)
    wrong = dataclasses.replace(auth, password=Secret(wrong_password))
    caplog.set_level(logging.DEBUG)

    # aiokafka: a refused user is not a broker still starting; the stage fails at once
    started = time.monotonic()
    with pytest.raises(KafkaRefused, match="Authentication failed") as refused:
        await wait_for_broker(bootstrap, 30, auth=wrong)
    assert time.monotonic() - started < 15, "a wrong password is not waited out like a down broker"
    assert wrong_password not in str(refused.value)

    # librdkafka: nothing is delivered, and its log says why
    producer = make_bridge_producer(bootstrap, client_id="t-sasl-wrong", auth=wrong)
    producer.produce("t-sasl-nowhere", b"never", b"vm-1", -1, None, None, 0, [])
    assert await asyncio.to_thread(producer.flush, 5) == 1  # still undelivered
    producer.purge()
    said = [r.getMessage() for r in caplog.records if r.name == "agents.rdkafka"]
    assert any("Authentication failed" in line for line in said), said
    assert all(wrong_password not in r.getMessage() for r in caplog.records)
    # the right password the session uses is not in them either
    assert auth.password is not None
    assert all(auth.password.reveal() not in r.getMessage() for r in caplog.records)


async def test_a_broker_certificate_from_an_unknown_ca_is_refused_at_once(
    kafka_sasl_ssl: tuple[str, KafkaAuth], caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap, auth = kafka_sasl_ssl
    untrusted = dataclasses.replace(auth, cafile=None)  # the system's CAs: not the session's
    started = time.monotonic()
    with pytest.raises(KafkaRefused, match="CERTIFICATE_VERIFY_FAILED"):
        await wait_for_broker(bootstrap, 30, auth=untrusted)
    assert time.monotonic() - started < 15

    producer = make_bridge_producer(bootstrap, client_id="t-tls-untrusted", auth=untrusted)
    producer.produce("t-tls-nowhere", b"never", b"vm-1", -1, None, None, 0, [])
    assert await asyncio.to_thread(producer.flush, 5) == 1  # nothing goes to that broker
    producer.purge()
    said = [r.getMessage() for r in caplog.records if r.name == "agents.rdkafka"]
    assert any("certificate verify failed" in line for line in said), said


async def test_a_client_without_a_certificate_is_refused_by_a_mutual_tls_listener(
    kafka_mtls: tuple[str, KafkaAuth], caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap, auth = kafka_mtls
    anonymous = dataclasses.replace(auth, certfile=None, keyfile=None)
    started = time.monotonic()
    with pytest.raises(KafkaRefused, match=r"BAD_CERTIFICATE|CERTIFICATE_REQUIRED"):
        await wait_for_broker(bootstrap, 30, auth=anonymous)
    assert time.monotonic() - started < 15

    producer = make_bridge_producer(bootstrap, client_id="t-mtls-anonymous", auth=anonymous)
    producer.produce("t-mtls-nowhere", b"never", b"vm-1", -1, None, None, 0, [])
    assert await asyncio.to_thread(producer.flush, 5) == 1
    producer.purge()
