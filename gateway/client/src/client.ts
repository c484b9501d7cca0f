/**
 * `connect(url, {token | getToken})`: one Socket.IO connection to the gateway,
 * with typed events, promise-based requests and resume built in.
 *
 * Resume: the client remembers the last `position` and the watched VM ids
 * (resume.ts) and sends them on every reconnection (`auth` is a function, so
 * each attempt sends the latest values). The server replays what was missed,
 * then `resumed`; or it sends `resync`, and the app reloads over HTTP
 * (`onResync`). Listeners see replayed events like live ones, in order.
 *
 * Tokens: with `getToken`, the provider is asked again shortly before the
 * token's `exp` (the connection is then renewed with a resume, so nothing is
 * lost), after `session:ended` for an expired token, and once after the server
 * answers `Authentication failed`.
 */

import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";

import {
  AUTH_FAILED,
  ConnectionRefused,
  TOKEN_EXPIRED,
  TOO_MANY,
  TOO_MANY_FOR_USER,
  VmpulseError,
} from "./errors.js";
import { parseEventName, ResourceListeners, safeCall, type ResourceHandler } from "./events.js";
import { GatewayHttp } from "./http.js";
import { ResumeState } from "./resume.js";
import { refreshDelayMs, TokenKeeper, tokenExpiry, type TokenProvider } from "./token.js";
import {
  CLIENT_EVENT_NAMES,
  type ClientEventName,
  type ClientEvents,
  type ConnectedEvent,
  type ConnectionState,
  type MetricsUpdate,
  type ResourcePayload,
  type ResumedEvent,
  type ResyncEvent,
  type SessionEndedEvent,
  type UserInfo,
} from "./types.js";

export interface ConnectOptions {
  /** A fixed JWT. Either this or `getToken`. */
  token?: string;
  /** Asked for a token at start, before `exp`, and after a refusal or expiry. */
  getToken?: TokenProvider;
  /** Called on `resync`, before the state returns to `connected`: reload what you show. */
  onResync?: (event: ResyncEvent) => void | Promise<void>;
  /** How long to wait for an acknowledgement (ms, default 10,000). */
  ackTimeoutMs?: number;
  /** Renew a token this long before its `exp` (ms, default 60,000; at most half of the time it has left). */
  tokenRefreshMarginMs?: number;
  /** Start connecting at once (default true); otherwise call `open()`. */
  autoConnect?: boolean;
  /** Resume from a position saved earlier (e.g. with a persisted store); default: start fresh. */
  position?: string;
  /** VMs to watch from the start (subscribed on connect, or resumed with `position`). */
  vmIds?: string[];
  /** Passed to socket.io-client (`transports`, `reconnectionDelayMax`, ...). */
  io?: Partial<ManagerOptions & SocketOptions>;
}

type Handler<K extends ClientEventName> = (event: ClientEvents[K]) => void;

// Refusals that are about load, not identity: try again after a pause.
const RETRY_LATER = new Set([TOO_MANY, TOO_MANY_FOR_USER]);
const RETRY_LATER_MS = 5_000;
const SERVER_DISCONNECT = "io server disconnect";

export class VmpulseClient {
  /** The underlying socket.io-client socket (an escape hatch; prefer the methods). */
  readonly socket: Socket;
  /** HTTP helpers with the same token (`/api/vms`, history, recent metrics, admin overview). */
  readonly http: GatewayHttp;

