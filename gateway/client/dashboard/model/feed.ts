/**
 * The live feed's entries: resource events and alerts, newest first, capped.
 *
 * An alert reaches its VM's owner and the admins in their own namespace, and
 * the VM's watchers in its room: a user who is both gets it twice, under two
 * names. The feed shows it once (the first copy). The same event twice on the
 * same channel is not merged: that would be a delivery fault, and the feed
 * shows what arrived.
 */

import type { ResourceEvent } from "../../src/types.js";

export type FeedKind = "event" | "alert-open" | "alert-resolved" | "system";

export interface FeedEntry {
  key: number;
  id: string | null;
  time: string;
  kind: FeedKind;
  title: string;
  detail: string;
  vmId: string | null;
  resource: string | null;
  action: string | null;
}

const ALERT_OPEN = new Set(["create", "open", "opened"]);
const ALERT_RESOLVED = new Set(["resolve", "resolved", "delete"]);
const MEMORY_OF_IDS = 5_000;

type Names = (vmId: string) => string | undefined;

function text(value: unknown): string | null {
  return typeof value === "string" && value ? value : null;
}

function summarize(event: ResourceEvent, vmName: Names): Pick<FeedEntry, "kind" | "title" | "detail" | "vmId"> {
  const data = (event.payload.data ?? {}) as Record<string, unknown>;
  const vmId = text(data.vmId) ?? (event.resource === "vms" ? text(data.id) : null);
  const vm = vmId === null ? null : vmName(vmId) ?? vmId;
  if (event.resource === "alerts") {
    const open = ALERT_OPEN.has(event.action);
    const resolved = ALERT_RESOLVED.has(event.action);
    const metric = text(data.metric) ?? text(data.rule) ?? "alert";
    const threshold = typeof data.threshold === "number" ? ` above ${data.threshold}` : "";
    const value = typeof data.value === "number" ? ` (now ${data.value})` : "";
    const mount = text(data.mount) ? ` on ${data.mount}` : "";
    return {
      kind: open ? "alert-open" : resolved ? "alert-resolved" : "event",
      title: `alert ${open ? "opened" : resolved ? "resolved" : event.action}`,
      detail: `${vm ?? "?"}: ${metric}${mount}${threshold}${value}`,
      vmId,
    };
  }
  const parts: string[] = [];
  if (vm !== null) parts.push(vm);
  const power = text(data.powerState);
  const agent = text(data.agentState);
  if (power !== null) parts.push(`power ${power}`);
  if (agent !== null) parts.push(`agent ${agent}`);
  if (parts.length === 0) {
    const name = text(data.name) ?? text(data.id) ?? text(data.userId) ?? text(data.departmentId);
    if (name !== null) parts.push(name);
  }
  return { kind: "event", title: `${event.resource} ${event.action}`, detail: parts.join(" · "), vmId };
}

export class FeedLog {
  /** Newest first. */
  readonly entries: FeedEntry[] = [];
  private nextKey = 1;
  private readonly channelOf = new Map<string, "user" | "vm">();

  constructor(private readonly limit = 300) {}

  /** Add a resource event; returns the new entry, or null for the second copy of an alert. */
  add(event: ResourceEvent, vmName: Names): FeedEntry | null {
    const id = event.payload.id;
    const channel = event.scope.kind;
    const seen = this.channelOf.get(id);
    if (seen !== undefined && seen !== channel) return null;
    if (seen === undefined) {
      this.channelOf.set(id, channel);
      if (this.channelOf.size > MEMORY_OF_IDS) {
        const oldest = this.channelOf.keys().next().value as string;
        this.channelOf.delete(oldest);
      }
    }
    return this.push({
      id,
      time: event.payload.timestamp,
      resource: event.resource,
      action: event.action,
      ...summarize(event, vmName),
    });
  }

  /** A line about the connection itself (resumed, resync). */
  system(title: string, detail: string, time = new Date().toISOString()): FeedEntry {
    return this.push({ id: null, time, kind: "system", title, detail, vmId: null, resource: null, action: null });
  }

  private push(fields: Omit<FeedEntry, "key">): FeedEntry {
    const entry = { key: this.nextKey++, ...fields };
    this.entries.unshift(entry);
    if (this.entries.length > this.limit) this.entries.length = this.limit;
    return entry;
  }
}
