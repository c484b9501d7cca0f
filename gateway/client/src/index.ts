/**
 * @vmpulse/client: the vmpulse gateway from a browser or Node.js.
 *
 * ```ts
 * import { connect } from "@vmpulse/client";
 * const client = connect("http://127.0.0.1:8080", { getToken: async () => myJwt() });
 * client.on("vms", "power_on", (e) => console.log(e.payload.data));
 * await client.subscribe(vmId);
 * client.on("metricsUpdate", (m) => draw(m));
 * ```
 */

export { connect, VmpulseClient, type ConnectOptions } from "./client.js";
export {
  AUTH_FAILED,
  AUTH_REQUIRED,
  ConnectionRefused,
  HttpError,
  TOKEN_EXPIRED,
  TOO_MANY,
  TOO_MANY_FOR_USER,
  USER_NOT_FOUND,
  VmpulseError,
} from "./errors.js";
export { parseEventName, type ResourceHandler } from "./events.js";
export { GatewayHttp, type HistoryQuery } from "./http.js";
export {
  realtimeActions,
  realtimeMiddleware,
  type MiddlewareApi,
  type RealtimeAction,
  type RealtimeMiddleware,
} from "./redux.js";
export { ResumeState, type AuthPayload } from "./resume.js";
export { refreshDelayMs, TokenKeeper, tokenExpiry, type TokenProvider, type TokenReason } from "./token.js";
export * from "./types.js";
