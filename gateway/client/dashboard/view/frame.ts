/**
 * One animation frame for all DOM work. Events may arrive by the hundred per
 * second (1,000 VMs, 20 charts); each view marks itself dirty and is drawn at
 * most once per frame, whatever the number of events in between.
 */

export class Frame {
  private readonly tasks = new Set<() => void>();
  private requested = false;

  /** Run `task` in the next frame; scheduling the same function twice runs it once. */
  schedule(task: () => void): void {
    this.tasks.add(task);
    if (this.requested) return;
    this.requested = true;
    requestAnimationFrame(() => this.run());
  }

  private run(): void {
    this.requested = false;
    const tasks = [...this.tasks];
    this.tasks.clear();
    for (const task of tasks) {
      try {
        task();
      } catch (err) {
        reportError(err);
      }
    }
  }
}

/** `document.createElement` with a class and text, the only way the views build nodes. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = "",
  text = "",
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

// One formatter for the page: toLocaleTimeString builds one per call, which showed in profiles.
const TIME = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
});

export function formatTime(iso: string | number): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return TIME.format(d);
}
