/**
 * Per-VM charts (uPlot): CPU % and memory % of one VM, live or over a range.
 *
 * Live: on open the chart is filled from the metric history of the last
 * minutes and the gateway's `metrics:recent` buffer, then every
 * `metricsUpdate` adds a point. A range (1 h, 24 h, 7 d, 30 d) reads the
 * history endpoint, which answers from the rollups for long ranges. Points are
 * added at once, but each chart is redrawn at most once per frame.
 */

import uPlot from "uplot";

import type { VmpulseClient } from "../../src/client.js";
import type { MetricsUpdate, VmSummary } from "../../src/types.js";
import {
  describeSource,
  historyPoints,
  RANGES,
  rangeQuery,
  samplePoint,
  Series,
  type RangeName,
} from "../model/series.js";
import { el, type Frame } from "./frame.js";

const LIVE_WINDOW_S = 10 * 60;
// A young series is not squeezed into the right edge of the 10-minute window.
const LIVE_MIN_WINDOW_S = 2 * 60;
const RECENT_COUNT = 600;
const CHART_HEIGHT = 150;
type Mode = "live" | RangeName;

class ChartCard {
  readonly root: HTMLElement;
  readonly series = new Series();
  mode: Mode = "live";
  private plot: uPlot | null = null;
  private readonly plotBox: HTMLElement;
  private readonly now: HTMLElement;
  private readonly points: HTMLElement;
  private readonly source: HTMLElement;
  private readonly buttons = new Map<Mode, HTMLButtonElement>();
  private loading = 0;
  /** The VM's memory size from its latest sample (the rollups do not keep it). */
  private memTotalKb: number | null = null;
  private note = "";
  private readonly draw = () => this.render();

  constructor(
    readonly vm: VmSummary,
    private readonly client: VmpulseClient,
    private readonly frame: Frame,
    onClose: () => void,
  ) {
    this.root = el("section", "card");
    this.root.dataset.vmId = vm.id;
    const head = el("header", "card-head");
    const title = el("div", "card-title");
    title.append(el("h3", "", vm.name || vm.id), el("span", "card-sub", `${vm.owner ?? "—"} · ${vm.department ?? "—"}`));
    const modes = el("div", "modes");
    for (const mode of ["live", ...Object.keys(RANGES)] as Mode[]) {
      const button = el("button", "mode", mode === "live" ? "Live" : mode);
      button.type = "button";
      button.dataset.mode = mode;
      button.addEventListener("click", () => void this.show(mode));
      this.buttons.set(mode, button);
      modes.append(button);
    }
    const close = el("button", "close", "×");
    close.type = "button";
    close.title = "Close chart";
    close.addEventListener("click", onClose);
    head.append(title, modes, close);
    this.plotBox = el("div", "plot");
    const foot = el("footer", "card-foot");
    this.now = el("span", "now");
    this.points = el("span", "points");
    this.source = el("span", "source");
    foot.append(this.now, this.points, this.source);
    this.root.append(head, this.plotBox, foot);
  }

