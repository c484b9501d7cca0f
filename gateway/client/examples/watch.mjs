// Watch a vmpulse gateway from Node.js: the VMs you may see, their events, one VM's live metrics.
// Run: VMPULSE_URL=http://127.0.0.1:8080 VMPULSE_TOKEN=$(vmpulse token --user admin) node examples/watch.mjs
import { connect } from "@vmpulse/client";

const client = connect(process.env.VMPULSE_URL ?? "http://127.0.0.1:8080", {
  // Asked at start, before the token's exp, and after "Authentication failed".
  getToken: async (reason) => {
    if (reason !== "initial") console.log(`token asked again (${reason})`);
    return process.env.VMPULSE_TOKEN;
  },
  // The server could not replay what we missed: read the state again over HTTP.
  onResync: async ({ reason }) => {
    console.log(`resync (${reason}): ${(await client.http.listVms()).length} VMs`);
  },
});

client.on("state", ({ state, message }) => console.log(`connection: ${state}`, message ?? ""));
client.on("vms", (event) => console.log(`vms:${event.action}`, JSON.stringify(event.payload.data)));
client.on("alerts", "create", (event) => console.log("alert opened", event.payload.data));

await client.ready();
console.log(`signed in as ${client.user.id} (${client.user.role})`);
const vms = await client.http.listVms();
console.log(`${vms.length} VMs: ${vms.map((vm) => vm.name).join(", ")}`);

const vm = vms[0];
await client.subscribe(vm.id);
const recent = await client.recentMetrics(vm.id, 5);
console.log(`${vm.name}: ${recent.length} recent samples`);

let live = 0;
client.on("metricsUpdate", ({ vmId, metrics, timestamp }) => {
  if (vmId !== vm.id) return;
  console.log(`${timestamp} ${vm.name} cpu ${metrics.cpu?.usage_percent}%`);
  if (++live === 3) client.close();
});
