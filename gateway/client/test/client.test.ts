/**
 * The client against the real gateway of a real `vmpulse up` (harness.ts):
 * real Kafka broker, worker, Socket.IO server and simulated guests. Nothing
 * here is mocked; events are published with `vmpulse emit`.
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { applyMiddleware, legacy_createStore as createStore } from "redux";

import {
  AUTH_FAILED,
  connect,
  ConnectionRefused,
  HttpError,
  realtimeActions,
  realtimeMiddleware,
  type MetricsUpdate,
  type ResourceEvent,
  type ResyncEvent,
  type StateChange,
  type TokenReason,
  type VmpulseClient,
  type VmSummary,
} from "../src/index.js";
import { emit, startUp, token, until, type Up } from "./harness.js";

let up: Up;
let vms: VmSummary[];
let adminToken: string;
const clients: VmpulseClient[] = [];

function open(options: Parameters<typeof connect>[1]): VmpulseClient {
  const client = connect(up.url, { ...options, io: { transports: ["websocket"], ...options.io } });
  clients.push(client);
  return client;
}

// The worker sends a VM's live sample at most once a second (VMPULSE_LIVE_INTERVAL_MS).
const LIVE_MS = 1_000;

/** Samples of one VM in order; a sample is never repeated and none is missing. */
function assertContiguous(samples: MetricsUpdate[], intervalMs: number): void {
  const times = samples.map((s) => Date.parse(s.timestamp));
  for (let i = 1; i < times.length; i++) {
    const step = (times[i] as number) - (times[i - 1] as number);
    assert.ok(step > 0, `sample ${i} repeats or goes back (${samples[i]?.timestamp})`);
    assert.ok(step < intervalMs * 2.5, `gap of ${step} ms before sample ${i}`);
  }
}

before(async () => {
  up = await startUp();
  adminToken = await token(up, "admin");
  const admin = open({ token: adminToken });
  vms = await admin.http.listVms();
  admin.close();
});

after(async () => {
  for (const client of clients) client.close();
  await up.stop();
});

describe("connecting", () => {
  test("connected carries the user and the namespace, and the state is connected", async () => {
    const states: string[] = [];
    const client = open({ token: adminToken });
    client.on("state", (change: StateChange) => states.push(change.state));
    await client.ready();
    assert.equal(client.user?.id, "admin");
    assert.match(client.namespace ?? "", /^user_[0-9a-f]{20}$/);
    assert.ok(client.position, "a fresh connection starts at a position");
    assert.deepEqual(states, ["connected"]);
  });

  test("a bad token is refused with the server's message", async () => {
    const client = open({ token: "not-a-jwt" });
    await assert.rejects(client.ready(), (err: Error) => {
      assert.ok(err instanceof ConnectionRefused);
      assert.equal(err.message, AUTH_FAILED);
      return true;
    });
    assert.equal(client.state, "refused");
  });

  test("a user the directory does not know is refused as such", async () => {
    const client = open({ token: await token(up, "mallory") });
    await assert.rejects(client.ready(), /User not found/);
  });
});

describe("subscriptions", () => {
  test("subscribe brings live metrics of that VM only; recentMetrics answers from the buffer", async () => {
    const vm = vms[0] as VmSummary;
    const client = open({ token: adminToken });
    const got: MetricsUpdate[] = [];
    client.on("metricsUpdate", (m) => got.push(m));
    await client.subscribe(vm.id);
    await until(() => got.length >= 3, 15_000, "3 live samples");
    assert.deepEqual(new Set(got.map((m) => m.vmId)), new Set([vm.id]));
    assert.equal(typeof got[0]?.metrics.cpu?.usage_percent, "number");
    const recent = await client.recentMetrics(vm.id, 5);
    assert.ok(recent.length >= 1 && recent.length <= 5);
    assert.equal(recent[0]?.vmId, vm.id);
    assert.deepEqual([...client.watched], [vm.id]);
  });

  test("the server's refusals reject the promise: another department's VM, an unknown VM", async () => {
    const carolsVm = vms.find((v) => v.owner === "carol") as VmSummary;
    const client = open({ token: await token(up, "alice") });
    await assert.rejects(client.subscribe(carolsVm.id), /^VmpulseError: Access denied$/);
    await assert.rejects(client.subscribe("no-such-vm"), /Access denied/);
    await assert.rejects(client.recentMetrics(carolsVm.id), /Access denied/);
    assert.equal(client.watched.size, 0, "refused VMs are not kept as watched");
  });
});

