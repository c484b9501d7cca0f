// Load client for the gateway benchmark: N websocket Socket.IO clients, each
// subscribed to one VM room, recording the latency of every metricsUpdate from
// the time its producer wrote it (data.sentAt, epoch ms; same machine clock).
// Prints READY once every client is connected and subscribed; then answers
// "report <phase>" lines on stdin with one JSON line of figures for that phase.
"use strict";
const { io } = require("socket.io-client");
const readline = require("readline");

const url = process.argv[2];
const clients = Number(process.argv[3]);
const vms = Number(process.argv[4]);
const token = process.argv[5] || "";
const phases = new Map();
const sockets = [];
let subscribed = 0;
let failed = 0;

function phase(name) {
  if (!phases.has(name)) phases.set(name, { count: 0, first: 0, last: 0, lat: [] });
  return phases.get(name);
}

function onUpdate(data) {
  const now = Date.now();
  const p = phase(data.phase || "none");
  if (p.count === 0) p.first = now;
  p.count += 1;
  p.last = now;
  p.lat.push(now - data.sentAt);
}

async function connectAll() {
  const batch = 200; // open in waves: a handshake storm only measures the accept queue
  for (let i = 0; i < clients; i += batch) {
    const wave = [];
    for (let j = i; j < Math.min(clients, i + batch); j++) {
      wave.push(new Promise((resolve) => {
        const s = io(url, { transports: ["websocket"], auth: { token }, reconnection: false, forceNew: true, timeout: 60000 });
        s.on("metricsUpdate", onUpdate);
        s.on("connect", () => {
          s.emit("subscribe", { vmId: "vm" + (j % vms) }, (ack) => {
            if (ack && ack.ok) subscribed += 1; else failed += 1;
            resolve();
          });
        });
        s.on("connect_error", (err) => { failed += 1; console.error("connect_error", err.message); resolve(); });
        sockets.push(s);
      }));
    }
    await Promise.all(wave);
  }
}

function report(name) {
  const p = phase(name);
  const lat = p.lat.slice().sort((a, b) => a - b);
  const q = (f) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(f * lat.length))] : null);
  const span = (p.last - p.first) / 1000;
  return { phase: name, received: p.count, seconds: span, perSecond: span > 0 ? p.count / span : null, p50: q(0.5), p99: q(0.99), max: lat.length ? lat[lat.length - 1] : null };
}

connectAll().then(() => {
  console.log(JSON.stringify({ ready: true, subscribed, failed }));
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === "report") console.log(JSON.stringify(report(arg)));
    if (cmd === "quit") { for (const s of sockets) s.close(); process.exit(0); }
  });
});
