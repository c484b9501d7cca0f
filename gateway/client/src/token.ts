/**
 * Tokens: a fixed one, or a provider that is asked again before `exp` and when
 * the server says `Authentication failed`. The client never trusts what it
 * decodes here: `exp` is read only to know when to ask for a new token.
 */

/** Why the provider is asked: first use, `exp` is near, the server refused or expired it. */
export type TokenReason = "initial" | "expiring" | "rejected" | "expired";

export type TokenProvider = (reason: TokenReason) => string | Promise<string>;

/** `exp` (epoch seconds) of a JWT, or null when it has none or is not a JWT. */
export function tokenExpiry(token: string): number | null {
  const part = token.replace(/^Bearer\s+/i, "").split(".")[1];
  if (part === undefined) return null;
  try {
    const json = JSON.parse(base64UrlDecode(part)) as { exp?: unknown };
    return typeof json.exp === "number" && Number.isFinite(json.exp) ? json.exp : null;
  } catch {
    return null;
  }
}

function base64UrlDecode(text: string): string {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/**
 * Milliseconds from `nowMs` until a token expiring at `expS` should be renewed:
 * `marginMs` before `exp`, but never more than half of the time left (a
 * short-lived token is not renewed at once, and the provider has time to answer).
 */
export function refreshDelayMs(expS: number, nowMs: number, marginMs: number): number {
  const left = expS * 1000 - nowMs;
  if (left <= 0) return 0;
  return Math.max(0, left - Math.min(marginMs, left / 2));
}

/** Holds the current token and asks the provider for a new one when told to. */
export class TokenKeeper {
  private current: string | null;
  private pending: Promise<string> | null = null;

  constructor(
    private readonly provider: TokenProvider | null,
    fixed: string | null,
  ) {
    if (provider === null && fixed === null) throw new TypeError("a token or getToken is needed");
    this.current = fixed;
  }

  /** Whether a new token can be had at all (a fixed token cannot be renewed). */
  get renewable(): boolean {
    return this.provider !== null;
  }

  get value(): string | null {
    return this.current;
  }

  /** The token to use now; asks the provider the first time. */
  async get(): Promise<string> {
    if (this.current !== null) return this.current;
    return this.renew("initial");
  }

  /** Ask the provider again; concurrent callers share one request. */
  renew(reason: TokenReason): Promise<string> {
    if (this.provider === null) {
      if (this.current === null) return Promise.reject(new TypeError("no token"));
      return Promise.resolve(this.current);
    }
    if (this.pending !== null) return this.pending;
    const provider = this.provider;
    this.pending = (async () => {
      try {
        const token = await provider(reason);
        this.current = token;
        return token;
      } finally {
        this.pending = null;
      }
    })();
    return this.pending;
  }
}
