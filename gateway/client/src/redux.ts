/**
 * A Redux adapter at the edge: a middleware that turns the client's events into
 * `realtime/*` actions and the app's `realtime/subscribe` / `realtime/unsubscribe`
 * actions into requests. Structurally typed, so the core does not depend on
 * Redux; it fits `applyMiddleware` and RTK's `configureStore({middleware})`.
 *
 * Actions dispatched (prefix configurable, default `realtime`):
 * - `realtime/<resource>/<action>`: `{payload: ResourcePayload, meta: {scope, name}}`
 * - `realtime/metricsUpdate`, `realtime/connected`, `realtime/resumed`,
 *   `realtime/resync`, `realtime/sessionEnded`, `realtime/state`
 * - `realtime/subscribeFailed`: `{payload: {vmId, error}}`
 */

import type { VmpulseClient } from "./client.js";
import type { EventScope } from "./types.js";

export interface RealtimeAction {
  type: string;
  payload?: unknown;
  meta?: { scope: EventScope; name: string };
}

export interface MiddlewareApi {
  dispatch: (action: RealtimeAction) => unknown;
  getState: () => unknown;
}

export type RealtimeMiddleware = (
  api: MiddlewareApi,
) => (next: (action: unknown) => unknown) => (action: unknown) => unknown;

/** Action creators for what the app asks of the middleware. */
export function realtimeActions(prefix = "realtime") {
  return {
    subscribe: (vmId: string): RealtimeAction => ({ type: `${prefix}/subscribe`, payload: { vmId } }),
    unsubscribe: (vmId: string): RealtimeAction => ({
      type: `${prefix}/unsubscribe`,
      payload: { vmId },
    }),
  };
}

export function realtimeMiddleware(
  client: VmpulseClient,
  options: { prefix?: string } = {},
): RealtimeMiddleware {
  const prefix = options.prefix ?? "realtime";
  const ours = realtimeActions(prefix);
  return (api) => {
    const forward = (type: string) => (payload: unknown) =>
      api.dispatch({ type: `${prefix}/${type}`, payload });
    client.on("*", (event) =>
      api.dispatch({
        type: `${prefix}/${event.resource}/${event.action}`,
        payload: event.payload,
        meta: { scope: event.scope, name: event.name },
      }),
    );
    client.on("metricsUpdate", forward("metricsUpdate"));
    client.on("connected", forward("connected"));
    client.on("resumed", forward("resumed"));
    client.on("resync", forward("resync"));
    client.on("session:ended", forward("sessionEnded"));
    client.on("state", forward("state"));
    return (next) => (action) => {
      const a = action as RealtimeAction;
      const vmId = (a?.payload as { vmId?: unknown } | undefined)?.vmId;
      if (typeof vmId === "string" && a.type === ours.subscribe(vmId).type) {
        client.subscribe(vmId).catch((err: Error) =>
          api.dispatch({ type: `${prefix}/subscribeFailed`, payload: { vmId, error: err.message } }),
        );
      } else if (typeof vmId === "string" && a.type === ours.unsubscribe(vmId).type) {
        client.unsubscribe(vmId).catch(() => undefined);
      }
      return next(action);
    };
  };
}
