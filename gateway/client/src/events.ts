/**
 * Resource event names and listeners, without regular expressions in the app.
 *
 * The server names a resource event `<namespace>:<resource>:<action>` (the
 * user's own room) or `vm:<id>:<resource>:<action>` (a watched VM's room).
 * Resource and action never contain `:` (lowercase words); a VM id may, so the
 * name is split from the right.
 */

import type { EventScope, ResourceEvent, ResourcePayload } from "./types.js";

const VM_PREFIX = "vm:";

/** Split a received event name; null when it is neither of the two forms for this user. */
export function parseEventName(
  name: string,
  namespace: string | null,
): { scope: EventScope; resource: string; action: string } | null {
  const last = name.lastIndexOf(":");
  if (last <= 0) return null;
  const middle = name.lastIndexOf(":", last - 1);
  if (middle <= 0) return null;
  const prefix = name.slice(0, middle);
  const resource = name.slice(middle + 1, last);
  const action = name.slice(last + 1);
  if (!resource || !action) return null;
  if (namespace !== null && prefix === namespace) {
    return { scope: { kind: "user" }, resource, action };
  }
  if (prefix.startsWith(VM_PREFIX) && prefix.length > VM_PREFIX.length) {
    return { scope: { kind: "vm", vmId: prefix.slice(VM_PREFIX.length) }, resource, action };
  }
  return null;
}

export type ResourceHandler<D = unknown> = (event: ResourceEvent<D>) => void;

/** Listeners by `resource:action`, with `*` for any resource or any action. */
export class ResourceListeners {
  private readonly byKey = new Map<string, Set<ResourceHandler>>();

  add(resource: string, action: string, handler: ResourceHandler): () => void {
    const key = `${resource}:${action}`;
    let set = this.byKey.get(key);
    if (set === undefined) {
      set = new Set();
      this.byKey.set(key, set);
    }
    set.add(handler);
    return () => {
      set.delete(handler);
      if (set.size === 0) this.byKey.delete(key);
    };
  }

  /** Call every matching handler; one that throws does not stop the others. */
  dispatch(name: string, parsed: NonNullable<ReturnType<typeof parseEventName>>, payload: ResourcePayload): void {
    const event: ResourceEvent = { ...parsed, name, payload };
    const { resource, action } = parsed;
    for (const key of [`${resource}:${action}`, `${resource}:*`, `*:${action}`, "*:*"]) {
      const set = this.byKey.get(key);
      if (set === undefined) continue;
      for (const handler of [...set]) safeCall(handler, event);
    }
  }
}

/** Run a listener; its exception is reported, never thrown into the socket's loop. */
export function safeCall<T>(handler: (value: T) => void, value: T): void {
  try {
    handler(value);
  } catch (err) {
    const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
    if (typeof report === "function") report(err);
    else console.error(err);
  }
}
