/**
 * The gateway's HTTP API with the client's token: `GET /api/vms`, metric
 * history, recent metrics and the admin overview. Errors become `HttpError`
 * with the server's `{"error": message}` as the message. A 401 for a token
 * the server no longer accepts is retried once with a renewed token.
 */

import { AUTH_FAILED, HttpError } from "./errors.js";
import type { TokenKeeper } from "./token.js";
import type { AdminOverview, MetricHistory, MetricsUpdate, VmSummary } from "./types.js";

export interface HistoryQuery {
  /** ISO 8601 or a Date (default: one hour before `to`). */
  from?: string | Date;
  /** ISO 8601 or a Date (default: now). */
  to?: string | Date;
  /** Bucket width in seconds (the server picks the table by the range). */
  step?: number;
}

export class GatewayHttp {
  private readonly base: string;

  constructor(
    baseUrl: string,
    private readonly tokens: TokenKeeper,
    private readonly fetchImpl: typeof fetch = (...args) => fetch(...args),
  ) {
    this.base = baseUrl.replace(/\/+$/, "");
  }

  /** The VMs the user may watch, with owner, department and their latest states. */
  async listVms(): Promise<VmSummary[]> {
    const body = await this.get<{ vms: VmSummary[] }>("/api/vms");
    return body.vms;
  }

  /** History from the metric store; the range picks raw samples or a rollup. */
  history(vmId: string, query: HistoryQuery = {}): Promise<MetricHistory> {
    const params = new URLSearchParams();
    if (query.from !== undefined) params.set("from", isoTime(query.from));
    if (query.to !== undefined) params.set("to", isoTime(query.to));
    if (query.step !== undefined) params.set("step", String(Math.max(1, Math.round(query.step))));
    const qs = params.toString();
    return this.get(`/api/vms/${encodeURIComponent(vmId)}/metrics${qs ? `?${qs}` : ""}`);
  }

  /** The latest samples kept by the gateway (the same buffer as `metrics:recent`). */
  async recentMetrics(vmId: string, count = 100): Promise<MetricsUpdate[]> {
    const path = `/api/vms/${encodeURIComponent(vmId)}/metrics/recent?count=${count}`;
    const body = await this.get<{ samples: MetricsUpdate[] }>(path);
    return body.samples;
  }

  /** Delivery figures and DLQ counts by reason (admins only: 403 otherwise). */
  adminOverview(): Promise<AdminOverview> {
    return this.get("/api/admin/overview");
  }

  /** GET a JSON path of the gateway with the Bearer token. */
  async get<T>(path: string): Promise<T> {
    let response = await this.send(path, await this.tokens.get());
    if (response.status === 401 && this.tokens.renewable) {
      const message = await errorText(response.clone());
      if (message === AUTH_FAILED) response = await this.send(path, await this.tokens.renew("rejected"));
    }
    if (!response.ok) throw new HttpError(response.status, await errorText(response));
    return (await response.json()) as T;
  }

  private send(path: string, token: string): Promise<Response> {
    return this.fetchImpl(this.base + path, {
      headers: { Authorization: `Bearer ${token.replace(/^Bearer\s+/i, "")}`, Accept: "application/json" },
    });
  }
}

function isoTime(value: string | Date): string {
  return value instanceof Date ? value.toISOString() : value;
}

async function errorText(response: Response): Promise<string> {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as { error?: unknown };
    if (typeof body.error === "string") return body.error;
  } catch {
    // not JSON: fall through to the status line
  }
  return `HTTP ${response.status}${text ? `: ${text.slice(0, 200)}` : ""}`;
}
