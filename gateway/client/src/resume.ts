/**
 * What the client must remember to resume (docs/SOCKETIO.md, "Resume"), as a
 * pure object: the last `position` received, the VMs the app watches, and
 * which of them the server has subscribed on the current connection.
 *
 * Rules it keeps:
 * - every payload that carries `position` moves it (resource events,
 *   `metricsUpdate`, `connected`, `resumed`, `resync`); it is opaque, never compared;
 * - a reconnection sends `{lastPosition, vmIds}`; the server then subscribes
 *   the allowed ones itself and lists them in `resumed`/`resync` (`vmIds`), so
 *   only the others are subscribed again, and `denied` ones are dropped;
 * - a fresh connection (no position sent, or the server greeted with one)
 *   subscribes nothing by itself: every watched VM is subscribed again.
 */

export interface AuthPayload {
  token: string;
  lastPosition?: string;
  vmIds?: string[];
}

export class ResumeState {
  position: string | null = null;
  /** The VMs the app wants to watch, in the order it asked. */
  readonly watched = new Set<string>();
  /** Subscribed by the server on the current connection. */
  readonly confirmed = new Set<string>();
  /** Whether the connection attempt in flight sent a position (a resume). */
  resuming = false;

  /** Note the position of any payload that carries one. */
  observe(payload: unknown): void {
    if (payload !== null && typeof payload === "object") {
      const position = (payload as { position?: unknown }).position;
      if (typeof position === "string" && position) this.position = position;
    }
  }

  /** The `auth` of the next connection attempt. */
  auth(token: string): AuthPayload {
    this.confirmed.clear();
    this.resuming = this.position !== null;
    if (!this.resuming) return { token };
    return { token, lastPosition: this.position as string, vmIds: [...this.watched] };
  }

  /**
   * `connected` arrived. Returns true when this is a fresh start (nothing will
   * be replayed; every watched VM must be subscribed), false when a
   * `resumed`/`resync` is to follow.
   */
  connected(position: string | undefined): boolean {
    if (position !== undefined || !this.resuming) {
      this.resuming = false;
      return true;
    }
    return false;
  }

  /** `resumed` or `resync` arrived: the server's subscriptions; returns the VMs to subscribe. */
  settled(vmIds: readonly string[], denied: readonly string[]): string[] {
    this.resuming = false;
    for (const id of denied) this.watched.delete(id);
    for (const id of vmIds) this.confirmed.add(id);
    return this.missing();
  }

  /** Watched VMs the server has not subscribed on this connection. */
  missing(): string[] {
    return [...this.watched].filter((id) => !this.confirmed.has(id));
  }
}
