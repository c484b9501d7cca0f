/**
 * The VM list's data: every VM the user may watch, sorted by name, filtered by
 * the search box, updated in place by `vms` events. Pure (no DOM), so the
 * rules are tested in Node and the view only draws `rows()`.
 */

import type { VmSummary } from "../../src/types.js";

/** Which `vms` actions change the set of VMs (the list is then read again over HTTP). */
const MEMBERSHIP_ACTIONS = new Set(["create", "delete"]);

export interface VmEventData {
  vmId?: unknown;
  id?: unknown;
  powerState?: unknown;
  agentState?: unknown;
}

export class Fleet {
  private readonly byId = new Map<string, VmSummary>();
  private sorted: VmSummary[] = [];
  private visible: VmSummary[] = [];
  private query = "";
  /** Bumped on every change, so a view redraws only when something changed. */
  version = 0;

  load(vms: readonly VmSummary[]): void {
    this.byId.clear();
    for (const vm of vms) this.byId.set(vm.id, { ...vm });
    this.sorted = [...this.byId.values()].sort(
      (a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id),
    );
    this.refilter();
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: string): VmSummary | undefined {
    return this.byId.get(id);
  }

  /** The VMs matching the filter, in display order. */
  rows(): readonly VmSummary[] {
    return this.visible;
  }

  setFilter(text: string): void {
    const query = text.trim().toLowerCase();
    if (query === this.query) return;
    this.query = query;
    this.refilter();
  }

  /**
   * Apply a `vms` event. Returns "reload" when the set of VMs changed (the
   * directory, not the event, says who may see a new VM), true when a row
   * changed, false when the event is about nothing shown.
   */
  apply(action: string, data: unknown, at: string): boolean | "reload" {
    if (MEMBERSHIP_ACTIONS.has(action)) return "reload";
    if (data === null || typeof data !== "object") return false;
    const d = data as VmEventData;
    const id = typeof d.vmId === "string" ? d.vmId : typeof d.id === "string" ? d.id : null;
    const vm = id === null ? undefined : this.byId.get(id);
    if (vm === undefined) return false;
    let changed = false;
    if (typeof d.powerState === "string" && d.powerState !== vm.powerState) {
      vm.powerState = d.powerState;
      changed = true;
    }
    if (typeof d.agentState === "string" && d.agentState !== vm.agentState) {
      vm.agentState = d.agentState;
      changed = true;
    }
    if (changed) {
      vm.stateUpdatedAt = at;
      this.version++;
    }
    return changed;
  }

  private refilter(): void {
    const q = this.query;
    this.visible = q
      ? this.sorted.filter((vm) =>
          [vm.name, vm.id, vm.owner ?? "", vm.department ?? "", vm.powerState ?? "", vm.agentState ?? ""]
            .some((field) => field.toLowerCase().includes(q)),
        )
      : this.sorted;
    this.version++;
  }
}

/** The first and last row (exclusive) to draw for a scroll position: what is seen, plus a margin. */
export function visibleRange(
  scrollTop: number,
  viewportHeight: number,
  rowHeight: number,
  total: number,
  overscan = 8,
): [number, number] {
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(total, Math.ceil((scrollTop + viewportHeight) / rowHeight) + overscan);
  return [first, Math.max(first, last)];
}