  /** Build the plot once the card is in the document (uPlot needs its width). */
  mount(): void {
    const width = Math.max(240, this.plotBox.clientWidth);
    this.plot = new uPlot(
      {
        width,
        height: CHART_HEIGHT,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: true, range: (_u, min, max) => this.xRange(min, max) },
          y: { range: [0, 100] },
        },
        axes: [
          {
            stroke: "#475569",
            grid: { stroke: "#e2e8f0" },
            ticks: { stroke: "#cbd5e1" },
            space: 90, // px between time labels: "23:31:15" needs room
            values: (_u, splits) => {
              const seconds = splits.length > 1 && (splits[1] as number) - (splits[0] as number) < 60;
              return splits.map((s) => this.timeLabel(s, seconds));
            },
          },
          {
            stroke: "#475569",
            grid: { stroke: "#e2e8f0" },
            ticks: { stroke: "#cbd5e1" },
            size: 56,
            values: (_u, splits) => splits.map((x) => `${x} %`),
          },
        ],
        series: [
          {},
          // Points are drawn where the data is sparse (a young store over a long range).
          { label: "CPU %", stroke: "#2563eb", width: 1.5, fill: "rgba(37,99,235,0.08)", points: { size: 6 } },
          { label: "Memory %", stroke: "#16a34a", width: 1.5, points: { size: 6 } },
        ],
      },
      [[], [], []],
      this.plotBox,
    );
    void this.show("live");
  }

  /** Axis labels: the time of day for short spans, the date for days and weeks. */
  private timeLabel(epochS: number, seconds: boolean): string {
    const d = new Date(epochS * 1000);
    const two = (n: number) => String(n).padStart(2, "0");
    const hm = `${two(d.getHours())}:${two(d.getMinutes())}${seconds ? `:${two(d.getSeconds())}` : ""}`;
    if (this.mode === "live" || this.mode === "1h") return hm;
    const day = d.toLocaleDateString("en-US", { month: "short", day: "numeric" });
    return this.mode === "24h" ? (hm === "00:00" ? day : hm) : day;
  }

  resize(): void {
    if (this.plot === null) return;
    const width = Math.max(240, this.plotBox.clientWidth);
    if (width !== this.plot.width) this.plot.setSize({ width, height: CHART_HEIGHT });
  }

  private xRange(min: number, max: number): [number, number] {
    const nowS = Date.now() / 1000;
    if (this.mode === "live") {
      const first = this.series.t[0] ?? nowS;
      return [Math.max(nowS - LIVE_WINDOW_S, Math.min(first, nowS - LIVE_MIN_WINDOW_S)), nowS];
    }
    const span = RANGES[this.mode];
    return Number.isFinite(min) && Number.isFinite(max) ? [nowS - span, nowS] : [min, max];
  }

  /** A live sample: added in live mode, redrawn in the next frame. */
  live(sample: MetricsUpdate): void {
    this.noteTotal(sample);
    if (this.mode !== "live") return;
    const point = samplePoint(sample);
    if (point === null) return;
    this.series.add(point);
    this.frame.schedule(this.draw);
  }

  private noteTotal(sample: MetricsUpdate): void {
    const total = sample.metrics?.memory?.total_kb;
    if (typeof total === "number" && total > 0) this.memTotalKb = total;
  }

  /** Redraw a live chart so its window slides even when the VM is silent. */
  tick(): void {
    if (this.mode === "live") this.frame.schedule(this.draw);
  }

  async show(mode: Mode): Promise<void> {
    this.mode = mode;
    for (const [m, b] of this.buttons) b.classList.toggle("active", m === mode);
    this.series.clear();
    this.note = "loading…";
    const ticket = ++this.loading;
    this.frame.schedule(this.draw);
    const vmId = this.vm.id;
    if (mode === "live") {
      const now = Date.now();
      // Both at once: history covers the window, the buffer what storage has not yet written.
      const [history, recent] = await Promise.allSettled([
        this.client.http.history(vmId, { from: new Date(now - LIVE_WINDOW_S * 1000), to: new Date(now) }),
        this.client.recentMetrics(vmId, RECENT_COUNT),
      ]);
      if (ticket !== this.loading) return;
      if (history.status === "fulfilled") this.series.addAll(historyPoints(history.value));
      if (recent.status === "fulfilled") {
        for (const sample of recent.value) {
          this.noteTotal(sample);
          const p = samplePoint(sample);
          if (p !== null) this.series.add(p);
        }
      }
      const parts = ["live"];
      if (history.status === "rejected") parts.push(`history unavailable: ${(history.reason as Error).message}`);
      if (recent.status === "rejected") parts.push(`recent unavailable: ${(recent.reason as Error).message}`);
      this.note = parts.join(" · ");
    } else {
      try {
        if (this.memTotalKb === null) {
          const latest = await this.client.recentMetrics(vmId, 1).catch(() => []);
          for (const sample of latest) this.noteTotal(sample);
        }
        const history = await this.client.http.history(vmId, rangeQuery(mode, Date.now()));
        if (ticket !== this.loading) return;
        this.series.addAll(historyPoints(history, this.memTotalKb));
        this.note = `${mode} · ${describeSource(history.source)} (${history.source})`;
      } catch (err) {
        if (ticket !== this.loading) return;
        this.note = `history unavailable: ${(err as Error).message}`;
      }
    }
    this.frame.schedule(this.draw);
  }

  private render(): void {
    if (this.mode === "live") this.series.dropBefore(Date.now() / 1000 - LIVE_WINDOW_S - 60);
    const s = this.series;
    this.plot?.setData([s.t, s.cpu, s.mem]);
    const last = s.last;
    this.now.textContent =
      last === null
        ? "no data yet"
        : `CPU ${last.cpu === null ? "—" : last.cpu.toFixed(1)} % · Memory ${last.mem === null ? "—" : last.mem.toFixed(1)} %`;
    this.points.textContent = `${s.length} ${s.length === 1 ? "point" : "points"}`;
    this.points.dataset.points = String(s.length);
    this.source.textContent = this.note;
  }
}

export class Charts {
  private readonly cards = new Map<string, ChartCard>();
  private readonly empty: HTMLElement;
  private readonly count: HTMLElement;
  private readonly grid: HTMLElement;

  constructor(
    root: HTMLElement,
    private readonly client: VmpulseClient,
    private readonly frame: Frame,
    private readonly onChange: () => void,
  ) {
    this.grid = root.querySelector(".charts-grid") as HTMLElement;
    this.empty = root.querySelector(".charts-empty") as HTMLElement;
    this.count = root.querySelector(".charts-count") as HTMLElement;
    client.on("metricsUpdate", (m) => this.cards.get(m.vmId)?.live(m));
    new ResizeObserver(() => this.frame.schedule(() => this.resizeAll())).observe(this.grid);
    // The live window slides even when a VM sends nothing.
    setInterval(() => this.redrawLive(), 5_000);
  }

  isOpen(vmId: string): boolean {
    return this.cards.has(vmId);
  }

  get size(): number {
    return this.cards.size;
  }

  toggle(vm: VmSummary): void {
    if (this.cards.has(vm.id)) this.close(vm.id);
    else this.open(vm);
  }

  open(vm: VmSummary): void {
    if (this.cards.has(vm.id)) return;
    const card = new ChartCard(vm, this.client, this.frame, () => this.close(vm.id));
    this.cards.set(vm.id, card);
    this.grid.prepend(card.root);
    card.mount();
    this.client.subscribe(vm.id).catch((err: Error) => {
      card.root.classList.add("refused");
      card.root.querySelector(".source")!.textContent = `live refused: ${err.message}`;
    });
    this.updateCount();
  }

  close(vmId: string): void {
    const card = this.cards.get(vmId);
    if (card === undefined) return;
    this.cards.delete(vmId);
    card.root.remove();
    this.client.unsubscribe(vmId).catch(() => undefined);
    this.updateCount();
  }

  /** After a resync: fill every live chart again. */
  reload(): void {
    for (const card of this.cards.values()) if (card.mode === "live") void card.show("live");
  }

  private redrawLive(): void {
    for (const card of this.cards.values()) card.tick();
  }

  private resizeAll(): void {
    for (const card of this.cards.values()) card.resize();
  }

  private updateCount(): void {
    this.count.textContent = String(this.cards.size);
    this.empty.hidden = this.cards.size > 0;
    this.onChange();
  }
}
