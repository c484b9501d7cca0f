/**
 * The admin panel: this gateway's delivery figures and the DLQ counts by
 * reason, from `GET /api/admin/overview`, polled while the page is open.
 * Shown to admins only (the endpoint refuses everyone else anyway).
 */

import type { VmpulseClient } from "../../src/client.js";
import type { AdminOverview } from "../../src/types.js";
import { el } from "./frame.js";

const POLL_MS = 5_000;
const FIGURES: Array<[string, string]> = [
  ["connections", "Connections"],
  ["eventsIn", "Events in"],
  ["eventsOut", "Deliveries"],
  ["deliveriesFailed", "Failed deliveries"],
  ["consumerLag", "Consumer lag"],
  ["resumeHits", "Resumes served"],
  ["resumeMisses", "Resyncs"],
  ["replayedEvents", "Events replayed"],
];

function table(head: string[], rows: string[][], className: string): HTMLTableElement {
  const t = el("table", className);
  const thead = el("thead");
  const tr = el("tr");
  for (const h of head) tr.append(el("th", "", h));
  thead.append(tr);
  const tbody = el("tbody");
  for (const row of rows) {
    const r = el("tr");
    row.forEach((cell, i) => r.append(el("td", i > 0 ? "num" : "", cell)));
    tbody.append(r);
  }
  t.append(thead, tbody);
  return t;
}

const n = (x: number) => x.toLocaleString("en-US");

export class AdminPanel {
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly root: HTMLElement,
    private readonly client: VmpulseClient,
  ) {}

  start(): void {
    this.root.hidden = false;
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), POLL_MS);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.root.hidden = true;
  }

  async refresh(): Promise<void> {
    const body = this.root.querySelector(".admin-body") as HTMLElement;
    let overview: AdminOverview;
    try {
      overview = await this.client.http.adminOverview();
    } catch (err) {
      body.replaceChildren(el("p", "admin-error", (err as Error).message));
      return;
    }
    const figures = el("dl", "figures");
    for (const [key, label] of FIGURES) {
      const box = el("div", "figure");
      box.append(el("dt", "", label), el("dd", "", n(overview.gateway[key] ?? 0)));
      figures.append(box);
    }
    const users = Object.entries(overview.deliveries);
    const deliveries =
      users.length === 0
        ? el("p", "muted", "No events delivered to users yet.")
        : table(
            ["User", "Delivered", "Failed", "Success"],
            users.map(([user, d]) => [user, n(d.delivered), n(d.failed), `${(d.successRate * 100).toFixed(1)} %`]),
            "deliveries",
          );
    const reasons = Object.entries(overview.dlq.counts);
    const dlqNote = overview.dlq.error
      ? overview.dlq.error
      : `last ${n(overview.dlq.scanLimitPerPartition)} per partition · ${n(overview.dlq.scanned)} read`;
    const dlq =
      reasons.length === 0
        ? el("p", "muted", overview.dlq.error ?? "No rejected agent lines.")
        : table(["Reason", "Lines"], reasons.map(([reason, count]) => [reason, n(count)]), "dlq");
    body.replaceChildren(
      figures,
      el("h3", "", "Deliveries by user"),
      deliveries,
      el("h3", "", "Dead-letter queue by reason"),
      dlq,
      el("p", "muted small", dlqNote),
    );
  }
}
