/**
 * Errors the client raises. The server's own words are kept as `message`, so an
 * app can show them as they are (`Access denied`, `Authentication failed`, ...).
 *
 *   VmpulseError            an acknowledged request the server refused, or no answer
 *   ├── ConnectionRefused   the server refused the connection (`connect_error`)
 *   └── HttpError           an HTTP call answered 4xx/5xx (`status` set)
 */

export class VmpulseError extends Error {
  override name = "VmpulseError";
}

export class ConnectionRefused extends VmpulseError {
  override name = "ConnectionRefused";
}

export class HttpError extends VmpulseError {
  override name = "HttpError";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The refusals the gateway sends (docs/SOCKETIO.md); other texts are transport errors. */
export const AUTH_REQUIRED = "Authentication token required";
export const AUTH_FAILED = "Authentication failed";
export const USER_NOT_FOUND = "User not found";
export const TOO_MANY = "Too many connections";
export const TOO_MANY_FOR_USER = "Too many connections for this user";
export const TOKEN_EXPIRED = "Token expired";
