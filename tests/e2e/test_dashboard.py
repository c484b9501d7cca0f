"""End to end in a real browser: the dashboard the gateway serves, against `vmpulse up`.

Playwright drives headless Chromium from Debian's ``chromium`` package
(``VMPULSE_CHROMIUM``, default /usr/bin/chromium; Playwright cannot download
browsers here). One `vmpulse up` serves the whole module (6 simulated VMs),
and a second gateway runs as its own process (`vmpulse gateway`) on the same
broker for the restart test. The module also runs the TypeScript client's
tests (``npm test`` in gateway/client) against this same system.

Screenshots go to ``VMPULSE_SCREENSHOT_DIR`` (``make screenshots`` sets it to
docs/img), else to a temporary folder, printed so a failure can be looked at.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from infra.broker import free_port
from infra.kafka_io import make_producer
from schemas.topics import Topics
from tests.e2e.support import VMPULSE, Up, run_up, until
from vmpulse.publish import make_event, send_event

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("VMPULSE_CHROMIUM", "/usr/bin/chromium")
CLIENT_DIR = Path(__file__).resolve().parents[2] / "gateway" / "client"
SHOTS = Path(os.environ.get("VMPULSE_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="vp-shots-"))
SHOTS.mkdir(parents=True, exist_ok=True)
VIEWPORT = {"width": 1440, "height": 900}
FLEET = 6
# Ownership in the demo directory (vmpulse/demo.py): alice, bob, carol in turn.
DEPARTMENTS = {"alice": "engineering", "bob": "engineering", "carol": "finance"}


@pytest.fixture(scope="module")
def up_process() -> Iterator[Up]:
    yield from run_up(["--vms", str(FLEET), "--interval", "0.5"])


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    await context.close()
    assert errors == [], f"the page threw: {errors}"


def token(up: Up, user: str) -> str:
    out = up.run("token", "--user", user)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def printed_link(up: Up, user: str) -> str:
    """The sign-in link `vmpulse up` printed for a demo user."""
    for line in up.output().splitlines():
        words = line.split()
        if words[:3] == ["sign", "in", "as"] and words[3] == user:
            return words[4]
    raise AssertionError(f"vmpulse up printed no sign-in link for {user}:\n{up.output()}")


async def sign_in_link(page: Page, url: str, tok: str) -> None:
    await page.goto(f"{url}/#token={tok}")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=15_000)


async def shoot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / name))
    print(f"screenshot: {SHOTS / name}")


def rows(page: Page) -> Any:
    return page.locator(".vmlist-spacer .vmrow")


async def test_sign_in_with_a_pasted_token_shows_the_fleet(up_process: Up, page: Page) -> None:
    await page.goto(up_process.info["gateway_url"])
    await expect(page.locator("#signin")).to_be_visible()
    await page.fill("#token", token(up_process, "admin"))
    await shoot(page, "signin.png")
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    await expect(page.locator(".who-name")).to_have_text("Administrator (admin)")
    await expect(rows(page)).to_have_count(FLEET)
    names = await page.locator(".vmlist-spacer .vm-name").all_inner_texts()
    assert names == [f"demo-vm-{i:03d}" for i in range(FLEET)]
    owners = await page.locator(".vmlist-spacer .vm-owner").all_inner_texts()
    assert owners == [("alice", "bob", "carol")[i % 3] for i in range(FLEET)]
    depts = await page.locator(".vmlist-spacer .vm-dept").all_inner_texts()
    assert depts == [DEPARTMENTS[o] for o in owners]
    # Every simulated agent talks, so each VM's agent shows online (a `vms` event each).
    await expect(page.locator(".vmlist-spacer .agent-online")).to_have_count(FLEET, timeout=20_000)
    # Admins see the delivery and DLQ panel.
    await expect(page.locator("#admin .figures")).to_be_visible()


async def test_a_chart_receives_live_points(up_process: Up, page: Page) -> None:
    url = up_process.info["gateway_url"]
    assert f"dashboard: {url}/" in up_process.output()
    link = printed_link(up_process, "admin")
    assert link.startswith(f"{url}/#token=")
    await page.goto(link)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    assert "token" not in page.url, "the token must leave the address bar"
    await rows(page).first.click()
    points = page.locator(".card .points")
    await expect(points).to_have_count(1)
    await expect(page.locator(".card .source")).to_contain_text("live")
    first = int(await points.get_attribute("data-points") or 0)
    deadline = time.monotonic() + 10
    while int(await points.get_attribute("data-points") or 0) < first + 2:
        assert time.monotonic() < deadline, "no live points reached the chart in 10 s"
        await asyncio.sleep(0.1)
    await expect(page.locator(".card .now")).to_contain_text("CPU")


async def test_history_ranges_read_the_rollups(up_process: Up, page: Page) -> None:
    await sign_in_link(page, up_process.info["gateway_url"], token(up_process, "admin"))
    await rows(page).nth(1).click()
    card = page.locator(".card")
    for mode, table in (("24h", "system_metrics_1m"), ("30d", "system_metrics_1h")):
        await card.locator(f"button[data-mode='{mode}']").click()
        await expect(card.locator(".source")).to_contain_text(table, timeout=15_000)
        # The store holds this run's minutes only: ask again until a bucket is written.
        deadline = time.monotonic() + 20
        while int(await card.locator(".points").get_attribute("data-points") or 0) < 1:
            assert time.monotonic() < deadline, f"no {mode} history points"
            await card.locator(f"button[data-mode='{mode}']").click()
            await asyncio.sleep(1)
        if mode == "24h":
            await shoot(page, "history.png")


async def test_an_emitted_event_shows_in_the_feed_within_one_second(
    up_process: Up, page: Page
) -> None:
    await sign_in_link(page, up_process.info["gateway_url"], token(up_process, "admin"))
    for i in range(3):
        await rows(page).nth(i).click()
    await expect(rows(page).first).to_be_visible()
    vm_id = await rows(page).nth(3).get_attribute("data-vm-id")
    data = json.dumps({"vmId": vm_id, "powerState": "running"})
    out = await asyncio.to_thread(up_process.run, "emit", "vms", "power_on", "--data", data)
    published = time.monotonic()
    assert out.returncode == 0, out.stderr
    event_id = out.stdout.strip().rsplit("id=", 1)[1]
    item = page.locator(f".feed-item[data-event-id='{event_id}']")
    await expect(item).to_have_count(1, timeout=1_000)
    elapsed = time.monotonic() - published
    print(f"published -> in the feed: {elapsed * 1000:.0f} ms")
    await expect(item.locator(".feed-title")).to_have_text("vms power_on")
    await expect(item.locator(".feed-detail")).to_contain_text("demo-vm-003 · power running")
    # The list follows the event too.
    await expect(page.locator(f".vmrow[data-vm-id='{vm_id}'] .power-running")).to_be_visible()
    await emit_alert(up_process, vm_id or "")
    await expect(page.locator(".feed-item.alert-open")).not_to_have_count(0, timeout=5_000)
    await page.wait_for_timeout(1_500)  # let the charts gather a few more points for the picture
    await shoot(page, "dashboard.png")


async def emit_alert(up: Up, vm_id: str) -> None:
    data = {
        "id": f"{vm_id}:cpu_high::1",
        "vmId": vm_id,
        "rule": "cpu_high",
        "metric": "cpu_usage_percent",
        "threshold": 90,
        "forSeconds": 300,
        "value": 97.5,
    }
    out = await asyncio.to_thread(up.run, "emit", "alerts", "create", "--data", json.dumps(data))
    assert out.returncode == 0, out.stderr


async def test_a_user_sees_only_the_vms_they_may_watch(up_process: Up, page: Page) -> None:
    url = up_process.info["gateway_url"]
    for user in ("carol", "alice"):
        await sign_in_link(page, url, token(up_process, user))
        dept = DEPARTMENTS[user]
        expected = [
            f"demo-vm-{i:03d}"
            for i in range(FLEET)
            if DEPARTMENTS[("alice", "bob", "carol")[i % 3]] == dept
        ]
        await expect(rows(page)).to_have_count(len(expected))
        assert await page.locator(".vmlist-spacer .vm-name").all_inner_texts() == expected
        assert set(await page.locator(".vmlist-spacer .vm-dept").all_inner_texts()) == {dept}
        await expect(page.locator("#admin")).to_be_hidden()
        if user == "carol":
            await rows(page).first.click()
            await expect(page.locator(".card .points")).not_to_have_attribute(
                "data-points", "0", timeout=10_000
            )
            await shoot(page, "user-view.png")
        await page.click("#signout")
        await expect(page.locator("#signin")).to_be_visible()


async def test_a_bad_token_shows_the_servers_refusal(up_process: Up, page: Page) -> None:
    url = up_process.info["gateway_url"]
    await page.goto(f"{url}/#token=not-a-jwt")
    await expect(page.locator("#signin-error")).to_have_text("Authentication failed")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "refused")
    await expect(page.locator("#app")).to_be_hidden()
    await shoot(page, "refused.png")
    # A valid token for someone the directory does not know: the server says so.
    await page.fill("#token", token(up_process, "mallory"))
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#signin-error")).to_have_text("User not found")


class Gateway:
    """`vmpulse gateway` as its own process on the broker of `vmpulse up`; restartable."""

    def __init__(self, up: Up) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="vp-gw-", dir="/tmp"))
        info = up.info
        self.env = {
            **up.env,
            "VMPULSE_DATA_DIR": str(self.dir),
            "VMPULSE_KAFKA_BOOTSTRAP": info["kafka_bootstrap"],
            "VMPULSE_TOPIC_PREFIX": info["topic_prefix"],
            "VMPULSE_GATEWAY_ADDR": f"127.0.0.1:{self.port}",
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.dir / f"gateway-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [VMPULSE, "gateway"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    async def ready(self, within: float = 60) -> None:
        def ok() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.output()
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        await until(lambda: ok(), within, f"the gateway on {self.url} to be ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in sorted(self.dir.glob("*.log"))
        )


@pytest.fixture
def own_gateway(up_process: Up) -> Iterator[Gateway]:
    gateway = Gateway(up_process)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


async def test_restarting_the_gateway_resumes_the_feed_without_gap_or_duplicate(
    up_process: Up, own_gateway: Gateway, page: Page
) -> None:
    await own_gateway.ready()
    await sign_in_link(page, own_gateway.url, token(up_process, "admin"))
    vm_id = await rows(page).first.get_attribute("data-vm-id")
    assert vm_id
    topics = Topics(up_process.info["topic_prefix"])
    producer = make_producer(up_process.info["kafka_bootstrap"], linger_ms=0)
    await producer.start()
    sent: list[str] = []
    states: list[str] = []

    async def stream(count: int) -> None:
        for _ in range(count):
            event = make_event("vms", "update", {"vmId": vm_id, "seq": len(sent)}, "admin")
            await send_event(producer, topics, event)
            sent.append(event.id)
            await asyncio.sleep(0.15)

    async def feed_ids() -> list[str]:
        ids = await page.locator(".feed-item[data-event-id]").evaluate_all(
            "items => items.map(i => i.dataset.eventId)"
        )
        return [i for i in reversed(ids) if i in set(sent)]

    try:
        await stream(10)
        deadline = time.monotonic() + 10
        while len(await feed_ids()) < 10:
            assert time.monotonic() < deadline, "the first events did not reach the feed"
            await asyncio.sleep(0.1)
        # Mid-stream: the gateway stops while events keep coming, then starts again.
        streaming = asyncio.create_task(stream(40))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(own_gateway.stop)
        deadline = time.monotonic() + 10
        while (state := await page.locator("#conn").get_attribute("data-state")) != "resuming":
            assert time.monotonic() < deadline, f"the page did not notice the restart ({state})"
            await asyncio.sleep(0.05)
        states.append(state)
        own_gateway.start()
        await own_gateway.ready()
        await streaming
        deadline = time.monotonic() + 20
        while len(await feed_ids()) < len(sent):
            assert time.monotonic() < deadline, (
                f"{len(await feed_ids())} of {len(sent)} events in the feed after the restart"
            )
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()
    shown = await feed_ids()
    assert len(set(shown)) == len(shown), "an event appears twice in the feed"
    assert shown == sent, "the feed lost or reordered events across the restart"
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    resumed = page.locator(".feed-item.system .feed-title", has_text="resumed")
    await expect(resumed).to_have_count(1)
    await expect(page.locator(".feed-item.system .feed-title", has_text="resync")).to_have_count(0)
    assert states == ["resuming"]


def test_the_typescript_client_against_this_system(up_process: Up) -> None:
    """`npm test` in gateway/client: node's test runner, the real gateway of this module."""
    if not (CLIENT_DIR / "node_modules").is_dir():
        pytest.fail("gateway/client/node_modules is missing: run `make` (it runs npm ci)")
    env = {
        **os.environ,
        "VMPULSE_TEST_DATA_DIR": str(up_process.data_dir),
        "VMPULSE_BIN": VMPULSE,
    }
    out = subprocess.run(
        ["npm", "test", "--silent"],
        cwd=CLIENT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    report = out.stdout[-6000:] + out.stderr[-3000:]
    assert out.returncode == 0, report
    summary = {
        line.split()[1]: int(line.split()[2])
        for line in out.stdout.splitlines()
        if line.startswith("# ") and len(line.split()) == 3 and line.split()[2].isdigit()
    }
    assert summary.get("fail") == 0 and summary.get("pass", 0) >= 15, report
    print(f"node --test: {summary}", file=sys.stderr)


def test_the_client_example_in_the_docs_runs(up_process: Up) -> None:
    """docs/CLIENT.md shows examples/watch.mjs verbatim, and it runs against this system."""
    example = (CLIENT_DIR / "examples" / "watch.mjs").read_text()
    docs = (CLIENT_DIR.parents[1] / "docs" / "CLIENT.md").read_text()
    block = docs.split("<!-- example: examples/watch.mjs -->\n```js\n", 1)[1].split("```", 1)[0]
    assert block == example, "docs/CLIENT.md and examples/watch.mjs differ"
    env = {
        **os.environ,
        "VMPULSE_URL": up_process.info["gateway_url"],
        "VMPULSE_TOKEN": token(up_process, "admin"),
    }
    out = subprocess.run(
        ["node", "examples/watch.mjs"],
        cwd=CLIENT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "signed in as admin (admin)" in lines
    assert any(line.startswith(f"{FLEET} VMs: demo-vm-") for line in lines), out.stdout
    assert sum(" cpu " in line for line in lines) == 3, out.stdout
    assert lines[-1].strip() == "connection: closed"
