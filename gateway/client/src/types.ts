/**
 * The gateway's wire contract as types (docs/SOCKETIO.md). Field names are the
 * server's, so a payload is used as received: no mapping layer to drift.
 */

/** The user the server identified from the token (the role comes from the directory). */
export interface UserInfo {
  id: string;
  name: string;
  role: string;
}

/** `connected`: sent once per connection. No `position` when the client is resuming. */
export interface ConnectedEvent {
  message: string;
  namespace: string;
  user: UserInfo;
  timestamp: string;
  position?: string;
}

/** The payload of every resource event (`<namespace>:<resource>:<action>`). */
export interface ResourcePayload<D = unknown> {
  status: string;
  error: string | null;
  data: D;
  timestamp: string;
  id: string;
  position?: string;
}

/**
 * Where a resource event came from: the user's own namespace room, or the room
 * of a VM the socket is subscribed to (`vm:<id>:<resource>:<action>`).
 */
export type EventScope = { kind: "user" } | { kind: "vm"; vmId: string };

/** A resource event as the client hands it to listeners: the name already split. */
export interface ResourceEvent<D = unknown> {
  resource: string;
  action: string;
  scope: EventScope;
  /** The Socket.IO event name as received. */
  name: string;
  payload: ResourcePayload<D>;
}

export interface CpuFigures {
  usage_percent: number | null;
  cores_usage?: number[];
  temperature?: number | null;
}

export interface MemoryFigures {
  total_kb: number | null;
  used_kb: number | null;
  available_kb?: number | null;
  swap_total_kb?: number | null;
  swap_used_kb?: number | null;
}

/** One sample as the worker sends it live (streams/live_payload.py); unknown parts stay open. */
export interface MetricsSample {
  cpu?: CpuFigures;
  memory?: MemoryFigures;
  disk?: unknown;
  network?: unknown;
  system?: unknown;
  ts_source?: string;
  [other: string]: unknown;
}

/** `metricsUpdate`, and each entry that `metrics:recent` answers with. */
export interface MetricsUpdate {
  vmId: string;
  metrics: MetricsSample;
  timestamp: string;
  position?: string;
}

/** `resumed`: the replay is done; `vmIds` are subscribed again, `denied` were refused. */
export interface ResumedEvent {
  replayed: number;
  position: string;
  vmIds: string[];
  denied: string[];
}

/** `resync`: the gap could not be replayed; reload state over HTTP. */
export interface ResyncEvent {
  reason: string;
  position: string;
  vmIds: string[];
  denied: string[];
}

/** `session:ended`: the server is about to disconnect this socket. */
export interface SessionEndedEvent {
  reason: string;
}

/**
 * What the connection is doing, for a status badge:
 * - `connecting`: first connection in progress;
 * - `connected`: live (after a resume, once the replay is done);
 * - `resuming`: the connection dropped; reconnecting with the last position;
 * - `resync`: the server could not replay the gap; the app is reloading its state;
 * - `refused`: the server refused the connection (`message` says why);
 * - `ended`: the server ended the session and it cannot be renewed;
 * - `closed`: `close()` was called.
 */
export type ConnectionState =
  | "connecting"
  | "connected"
  | "resuming"
  | "resync"
  | "refused"
  | "ended"
  | "closed";

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** The server's message for `refused` and `ended`, the reason for `resync`. */
  message?: string;
}

/** The client's own events (everything that is not a resource event). */
export interface ClientEvents {
  connected: ConnectedEvent;
  metricsUpdate: MetricsUpdate;
  resumed: ResumedEvent;
  resync: ResyncEvent;
  "session:ended": SessionEndedEvent;
  state: StateChange;
}

export type ClientEventName = keyof ClientEvents;

export const CLIENT_EVENT_NAMES: ReadonlySet<string> = new Set<ClientEventName>([
  "connected",
  "metricsUpdate",
  "resumed",
  "resync",
  "session:ended",
  "state",
]);

/** An entry of `GET /api/vms`. States are `null` until the gateway saw one. */
export interface VmSummary {
  id: string;
  name: string;
  owner: string | null;
  department: string | null;
  powerState: string | null;
  agentState: string | null;
  stateUpdatedAt: string | null;
}

/** `GET /api/vms/{id}/metrics`: rows in the order of `columns` (`t` is epoch ms). */
export interface MetricHistory {
  vmId: string;
  from: string;
  to: string;
  resolution: string;
  step: number | null;
  source: string;
  columns: string[];
  rows: Array<Array<number | null>>;
}

export interface UserDeliveries {
  delivered: number;
  failed: number;
  successRate: number;
}

/** `GET /api/admin/overview` (admins only). */
export interface AdminOverview {
  gateway: Record<string, number>;
  deliveries: Record<string, UserDeliveries>;
  dlq: {
    counts: Record<string, number>;
    scanned: number;
    scanLimitPerPartition: number;
    readAt: string | null;
    error: string | null;
  };
}