describe("resource events", () => {
  test("on(resource, action) and on(resource) receive an emitted event; other resources do not", async () => {
    const vm = vms.find((v) => v.owner === "alice") as VmSummary;
    const client = open({ token: await token(up, "alice") });
    const exact: ResourceEvent[] = [];
    const anyAction: ResourceEvent[] = [];
    const alerts: ResourceEvent[] = [];
    client.on("vms", "update", (e) => exact.push(e));
    client.on("vms", (e) => anyAction.push(e));
    client.on("alerts", (e) => alerts.push(e));
    await client.ready();
    const marker = `m-${Date.now()}`;
    await emit(up, "vms", "update", { vmId: vm.id, marker }, "admin");
    const event = await until(
      () => exact.find((e) => (e.payload.data as { marker?: string }).marker === marker),
      10_000,
      "the emitted vms:update",
    );
    assert.deepEqual(event.scope, { kind: "user" });
    assert.equal(event.name, `${client.namespace}:vms:update`);
    assert.equal(event.payload.status, "success");
    assert.ok(anyAction.some((e) => e.payload.id === event.payload.id));
    assert.equal(alerts.length, 0);
  });
});

describe("resume", () => {
  test("after the transport drops, missed metrics are replayed once, in order, with no gap", async () => {
    const vm = vms[1] as VmSummary;
    const client = open({ token: adminToken });
    const got: MetricsUpdate[] = [];
    const resumed: unknown[] = [];
    const resyncs: unknown[] = [];
    const states: string[] = [];
    const events: ResourceEvent[] = [];
    client.on("metricsUpdate", (m) => {
      if (m.vmId === vm.id) got.push(m);
    });
    client.on("resumed", (e) => resumed.push(e));
    client.on("resync", (e) => resyncs.push(e));
    client.on("state", (s) => states.push(s.state));
    client.on("vms", "update", (e) => events.push(e));
    await client.subscribe(vm.id);
    await until(() => got.length >= 3, 15_000, "live samples before the drop");

    // An outage of 3 s (the reconnection waits that long): without the replay,
    // three live samples would be missing and assertContiguous would see the gap.
    const manager = client.socket.io;
    manager.randomizationFactor(0);
    manager.reconnectionDelay(3_000);
    const marker = `r-${Date.now()}`;
    const published = emit(up, "vms", "update", { vmId: vm.id, marker }, "admin");
    manager.engine.close();
    await until(() => states.includes("resuming"), 5_000, "the resuming state");
    await published;
    await until(() => resumed.length === 1, 20_000, "resumed");
    const countAtResume = got.length;
    await until(() => got.length >= countAtResume + 3, 15_000, "live samples after resuming");

    assert.equal(resyncs.length, 0);
    assert.ok((resumed[0] as { replayed: number }).replayed > 0, "nothing was replayed");
    assert.deepEqual((resumed[0] as { vmIds: string[] }).vmIds, [vm.id]);
    assertContiguous(got, LIVE_MS);
    const mine = events.filter((e) => (e.payload.data as { marker?: string }).marker === marker);
    assert.equal(mine.length, 1, "the event published during the outage arrives exactly once");
    assert.equal(client.state, "connected");
  });

  test("a position the server cannot serve gives resync, onResync runs, then connected", async () => {
    const vm = vms[0] as VmSummary;
    let reloaded: ResyncEvent | null = null;
    const states: string[] = [];
    const client = open({
      token: adminToken,
      position: "not-a-position",
      vmIds: [vm.id],
      onResync: async (e) => {
        reloaded = e;
        await client.http.listVms();
      },
      autoConnect: false,
    });
    client.on("state", (s) => states.push(s.state));
    client.open();
    await client.ready();
    assert.equal((reloaded as ResyncEvent | null)?.reason, "invalid position");
    assert.deepEqual((reloaded as ResyncEvent | null)?.vmIds, [vm.id]);
    assert.deepEqual(states.slice(-2), ["resync", "connected"]);
    const got: MetricsUpdate[] = [];
    client.on("metricsUpdate", (m) => got.push(m));
    await until(() => got.length >= 1, 10_000, "metrics of the VM subscribed by the resync");
  });
});

