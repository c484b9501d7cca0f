/**
 * Chart data for one VM: time (epoch seconds, as uPlot wants), CPU % and
 * memory %, kept sorted and without duplicate times, so history, the
 * `metrics:recent` buffer and live samples can be merged in any order.
 */

import type { MetricHistory, MetricsUpdate } from "../../src/types.js";

export interface Point {
  t: number; // epoch seconds
  cpu: number | null;
  mem: number | null;
}

export function percent(used: number | null | undefined, total: number | null | undefined): number | null {
  if (typeof used !== "number" || typeof total !== "number" || total <= 0) return null;
  return Math.round((used / total) * 1000) / 10;
}

/** A live or recent sample as a point; null when its time is unreadable. */
export function samplePoint(sample: MetricsUpdate): Point | null {
  const t = Date.parse(sample.timestamp) / 1000;
  if (!Number.isFinite(t)) return null;
  const cpu = sample.metrics?.cpu?.usage_percent;
  const memory = sample.metrics?.memory;
  return {
    t,
    cpu: typeof cpu === "number" ? cpu : null,
    mem: percent(memory?.used_kb, memory?.total_kb),
  };
}

/**
 * History rows (columns named by the server) as points: CPU and memory averages.
 * The rollups keep no memory total (`memory_total_kb` is null there), so the
 * VM's total from a recent sample, `knownTotalKb`, stands in for it.
 */
export function historyPoints(history: MetricHistory, knownTotalKb: number | null = null): Point[] {
  const col = (name: string) => history.columns.indexOf(name);
  const [t, cpu, used, total] = [col("t"), col("cpu_avg"), col("memory_used_kb_avg"), col("memory_total_kb")];
  if (t < 0) return [];
  const points: Point[] = [];
  for (const row of history.rows) {
    const ms = row[t];
    if (typeof ms !== "number") continue;
    const c = cpu < 0 ? null : row[cpu];
    points.push({
      t: ms / 1000,
      cpu: typeof c === "number" ? Math.round(c * 10) / 10 : null,
      mem: percent(used < 0 ? null : row[used], (total < 0 ? null : row[total]) ?? knownTotalKb),
    });
  }
  return points;
}

export class Series {
  t: number[] = [];
  cpu: Array<number | null> = [];
  mem: Array<number | null> = [];

  get length(): number {
    return this.t.length;
  }

  get last(): Point | null {
    const i = this.t.length - 1;
    return i < 0 ? null : { t: this.t[i] as number, cpu: this.cpu[i] ?? null, mem: this.mem[i] ?? null };
  }

  clear(): void {
    this.t = [];
    this.cpu = [];
    this.mem = [];
  }

  /** Add one point; the common case (newer than the last) is an append. Returns false for a repeat. */
  add(p: Point): boolean {
    const n = this.t.length;
    if (n === 0 || p.t > (this.t[n - 1] as number)) {
      this.t.push(p.t);
      this.cpu.push(p.cpu);
      this.mem.push(p.mem);
      return true;
    }
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.t[mid] as number) < p.t) lo = mid + 1;
      else hi = mid;
    }
    if (this.t[lo] === p.t) return false;
    this.t.splice(lo, 0, p.t);
    this.cpu.splice(lo, 0, p.cpu);
    this.mem.splice(lo, 0, p.mem);
    return true;
  }

  addAll(points: Iterable<Point>): number {
    let added = 0;
    for (const p of points) if (this.add(p)) added++;
    return added;
  }

  /** Forget points older than `minT` (seconds). */
  dropBefore(minT: number): void {
    let i = 0;
    while (i < this.t.length && (this.t[i] as number) < minT) i++;
    if (i === 0) return;
    this.t.splice(0, i);
    this.cpu.splice(0, i);
    this.mem.splice(0, i);
  }
}

/** The history ranges the dashboard offers, in seconds. */
export const RANGES = { "1h": 3_600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400 } as const;
export type RangeName = keyof typeof RANGES;

/**
 * The history request for a range: about 720 buckets whatever the range. The
 * server picks the table from the span: raw samples up to 6 h, the 1-minute
 * rollup up to 14 days, the 1-hour rollup beyond.
 */
export function rangeQuery(range: RangeName, nowMs: number): { from: Date; to: Date; step: number } {
  const span = RANGES[range];
  return {
    from: new Date(nowMs - span * 1000),
    to: new Date(nowMs),
    step: Math.max(1, Math.ceil(span / 720)),
  };
}

/** What the source table means to a person. */
export function describeSource(source: string): string {
  if (source.endsWith("_1m")) return "1-minute rollup";
  if (source.endsWith("_1h")) return "1-hour rollup";
  return "raw samples";
}
