/**
 * The live feed: resource events and alerts as they arrive, newest on top.
 * New entries are added to the DOM once per frame, and the list is trimmed
 * to the model's limit, so a burst of events costs one layout.
 */

import type { FeedEntry, FeedLog } from "../model/feed.js";
import { el, formatTime, type Frame } from "./frame.js";

export class FeedView {
  private readonly list: HTMLElement;
  private readonly count: HTMLElement;
  private readonly empty: HTMLElement;
  private pending: FeedEntry[] = [];
  private readonly draw = () => this.render();

  constructor(
    root: HTMLElement,
    private readonly log: FeedLog,
    private readonly frame: Frame,
    private readonly limit = 150,
  ) {
    this.list = root.querySelector(".feed-list") as HTMLElement;
    this.count = root.querySelector(".feed-count") as HTMLElement;
    this.empty = root.querySelector(".feed-empty") as HTMLElement;
  }

  added(entry: FeedEntry | null): void {
    if (entry === null) return;
    this.pending.push(entry);
    this.frame.schedule(this.draw);
  }

  private render(): void {
    const fresh = this.pending;
    this.pending = [];
    const fragment = document.createDocumentFragment();
    for (let i = fresh.length - 1; i >= 0; i--) fragment.append(this.item(fresh[i] as FeedEntry));
    this.list.prepend(fragment);
    while (this.list.childElementCount > this.limit) this.list.lastElementChild?.remove();
    const count = String(this.log.entries.length);
    if (this.count.textContent !== count) this.count.textContent = count;
    this.empty.hidden = this.list.childElementCount > 0;
  }

  private item(entry: FeedEntry): HTMLElement {
    const li = el("li", `feed-item ${entry.kind}`);
    if (entry.id !== null) li.dataset.eventId = entry.id;
    if (entry.resource !== null) li.dataset.resource = entry.resource;
    if (entry.action !== null) li.dataset.action = entry.action;
    if (entry.vmId !== null) li.dataset.vmId = entry.vmId;
    li.append(
      el("time", "feed-time", formatTime(entry.time)),
      el("span", "feed-title", entry.title),
      el("span", "feed-detail", entry.detail),
    );
    return li;
  }
}
