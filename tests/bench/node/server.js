// Reference server for the gateway benchmark: the plain Node.js way to do what
// gateway/ does on its hot path. It reads every partition of events.outbound
// with kafkajs (its own consumer group, from the latest offsets) and emits each
// metrics event to its Socket.IO rooms; clients join vm:<id> with `subscribe`.
// No JWT check: authentication happens once per connection, not per event, and
// is not what this benchmark compares.
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, topic, port] = [process.env.BOOTSTRAP, process.env.TOPIC, Number(process.env.PORT)];
const server = http.createServer();
const io = new Server(server, { transports: ["websocket", "polling"], maxHttpBufferSize: 65536 });

io.on("connection", (socket) => {
  socket.on("subscribe", (data, ack) => {
    if (data && typeof data.vmId === "string") socket.join("vm:" + data.vmId);
    if (typeof ack === "function") ack({ ok: true, error: null });
  });
});

async function main() {
  const kafka = new Kafka({ clientId: "bench-node", brokers: [bootstrap], logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({ groupId: "bench-node-" + process.pid + "-" + Date.now() });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: false });
  let joined = false;
  consumer.on(consumer.events.GROUP_JOIN, () => { joined = true; });
  await consumer.run({
    eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
      for (const message of batch.messages) {
        let event;
        try { event = JSON.parse(message.value.toString()); } catch { continue; }
        if (event.resource === "metrics") {
          for (const room of event.rooms || []) io.to(room).emit("metricsUpdate", event.data);
        }
        resolveOffset(message.offset);
      }
      await heartbeat();
    },
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  while (!joined) await new Promise((r) => setTimeout(r, 50));
  console.log("READY");
}

main().catch((err) => { console.error(err); process.exit(1); });
process.on("SIGTERM", () => process.exit(0));