describe("tokens", () => {
  test("the provider is asked again after Authentication failed, and the client connects", async () => {
    const reasons: TokenReason[] = [];
    const good = adminToken;
    const client = open({
      getToken: (reason) => {
        reasons.push(reason);
        return reasons.length === 1 ? "expired-or-garbage" : good;
      },
    });
    await client.ready();
    assert.deepEqual(reasons, ["initial", "rejected"]);
  });

  test("a short-lived token is renewed before exp without losing a sample", async () => {
    const vm = vms[2] as VmSummary;
    const reasons: TokenReason[] = [];
    const ended: unknown[] = [];
    const got: MetricsUpdate[] = [];
    // 0.002 h = 7.2 s: renewed when half of its life is left.
    const client = open({
      getToken: async (reason) => {
        reasons.push(reason);
        return token(up, "admin", reason === "initial" ? 0.002 : 1);
      },
    });
    client.on("session:ended", (e) => ended.push(e));
    client.on("metricsUpdate", (m) => got.push(m));
    await client.subscribe(vm.id);
    await until(() => reasons.includes("expiring"), 15_000, "the renewal before exp");
    await until(() => client.state === "connected" && got.length > 0, 10_000, "connected again");
    const count = got.length;
    await until(() => got.length >= count + 3, 10_000, "samples after the renewal");
    assert.deepEqual(ended, [], "the server never had to end the session");
    assert.deepEqual(reasons, ["initial", "expiring"]);
    assertContiguous(got, LIVE_MS);
  });
});

describe("HTTP helpers", () => {
  test("listVms shows each user what they may watch; admin overview is for admins", async () => {
    const alice = open({ token: await token(up, "alice"), autoConnect: false });
    const mine = await alice.http.listVms();
    assert.deepEqual(
      new Set(mine.map((v) => v.department)),
      new Set(["engineering"]),
      "alice sees her department's VMs only",
    );
    await assert.rejects(alice.http.adminOverview(), (err: Error) => {
      assert.ok(err instanceof HttpError);
      assert.equal(err.status, 403);
      assert.equal(err.message, "Admin role required");
      return true;
    });
    const admin = open({ token: adminToken, autoConnect: false });
    const overview = await admin.http.adminOverview();
    assert.ok((overview.gateway.eventsIn ?? 0) > 0);
    assert.equal(overview.dlq.error, null);
    assert.equal(typeof overview.dlq.scanned, "number");
    const history = await admin.http.history((vms[0] as VmSummary).id, {
      from: new Date(Date.now() - 3_600_000),
    });
    assert.equal(history.resolution, "raw");
    assert.equal(history.columns[0], "t");
    await assert.rejects(admin.http.history("no-such-vm"), /Access denied/);
  });
});

describe("redux adapter", () => {
  test("events become realtime/* actions; realtime/subscribe subscribes", async () => {
    const vm = vms[0] as VmSummary;
    const client = open({ token: adminToken });
    const seen: Array<{ type: string; payload?: unknown }> = [];
    const reducer = (state: number = 0, action: { type: string; payload?: unknown }) => {
      if (action.type.startsWith("realtime/")) seen.push(action);
      return state + 1;
    };
    const store = createStore(reducer, applyMiddleware(realtimeMiddleware(client)));
    store.dispatch(realtimeActions().subscribe(vm.id));
    await until(() => seen.some((a) => a.type === "realtime/metricsUpdate"), 15_000, "metrics action");
    const marker = `x-${Date.now()}`;
    await emit(up, "vms", "power_on", { vmId: vm.id, marker }, "admin");
    await until(
      () =>
        seen.some(
          (a) =>
            a.type === "realtime/vms/power_on" &&
            (a.payload as { data: { marker?: string } }).data.marker === marker,
        ),
      10_000,
      "realtime/vms/power_on",
    );
    assert.ok(seen.some((a) => a.type === "realtime/connected"));
    assert.ok(seen.some((a) => a.type === "realtime/state"));
    store.dispatch(realtimeActions().subscribe("no-such-vm"));
    await until(
      () => seen.some((a) => a.type === "realtime/subscribeFailed"),
      10_000,
      "subscribeFailed",
    );
  });
});
