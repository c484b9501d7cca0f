/** The dashboard's pure rules: the VM list, chart series, history ranges, the feed. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { FeedLog } from "../dashboard/model/feed.js";
import { Fleet, visibleRange } from "../dashboard/model/fleet.js";
import { describeSource, historyPoints, rangeQuery, samplePoint, Series } from "../dashboard/model/series.js";
import type { MetricHistory, ResourceEvent, VmSummary } from "../src/index.js";

function vm(id: string, name: string, owner = "alice", department = "eng"): VmSummary {
  return { id, name, owner, department, powerState: null, agentState: null, stateUpdatedAt: null };
}

test("Fleet sorts by name, filters on every column, and applies vms events in place", () => {
  const fleet = new Fleet();
  fleet.load([vm("b", "web-2"), vm("a", "web-1"), vm("c", "db-1", "carol", "finance")]);
  assert.deepEqual(fleet.rows().map((v) => v.id), ["c", "a", "b"]);
  fleet.setFilter("FINANCE");
  assert.deepEqual(fleet.rows().map((v) => v.id), ["c"]);
  fleet.setFilter("");
  const before = fleet.version;
  assert.equal(fleet.apply("power_on", { vmId: "a", powerState: "running" }, "t1"), true);
  assert.equal(fleet.get("a")?.powerState, "running");
  assert.equal(fleet.get("a")?.stateUpdatedAt, "t1");
  assert.ok(fleet.version > before);
  assert.equal(fleet.apply("update", { vmId: "a", powerState: "running" }, "t2"), false, "no change");
  assert.equal(fleet.apply("update", { id: "b", agentState: "offline" }, "t3"), true, "`id` names a VM too");
  assert.equal(fleet.apply("update", { vmId: "zzz", powerState: "running" }, "t4"), false);
  assert.equal(fleet.apply("update", "junk", "t5"), false);
  assert.equal(fleet.apply("create", { vmId: "d" }, "t6"), "reload");
  assert.equal(fleet.apply("delete", { vmId: "a" }, "t7"), "reload");
  fleet.setFilter("running");
  assert.deepEqual(fleet.rows().map((v) => v.id), ["a"], "states are searchable");
});

test("visibleRange draws what is seen plus a margin, within bounds", () => {
  assert.deepEqual(visibleRange(0, 300, 30, 1000), [0, 18]);
  assert.deepEqual(visibleRange(15_000, 300, 30, 1000), [492, 518]);
  assert.deepEqual(visibleRange(29_800, 300, 30, 1000), [985, 1000]);
  assert.deepEqual(visibleRange(0, 300, 30, 0), [0, 0]);
});

test("Series keeps points sorted and unique whatever the order they come in", () => {
  const s = new Series();
  s.addAll([
    { t: 10, cpu: 1, mem: 2 },
    { t: 30, cpu: 3, mem: 4 },
  ]);
  assert.equal(s.add({ t: 20, cpu: 5, mem: 6 }), true);
  assert.equal(s.add({ t: 30, cpu: 9, mem: 9 }), false, "a repeat is not added");
  assert.deepEqual(s.t, [10, 20, 30]);
  assert.deepEqual(s.cpu, [1, 5, 3]);
  s.dropBefore(15);
  assert.deepEqual(s.t, [20, 30]);
  assert.deepEqual(s.last, { t: 30, cpu: 3, mem: 4 });
});

test("samples and history rows become points; rollups borrow the memory total", () => {
  const p = samplePoint({
    vmId: "a",
    timestamp: "2026-01-01T00:00:01.000Z",
    metrics: { cpu: { usage_percent: 12.5 }, memory: { used_kb: 512, total_kb: 2048 } },
  });
  assert.deepEqual(p, { t: Date.parse("2026-01-01T00:00:01Z") / 1000, cpu: 12.5, mem: 25 });
  assert.equal(samplePoint({ vmId: "a", timestamp: "never", metrics: {} }), null);
  const rollup: MetricHistory = {
    vmId: "a",
    from: "",
    to: "",
    resolution: "1m",
    step: 60,
    source: "system_metrics_1m",
    columns: ["t", "cpu_avg", "cpu_max", "memory_used_kb_avg", "memory_used_kb_max", "memory_total_kb", "samples"],
    rows: [
      [60_000, 10.04, 20, 1024, 1024, null, 60],
      [120_000, null, null, null, null, null, 0],
    ],
  };
  assert.deepEqual(historyPoints(rollup, 4096), [
    { t: 60, cpu: 10, mem: 25 },
    { t: 120, cpu: null, mem: null },
  ]);
  assert.equal(historyPoints(rollup)[0]?.mem, null, "no total known: no memory %");
  assert.equal(describeSource("system_metrics_1h"), "1-hour rollup");
});

test("rangeQuery asks for about 720 buckets: raw for 1 h, rollups beyond 6 h", () => {
  const now = Date.UTC(2026, 0, 31);
  assert.equal(rangeQuery("1h", now).step, 5);
  assert.equal(rangeQuery("24h", now).step, 120);
  assert.equal(rangeQuery("30d", now).step, 3600);
  assert.equal(rangeQuery("7d", now).from.getTime(), now - 7 * 86_400_000);
});

function event(id: string, resource: string, action: string, scope: ResourceEvent["scope"], data: unknown): ResourceEvent {
  return {
    resource,
    action,
    scope,
    name: `x:${resource}:${action}`,
    payload: { status: "success", error: null, data, timestamp: "2026-01-01T00:00:00Z", id },
  };
}

test("FeedLog: an alert seen in the user's room and the VM's room shows once; repeats on one channel show", () => {
  const feed = new FeedLog(3);
  const names = (id: string) => (id === "vm-1" ? "web-1" : undefined);
  const alert = { vmId: "vm-1", metric: "cpu_usage_percent", threshold: 90, value: 97.5 };
  const opened = feed.add(event("e1", "alerts", "create", { kind: "user" }, alert), names);
  assert.equal(opened?.kind, "alert-open");
  assert.equal(opened?.detail, "web-1: cpu_usage_percent above 90 (now 97.5)");
  assert.equal(feed.add(event("e1", "alerts", "create", { kind: "vm", vmId: "vm-1" }, alert), names), null);
  assert.ok(feed.add(event("e1", "alerts", "create", { kind: "user" }, alert), names), "same channel twice is shown");
  const power = feed.add(event("e2", "vms", "power_on", { kind: "user" }, { vmId: "vm-1", powerState: "running" }), names);
  assert.equal(power?.detail, "web-1 · power running");
  feed.add(event("e3", "alerts", "resolve", { kind: "user" }, alert), names);
  assert.deepEqual(feed.entries.map((e) => e.id), ["e3", "e2", "e1"], "newest first, capped");
  assert.equal(feed.entries[0]?.kind, "alert-resolved");
});
