"""The dashboard with 1,000 VMs in the list and 20 live charts open, in headless Chromium.

`vmpulse up` runs 20 simulated VMs (one sample a second each, so 20 charts
receive live points); 980 more VMs are put in the directory, so the list
holds 1,000; while it is measured, a stream of `vms` events (agent state
flips, 50 a second) keeps the list changing. The page is measured in the
browser itself:

- frame intervals (requestAnimationFrame) and long tasks (> 50 ms) over 10 s;
- filter input to the list redrawn, and a scroll to the last row drawn;
- how many rows exist in the DOM (the list is virtualised).

The peer, measured in the same run on the same machine: the same page with
the same 1,000 VMs, idle (no chart, no event stream). Figures are printed;
the ratio of the two is what to compare across machines.
Run: ``.venv/bin/python -m pytest -q -m bench -s tests/bench/test_dashboard_bench.py``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect

from gateway.auth import issue_token
from infra.config import DEV_JWT_SECRET
from infra.kafka_io import make_producer
from schemas.directory import Vm
from schemas.topics import Topics
from tests.e2e.support import Up, run_up
from tests.e2e.test_dashboard import CHROMIUM, VIEWPORT
from vmpulse.publish import make_event, put_record, send_event

pytestmark = pytest.mark.bench

LIVE_VMS = 20
FLEET = 1_000
CHARTS = 20
MEASURE_S = 10.0
EVENTS_PER_S = 50

# Runs in the page: frame intervals and long tasks for `ms` milliseconds.
_MEASURE_JS = """
(ms) => new Promise((resolve) => {
  const frames = []; let longTasks = 0; let longest = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) { longTasks++; longest = Math.max(longest, e.duration); }
  });
  obs.observe({ type: "longtask", buffered: false });
  let last = performance.now(); const end = last + ms;
  const tick = (now) => {
    frames.push(now - last); last = now;
    if (now < end) requestAnimationFrame(tick);
    else { obs.disconnect(); resolve({ frames, longTasks, longest }); }
  };
  requestAnimationFrame(tick);
})
"""

_FILTER_JS = """
async (text) => {
  const input = document.querySelector(".vmlist-filter");
  const count = document.querySelector(".vmlist-count");
  const before = count.textContent;
  const t0 = performance.now();
  input.value = text; input.dispatchEvent(new Event("input"));
  while (count.textContent === before) await new Promise((r) => requestAnimationFrame(r));
  return performance.now() - t0;
}
"""

_SCROLL_JS = """
async () => {
  const scroller = document.querySelector(".vmlist-scroll");
  const t0 = performance.now();
  scroller.scrollTop = scroller.scrollHeight;
  const last = () => [...document.querySelectorAll(".vmlist-spacer .vmrow .vm-name")]
    .some((n) => n.textContent === "extra-vm-0979");
  while (!last()) await new Promise((r) => requestAnimationFrame(r));
  return performance.now() - t0;
}
"""


@pytest.fixture(scope="module")
def up_process() -> Iterator[Up]:
    yield from run_up(["--vms", str(LIVE_VMS), "--interval", "1"])


def _summary(sample: dict[str, Any]) -> dict[str, float]:
    frames: list[float] = sorted(sample["frames"][1:])

    def pick(q: float) -> float:
        return frames[min(len(frames) - 1, int(q * len(frames)))]

    return {
        "frames": len(frames),
        "fps": len(frames) / MEASURE_S,
        "p50_ms": pick(0.5),
        "p95_ms": pick(0.95),
        "max_ms": frames[-1],
        "long_tasks": sample["longTasks"],
        "longest_task_ms": sample["longest"],
    }


async def _put_extra_vms(up: Up) -> list[str]:
    topics = Topics(up.info["topic_prefix"])
    producer = make_producer(up.info["kafka_bootstrap"], linger_ms=20)
    await producer.start()
    ids = [f"extra-{i:04d}" for i in range(FLEET - LIVE_VMS)]
    try:
        for i, vm_id in enumerate(ids):
            owner = ("alice", "bob", "carol")[i % 3]
            dept = "finance" if owner == "carol" else "engineering"
            record = Vm(id=vm_id, name=f"extra-vm-{i:04d}", owner=owner, department=dept)
            await put_record(producer, topics, record)
    finally:
        await producer.stop()
    return ids


async def _stream_events(up: Up, ids: list[str], stop: asyncio.Event) -> int:
    topics = Topics(up.info["topic_prefix"])
    producer = make_producer(up.info["kafka_bootstrap"], linger_ms=5)
    await producer.start()
    rng = random.Random(12)
    sent = 0
    try:
        while not stop.is_set():
            vm_id = rng.choice(ids)
            state = rng.choice(("online", "offline"))
            event = make_event("vms", "update", {"vmId": vm_id, "agentState": state}, "admin")
            await send_event(producer, topics, event)
            sent += 1
            await asyncio.sleep(1 / EVENTS_PER_S)
    finally:
        await producer.stop()
    return sent


async def _measure(page: Page) -> dict[str, float]:
    return _summary(await page.evaluate(_MEASURE_JS, int(MEASURE_S * 1000)))


async def test_dashboard_with_1000_vms_and_20_charts(up_process: Up) -> None:
    ids = await _put_extra_vms(up_process)
    url = up_process.info["gateway_url"]
    token = issue_token(DEV_JWT_SECRET, "admin", admin=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM)
        try:
            page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
            await page.goto(f"{url}/#token={token}")
            await expect(page.locator(".vmlist-count")).to_have_text(str(FLEET), timeout=60_000)
            idle = await _measure(page)

            rows = page.locator(".vmlist-spacer .vmrow")
            for i in range(CHARTS):
                await rows.nth(i).click()
            await expect(page.locator(".card")).to_have_count(CHARTS)
            stop = asyncio.Event()
            streaming = asyncio.create_task(_stream_events(up_process, ids, stop))
            await asyncio.sleep(2)  # charts filled, events flowing
            started = time.monotonic()
            loaded = await _measure(page)
            stop.set()
            sent = await streaming
            elapsed = time.monotonic() - started
            filter_ms = await page.evaluate(_FILTER_JS, "extra-vm-09")
            await page.evaluate(_FILTER_JS, "")
            scroll_ms = await page.evaluate(_SCROLL_JS)
            dom_rows = await rows.count()
            points = await page.locator(".card .points").evaluate_all(
                "els => els.map(e => Number(e.dataset.points))"
            )
        finally:
            await browser.close()

    print(f"\ndashboard, {FLEET} VMs in the list, measured {MEASURE_S:.0f} s each:")
    print(f"  idle page (peer):            {idle}")
    print(f"  {CHARTS} charts + {sent / elapsed:.0f} vms events/s: {loaded}")
    print(f"  p95 frame ratio loaded/idle: {loaded['p95_ms'] / idle['p95_ms']:.2f}")
    print(f"  filter 1,000 -> 80 rows: {filter_ms:.1f} ms; scroll to row 1,000: {scroll_ms:.1f} ms")
    print(f"  rows in the DOM: {dom_rows}; chart points: min {min(points)} max {max(points)}")
    assert dom_rows < 80, "the list must stay virtualised"
    assert min(points) > 0, "every chart receives points"
    # Responsive on this shared 2-core machine: the median frame within two vsyncs
    # (30 fps and better), the filter and a scroll to the end answered within 200 ms.
    # (p95 frames are printed above: on a loaded machine they reach 100-150 ms.)
    assert loaded["p50_ms"] <= 34 and filter_ms < 200 and scroll_ms < 200, loaded
