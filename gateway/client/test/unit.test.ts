/** The client's pure parts: event names, token expiry, the resume bookkeeping. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { parseEventName, refreshDelayMs, ResumeState, tokenExpiry } from "../src/index.js";

const NS = "user_0123456789abcdef0123";

test("event names split from the right: user namespace and VM rooms", () => {
  assert.deepEqual(parseEventName(`${NS}:vms:power_on`, NS), {
    scope: { kind: "user" },
    resource: "vms",
    action: "power_on",
  });
  assert.deepEqual(parseEventName("vm:a:b:c:alerts:create", NS), {
    scope: { kind: "vm", vmId: "a:b:c" },
    resource: "alerts",
    action: "create",
  });
  // another user's namespace, malformed names
  assert.equal(parseEventName("user_ffffffffffffffffffff:vms:update", NS), null);
  for (const bad of ["", "vms", "vms:update", `${NS}::update`, `${NS}:vms:`, "vm::alerts:create"]) {
    assert.equal(parseEventName(bad, NS), null, bad);
  }
});

function jwt(payload: object): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${part({ alg: "HS256" })}.${part(payload)}.sig`;
}

test("tokenExpiry reads exp, and nothing from what is not a JWT", () => {
  assert.equal(tokenExpiry(jwt({ sub: "a", exp: 1_900_000_000 })), 1_900_000_000);
  assert.equal(tokenExpiry(`Bearer ${jwt({ exp: 5 })}`), 5);
  assert.equal(tokenExpiry(jwt({ sub: "a" })), null);
  assert.equal(tokenExpiry(jwt({ exp: "soon" })), null);
  assert.equal(tokenExpiry("garbage"), null);
  assert.equal(tokenExpiry("a.%%%.c"), null);
});

test("refreshDelayMs: the margin before exp, at most half of the time left", () => {
  const now = 1_000_000;
  assert.equal(refreshDelayMs(now / 1000 + 3600, now, 60_000), 3_540_000);
  assert.equal(refreshDelayMs(now / 1000 + 8, now, 60_000), 4_000);
  assert.equal(refreshDelayMs(now / 1000 - 1, now, 60_000), 0);
});

test("ResumeState: fresh start, resume, settle with denied VMs", () => {
  const state = new ResumeState();
  state.watched.add("a");
  assert.deepEqual(state.auth("t"), { token: "t" });
  assert.equal(state.connected("p1"), true, "greeted with a position: fresh");
  assert.deepEqual(state.missing(), ["a"]);
  state.observe({ position: "p2" });
  state.observe({ nothing: 1 });
  state.observe(null);
  assert.equal(state.position, "p2");

  state.watched.add("b");
  state.watched.add("c");
  assert.deepEqual(state.auth("t"), { token: "t", lastPosition: "p2", vmIds: ["a", "b", "c"] });
  assert.equal(state.connected(undefined), false, "resuming: wait for resumed");
  assert.deepEqual(state.settled(["a"], ["b"]), ["c"]);
  assert.deepEqual([...state.watched], ["a", "c"]);
});
