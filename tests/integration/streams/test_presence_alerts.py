"""Presence and alerts through the real worker and gateway, as the VM owner's browser sees them.

Short intervals (agent interval 0.3 s, CPU rule held 2 s) keep the test fast;
the rules are the same as with the defaults.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from infra.config import Settings
from infra.kafka_io import make_producer
from schemas.directory import User, Vm
from schemas.hypervisor import HypervisorEvent, encode_hypervisor_event
from schemas.topics import Topics
from store.clickhouse import ClickHouseStore

from .browsers import Browser, gateway_with, metrics_line, running_worker, until

pytestmark = pytest.mark.integration

INTERVAL_S = 0.3


@pytest.fixture
async def owner(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> AsyncIterator[Browser]:
    fast = settings.replace(worker={"agent_interval_s": INTERVAL_S}, alerts={"cpu_for_s": 2.0})
    directory: list[User | Vm] = [User(id="olga"), Vm(id="vm-p", owner="olga")]
    async with gateway_with(fast, topics_ready, directory) as gw:
        browser = Browser("olga")
        await browser.connect(fast, gw.url)
        async with running_worker(fast, chdb_store) as app:
            browser.worker_stats = app.vmpulse_stats
            yield browser
        await browser.sio.disconnect()


def vm_updates(browser: Browser) -> list[tuple[str, str | None, str | None]]:
    return [
        (name.split(":")[-1], p["data"]["agentState"], p["data"]["powerState"])
        for name, p in browser.events
        if name.startswith("ns:vms:")
    ]


async def test_agent_goes_offline_when_silent_and_online_on_next_line(
    settings: Settings, topics_ready: Topics, owner: Browser
) -> None:
    producer = make_producer(settings.kafka.bootstrap or "", linger_ms=0)
    await producer.start()
    try:
        await producer.send_and_wait(topics_ready.agent_raw, metrics_line("vm-p", 5.0), key=b"vm-p")
        await until(lambda: len(vm_updates(owner)) == 1, "online")
        online_at = asyncio.get_running_loop().time()
        await until(lambda: len(vm_updates(owner)) == 2, "offline", deadline_s=10)
        silent_for = asyncio.get_running_loop().time() - online_at
        assert vm_updates(owner) == [("update", "online", None), ("update", "offline", None)]
        # offline only after 3 missed intervals (0.9 s), and not long after (timer + transport)
        assert 3 * INTERVAL_S * 0.9 <= silent_for < 3 * INTERVAL_S + 3.0, silent_for

        await producer.send_and_wait(topics_ready.agent_raw, metrics_line("vm-p", 5.0), key=b"vm-p")
        await until(lambda: len(vm_updates(owner)) == 3, "online again")
        assert vm_updates(owner)[-1] == ("update", "online", None)

        # the bridge reports the connection closed: offline at once
        await producer.send_and_wait(
            topics_ready.agent_raw, b"", key=b"vm-p", headers=[("control", b"disconnected")]
        )
        await until(lambda: len(vm_updates(owner)) == 4, "offline on disconnect")
        assert vm_updates(owner)[-1] == ("update", "offline", None)
        # a connection record is presence, never a rejected line
        assert owner.worker_stats is not None
        assert owner.worker_stats["rejected"] == 0
        assert owner.worker_stats["stored"] == 2
    finally:
        await producer.stop()


async def test_suspend_and_resume_reach_the_owner(
    settings: Settings, topics_ready: Topics, owner: Browser
) -> None:
    producer = make_producer(settings.kafka.bootstrap or "", linger_ms=0)
    await producer.start()
    try:
        for state in ("running", "paused", "running", "shutoff"):
            event = HypervisorEvent(
                vm_id="vm-p", state=state, reason="test", time=dt.datetime.now(dt.UTC)
            )
            await producer.send_and_wait(
                topics_ready.hypervisor_events, encode_hypervisor_event(event), key=b"vm-p"
            )
        await producer.send_and_wait(topics_ready.hypervisor_events, b"{junk", key=b"vm-p")
    finally:
        await producer.stop()
    await until(lambda: len(vm_updates(owner)) == 4, "four power changes")
    assert vm_updates(owner) == [
        ("power_on", None, "running"),
        ("suspend", None, "paused"),
        ("resume", None, "running"),
        ("power_off", None, "shutoff"),
    ]


async def test_cpu_held_high_raises_one_alert_and_resolves_it(
    settings: Settings, topics_ready: Topics, owner: Browser
) -> None:
    t0 = dt.datetime.now(dt.UTC)
    cpus = [95.0] * 8 + [20.0]  # one sample a second: 7 s above 90 %, then below
    producer = make_producer(settings.kafka.bootstrap or "", linger_ms=0)
    await producer.start()
    try:
        for i, cpu in enumerate(cpus):
            line = metrics_line("vm-p", cpu, t0 + dt.timedelta(seconds=i))
            await producer.send_and_wait(topics_ready.agent_raw, line, key=b"vm-p")
    finally:
        await producer.stop()
    await until(lambda: len(owner.payloads("ns:alerts:resolve")) == 1, "resolve")
    (create,) = owner.payloads("ns:alerts:create")
    (resolve,) = owner.payloads("ns:alerts:resolve")
    assert create["data"]["rule"] == "cpu_high" and create["data"]["vmId"] == "vm-p"
    assert create["data"]["at"] == (t0 + dt.timedelta(seconds=2)).isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")
    assert resolve["data"]["id"] == create["data"]["id"]


async def test_a_new_worker_resumes_presence_and_open_alerts(
    settings: Settings, topics_ready: Topics, chdb_store: ClickHouseStore
) -> None:
    """The worker is replaced (restart, or its partitions move): the VM's state goes on.

    Its agent was online and an alert was open. Under the new worker the agent stays
    silent and turns offline, then its next line, below the threshold, resolves the
    alert the first worker raised, rather than the VM being unknown.
    """
    interval_s = 2.0  # offline after 6 s: long enough to hand over before the first worker
    fast = settings.replace(worker={"agent_interval_s": interval_s}, alerts={"cpu_for_s": 1.0})
    directory: list[User | Vm] = [User(id="olga"), Vm(id="vm-p", owner="olga")]
    t0 = dt.datetime.now(dt.UTC)
    producer = make_producer(settings.kafka.bootstrap or "", linger_ms=0)
    await producer.start()
    async with gateway_with(fast, topics_ready, directory) as gw:
        owner = Browser("olga")
        await owner.connect(fast, gw.url)
        try:
            async with running_worker(fast, chdb_store):
                for i in range(2):  # 95 % held for 1 s: one alert
                    line = metrics_line("vm-p", 95.0, t0 + dt.timedelta(seconds=i))
                    await producer.send_and_wait(topics_ready.agent_raw, line, key=b"vm-p")
                await until(lambda: len(owner.payloads("ns:alerts:create")) == 1, "alert")
                assert vm_updates(owner) == [("update", "online", None)]
            handed_over = asyncio.get_running_loop().time()
            async with running_worker(fast, chdb_store) as second:
                await until(lambda: len(vm_updates(owner)) == 2, "offline", deadline_s=15)
                silent_for = asyncio.get_running_loop().time() - handed_over
                assert vm_updates(owner)[-1] == ("update", "offline", None)
                assert silent_for < 3 * interval_s + 5.0, silent_for
                assert second.vmpulse_event_stages.stats["restored_vms"] == 1

                line = metrics_line("vm-p", 20.0, t0 + dt.timedelta(seconds=2))
                await producer.send_and_wait(topics_ready.agent_raw, line, key=b"vm-p")
                await until(lambda: len(owner.payloads("ns:alerts:resolve")) == 1, "resolve")
                await until(lambda: len(vm_updates(owner)) == 3, "online again")
        finally:
            await producer.stop()
            await owner.sio.disconnect()
    (create,) = owner.payloads("ns:alerts:create")
    (resolve,) = owner.payloads("ns:alerts:resolve")
    assert resolve["data"]["id"] == create["data"]["id"]
    assert vm_updates(owner)[-1] == ("update", "online", None)