  private readonly tokens: TokenKeeper;
  private readonly resume = new ResumeState();
  private readonly resources = new ResourceListeners();
  private readonly handlers = new Map<ClientEventName, Set<(event: never) => void>>();
  private readonly ackTimeoutMs: number;
  private readonly refreshMarginMs: number;
  private readonly onResync: ConnectOptions["onResync"];
  private currentState: ConnectionState = "connecting";
  private currentUser: UserInfo | null = null;
  private currentNamespace: string | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private retriedAuth = false;
  private renewing = false;
  private readonly subscribing = new Map<string, Promise<void>>();
  private waiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];

  constructor(
    readonly url: string,
    options: ConnectOptions,
  ) {
    this.tokens = new TokenKeeper(options.getToken ?? null, options.token ?? null);
    this.ackTimeoutMs = options.ackTimeoutMs ?? 10_000;
    this.refreshMarginMs = options.tokenRefreshMarginMs ?? 60_000;
    this.onResync = options.onResync;
    this.http = new GatewayHttp(url, this.tokens);
    if (options.position) this.resume.position = options.position;
    for (const vmId of options.vmIds ?? []) this.resume.watched.add(vmId);
    this.socket = io(url, {
      reconnectionDelay: 500,
      reconnectionDelayMax: 5_000,
      ...options.io,
      autoConnect: false,
      auth: (cb: (data: object) => void) => {
        this.tokens.get().then(
          (token) => {
            this.scheduleRefresh(token);
            cb(this.resume.auth(token));
          },
          // No token, no connection: let the server refuse it with its own message.
          () => cb({}),
        );
      },
    });
    this.wire();
    if (options.autoConnect ?? true) this.open();
  }

  /** The connection's state (see `ConnectionState`). */
  get state(): ConnectionState {
    return this.currentState;
  }

  /** The user of the last `connected`, or null before it. */
  get user(): UserInfo | null {
    return this.currentUser;
  }

  /** The user's namespace (room name, prefix of resource event names). */
  get namespace(): string | null {
    return this.currentNamespace;
  }

  /** The resume cursor: the `position` of the last event received. */
  get position(): string | null {
    return this.resume.position;
  }

  /** The VM ids the app watches (kept across reconnections). */
  get watched(): ReadonlySet<string> {
    return this.resume.watched;
  }

  /** Connect (again, after `close()` or a refusal). */
  open(): void {
    if (this.currentState === "closed" || this.currentState === "refused") {
      this.setState(this.resume.position === null ? "connecting" : "resuming");
    }
    this.socket.connect();
  }

  /** Disconnect for good; pending requests are rejected. */
  close(): void {
    this.clearTimers();
    this.setState("closed");
    this.socket.disconnect();
    this.rejectWaiters(new VmpulseError("Client closed"));
  }

  /** Drop the connection and come back with a resume (e.g. after a token change). */
  reconnect(): void {
    this.renewing = true;
    this.socket.disconnect();
    this.renewing = false;
    this.setState(this.resume.position === null ? "connecting" : "resuming");
    this.socket.connect();
  }

  /** Listen to one of the client's own events. Returns a function that removes the listener. */
  on<K extends ClientEventName>(event: K, handler: Handler<K>): () => void;
  /** Listen to every action of a resource (`"*"`: every resource). */
  on<D = unknown>(resource: string, handler: ResourceHandler<D>): () => void;
  /** Listen to one action of a resource (`"*"` for either part matches all). */
  on<D = unknown>(resource: string, action: string, handler: ResourceHandler<D>): () => void;
  on(name: string, second: unknown, third?: unknown): () => void {
    if (typeof third === "function") {
      return this.resources.add(name, String(second), third as ResourceHandler);
    }
    if (typeof second !== "function") throw new TypeError("a handler is needed");
    if (CLIENT_EVENT_NAMES.has(name)) {
      const key = name as ClientEventName;
      let set = this.handlers.get(key);
      if (set === undefined) {
        set = new Set();
        this.handlers.set(key, set);
      }
      const handler = second as (event: never) => void;
      set.add(handler);
      return () => set.delete(handler);
    }
    return this.resources.add(name, "*", second as ResourceHandler);
  }

  /**
   * Watch a VM's live metrics (`metricsUpdate`) and room events. Resolves when
   * the server acknowledged; rejects with its error (`Access denied`, ...).
   * The VM stays watched across reconnections until `unsubscribe`.
   */
  subscribe(vmId: string): Promise<void> {
    this.resume.watched.add(vmId);
    // One request per VM at a time: the app and a reconnection may ask together.
    let pending = this.subscribing.get(vmId);
    if (pending === undefined) {
      pending = this.subscribeOnce(vmId).finally(() => this.subscribing.delete(vmId));
      this.subscribing.set(vmId, pending);
    }
    return pending;
  }

  private async subscribeOnce(vmId: string): Promise<void> {
    await this.ready();
    if (this.resume.confirmed.has(vmId)) return;
    try {
      await this.request("subscribe", { vmId });
    } catch (err) {
      if (!(err instanceof ConnectionRefused)) this.resume.watched.delete(vmId);
      throw err;
    }
    if (this.resume.watched.has(vmId)) this.resume.confirmed.add(vmId);
  }

  /** Stop watching a VM. */
  async unsubscribe(vmId: string): Promise<void> {
    this.resume.watched.delete(vmId);
    this.resume.confirmed.delete(vmId);
    if (this.currentState !== "connected") return;
    await this.request("unsubscribe", { vmId });
  }

  /** The latest samples of a VM the user may watch (oldest first), from the gateway's buffer. */
  async recentMetrics(vmId: string, count = 100): Promise<MetricsUpdate[]> {
    await this.ready();
    const ack = await this.request("metrics:recent", { vmId, count });
    return (ack.samples as MetricsUpdate[] | undefined) ?? [];
  }

  /** Resolves when the connection is live (resume finished); rejects if refused, ended or closed. */
  ready(): Promise<void> {
    if (this.currentState === "connected") return Promise.resolve();
    if (this.isFinal()) return Promise.reject(this.finalError());
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private lastMessage: string | undefined;

  private isFinal(): boolean {
    return (
      this.currentState === "refused" ||
      this.currentState === "ended" ||
      this.currentState === "closed"
    );
  }

  private finalError(): Error {
    const message = this.lastMessage ?? `connection ${this.currentState}`;
    return this.currentState === "refused"
      ? new ConnectionRefused(message)
      : new VmpulseError(message);
  }

  private async request(
    event: string,
    body: Record<string, unknown>,
  ): Promise<Record<string, unknown>> {
    let ack: unknown;
    try {
      ack = await this.socket.timeout(this.ackTimeoutMs).emitWithAck(event, body);
    } catch {
      throw new VmpulseError(`No answer to ${event} within ${this.ackTimeoutMs} ms`);
    }
    const result = (ack ?? {}) as { ok?: unknown; error?: unknown };
    if (result.ok !== true) {
      throw new VmpulseError(typeof result.error === "string" ? result.error : `${event} failed`);
    }
    return result as Record<string, unknown>;
  }

  private emitLocal<K extends ClientEventName>(event: K, payload: ClientEvents[K]): void {
    const set = this.handlers.get(event);
    if (set === undefined) return;
    for (const handler of [...set]) safeCall(handler as Handler<K>, payload);
  }

  private setState(state: ConnectionState, message?: string): void {
    const previous = this.currentState;
    if (message !== undefined) this.lastMessage = message;
    if (state === previous) return;
    this.currentState = state;
    const change = message === undefined ? { state, previous } : { state, previous, message };
    this.emitLocal("state", change);
    if (state === "connected") {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w.resolve();
    } else if (this.isFinal()) {
      this.rejectWaiters(this.finalError());
    }
  }

  private rejectWaiters(err: Error): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }

  private wire(): void {
    const socket = this.socket;
    socket.onAny((name: string, payload: unknown) => this.receive(name, payload));
    socket.on("connect_error", (err: Error) => this.connectError(err));
    socket.on("disconnect", (reason: string) => {
      this.resume.confirmed.clear();
      if (this.renewing || this.isFinal()) return;
      this.setState(this.resume.position === null ? "connecting" : "resuming");
      // The server said goodbye (shutdown, restart): socket.io-client would not come back.
      if (reason === SERVER_DISCONNECT) this.retryAfter(this.resumeDelayMs());
    });
  }

  private resumeDelayMs(): number {
    return 200 + Math.floor(Math.random() * 800);
  }

  private receive(name: string, payload: unknown): void {
    this.resume.observe(payload);
    switch (name) {
      case "connected":
        return this.onConnected(payload as ConnectedEvent);
      case "metricsUpdate":
        return this.emitLocal("metricsUpdate", payload as MetricsUpdate);
      case "resumed":
        return this.onSettled("resumed", payload as ResumedEvent);
      case "resync":
        return this.onSettled("resync", payload as ResyncEvent);
      case "session:ended":
        return this.onSessionEnded(payload as SessionEndedEvent);
    }
    const parsed = parseEventName(name, this.currentNamespace);
    if (parsed !== null && payload !== null && typeof payload === "object") {
      this.resources.dispatch(name, parsed, payload as ResourcePayload);
    }
  }

  private onConnected(event: ConnectedEvent): void {
    this.retriedAuth = false;
    this.currentUser = event.user;
    this.currentNamespace = event.namespace;
    const fresh = this.resume.connected(event.position);
    this.emitLocal("connected", event);
    if (fresh) {
      this.setState("connected");
      this.resubscribe(this.resume.missing());
    }
  }

  private onSettled(kind: "resumed" | "resync", event: ResumedEvent | ResyncEvent): void {
    const missing = this.resume.settled(event.vmIds ?? [], event.denied ?? []);
    if (kind === "resumed") {
      this.emitLocal("resumed", event as ResumedEvent);
      this.setState("connected");
      this.resubscribe(missing);
      return;
    }
    const resync = event as ResyncEvent;
    this.setState("resync", resync.reason);
    this.emitLocal("resync", resync);
    void (async () => {
      try {
        await this.onResync?.(resync);
      } catch (err) {
        safeCall(() => {
          throw err;
        }, undefined);
      }
      if (this.currentState === "resync") this.setState("connected");
      this.resubscribe(missing);
    })();
  }

  private resubscribe(vmIds: string[]): void {
    for (const vmId of vmIds) {
      // Failures (access lost meanwhile) drop the VM from the watched set.
      this.subscribe(vmId).catch(() => undefined);
    }
  }

  private onSessionEnded(event: SessionEndedEvent): void {
    this.emitLocal("session:ended", event);
    if (event.reason === TOKEN_EXPIRED && this.tokens.renewable) {
      this.setState("resuming", event.reason);
      this.tokens.renew("expired").then(
        () => this.retryAfter(0),
        (err: unknown) => this.setState("ended", String(err)),
      );
      return;
    }
    this.clearTimers();
    this.setState("ended", event.reason);
  }

  private connectError(err: Error): void {
    // socket.active: socket.io-client keeps retrying by itself (a transport
    // error); otherwise the server refused the CONNECT, and retrying is ours.
    if (this.socket.active) return;
    const message = err.message;
    if (message === AUTH_FAILED && this.tokens.renewable && !this.retriedAuth) {
      this.retriedAuth = true;
      this.tokens.renew("rejected").then(
        () => this.retryAfter(0),
        () => this.setState("refused", message),
      );
      return;
    }
    this.setState("refused", message);
    if (RETRY_LATER.has(message)) this.retryAfter(RETRY_LATER_MS);
  }

  private retryAfter(ms: number): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.currentState === "closed" || this.currentState === "ended") return;
      if (this.currentState === "refused") {
        this.setState(this.resume.position === null ? "connecting" : "resuming");
      }
      this.socket.connect();
    }, ms);
  }

  private scheduleRefresh(token: string): void {
    if (this.refreshTimer !== null) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    const exp = tokenExpiry(token);
    if (exp === null || !this.tokens.renewable) return;
    const delay = refreshDelayMs(exp, Date.now(), this.refreshMarginMs);
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.tokens.renew("expiring").then(
        (fresh) => {
          // A token is checked only at connect: renew the connection, resuming.
          if (fresh !== token && this.socket.connected) this.reconnect();
          else if (fresh !== token) this.scheduleRefresh(fresh);
        },
        // The provider failed: the server will end the session at exp; try then.
        () => undefined,
      );
    }, delay);
  }

  private clearTimers(): void {
    for (const timer of [this.refreshTimer, this.retryTimer]) {
      if (timer !== null) clearTimeout(timer);
    }
    this.refreshTimer = null;
    this.retryTimer = null;
  }
}

/** Connect to a gateway (`url` is its origin, e.g. `http://127.0.0.1:8080`). */
export function connect(url: string, options: ConnectOptions): VmpulseClient {
  return new VmpulseClient(url, options);
}
