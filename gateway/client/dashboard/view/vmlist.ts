/**
 * The VM list, virtualised: only the rows in view (plus a margin) exist in the
 * DOM, reused as the list scrolls, so 1,000 or 10,000 VMs cost the same to
 * draw. Rows are redrawn in the next frame when the fleet or the scroll
 * position changed, never per event.
 */

import { Fleet, visibleRange } from "../model/fleet.js";
import { el, type Frame } from "./frame.js";

const ROW_HEIGHT = 30;

function stateCell(value: string | null, kind: "power" | "agent"): HTMLSpanElement {
  const cell = el("span", `pill ${kind}-${value ?? "unknown"}`, value ?? "—");
  return cell;
}

export class VmList {
  private readonly scroller: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly count: HTMLElement;
  private drawnKey = "";
  private drawnCount = "";
  private readonly draw = () => this.render();

  constructor(
    root: HTMLElement,
    private readonly fleet: Fleet,
    private readonly frame: Frame,
    private readonly isOpen: (vmId: string) => boolean,
    onToggle: (vmId: string) => void,
  ) {
    this.scroller = root.querySelector(".vmlist-scroll") as HTMLElement;
    this.spacer = root.querySelector(".vmlist-spacer") as HTMLElement;
    this.count = root.querySelector(".vmlist-count") as HTMLElement;
    const filter = root.querySelector(".vmlist-filter") as HTMLInputElement;
    filter.addEventListener("input", () => {
      this.fleet.setFilter(filter.value);
      this.scroller.scrollTop = 0;
      this.invalidate();
    });
    this.scroller.addEventListener("scroll", () => this.frame.schedule(this.draw), { passive: true });
    this.spacer.addEventListener("click", (e) => {
      const row = (e.target as HTMLElement).closest<HTMLElement>(".vmrow");
      const id = row?.dataset.vmId;
      if (id) onToggle(id);
    });
    new ResizeObserver(() => this.frame.schedule(this.draw)).observe(this.scroller);
  }

  /** Something changed (fleet, open charts): redraw in the next frame. */
  invalidate(): void {
    this.frame.schedule(this.draw);
  }

  private render(): void {
    const rows = this.fleet.rows();
    const range = visibleRange(this.scroller.scrollTop, this.scroller.clientHeight, ROW_HEIGHT, rows.length);
    const count = rows.length === this.fleet.size ? `${rows.length}` : `${rows.length} of ${this.fleet.size}`;
    if (count !== this.drawnCount) {
      this.drawnCount = count;
      this.count.textContent = count;
      this.spacer.style.height = `${rows.length * ROW_HEIGHT}px`;
    }
    // Most changes (a state flip of a VM out of view) leave the drawn rows as they are:
    // then the DOM is not touched at all.
    let key = `${range[0]}:${range[1]}`;
    for (let i = range[0]; i < range[1]; i++) {
      const vm = rows[i];
      if (vm !== undefined) key += `|${vm.id}/${vm.powerState}/${vm.agentState}/${this.isOpen(vm.id) ? 1 : 0}`;
    }
    if (key === this.drawnKey) return;
    this.drawnKey = key;
    const fragment = document.createDocumentFragment();
    for (let i = range[0]; i < range[1]; i++) {
      const vm = rows[i];
      if (vm === undefined) continue;
      const row = el("div", `vmrow${this.isOpen(vm.id) ? " open" : ""}`);
      row.dataset.vmId = vm.id;
      row.style.transform = `translateY(${i * ROW_HEIGHT}px)`;
      row.title = vm.id;
      row.append(
        el("span", "vm-name", vm.name || vm.id),
        el("span", "vm-owner", vm.owner ?? "—"),
        el("span", "vm-dept", vm.department ?? "—"),
        stateCell(vm.powerState, "power"),
        stateCell(vm.agentState, "agent"),
      );
      fragment.append(row);
    }
    this.spacer.replaceChildren(fragment);
  }
}
