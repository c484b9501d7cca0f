/**
 * The real system for the client's tests: a `vmpulse up` (Kafka broker, worker,
 * gateway, simulated fleet of 3 VMs), started here unless VMPULSE_TEST_DATA_DIR
 * names the data dir of one already running (pytest passes the one its
 * end-to-end module started, so the suite starts one broker less). Tokens and
 * events come from the `vmpulse` command, as a platform would produce them.
 */

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
// .test-build/test -> gateway/client -> repository root
const repo = resolve(here, "..", "..", "..", "..");

export const VMPULSE = process.env.VMPULSE_BIN ?? join(repo, ".venv", "bin", "vmpulse");

export interface Up {
  url: string;
  dataDir: string;
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

function cleanEnv(dataDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("VMPULSE_")) env[k] = v;
  return { ...env, VMPULSE_DATA_DIR: dataDir, ...extra };
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => ok(port));
    });
  });
}

export async function until<T>(
  check: () => T | undefined | null | false,
  withinMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${withinMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function gatewayUrl(dataDir: string): string | null {
  const path = join(dataDir, "up.json");
  if (!existsSync(path)) return null;
  return (JSON.parse(readFileSync(path, "utf8")) as { gateway_url: string }).gateway_url;
}

/** The running system: the one named by VMPULSE_TEST_DATA_DIR, or a new `vmpulse up`. */
export async function startUp(): Promise<Up> {
  const given = process.env.VMPULSE_TEST_DATA_DIR;
  if (given) {
    const url = gatewayUrl(given);
    if (url === null) throw new Error(`no up.json in VMPULSE_TEST_DATA_DIR=${given}`);
    return { url, dataDir: given, env: cleanEnv(given), stop: async () => undefined };
  }
  const dataDir = mkdtempSync(join(tmpdir(), "vp-client-"));
  const port = await freePort();
  const env = cleanEnv(dataDir, { VMPULSE_GATEWAY_ADDR: `127.0.0.1:${port}` });
  const log = openSync(join(dataDir, "up.log"), "w");
  const proc: ChildProcess = spawn(VMPULSE, ["up", "--vms", "3", "--interval", "0.2"], {
    env,
    stdio: ["ignore", log, log],
  });
  let exited = false;
  proc.on("exit", () => {
    exited = true;
  });
  try {
    await until(() => exited || gatewayUrl(dataDir), 120_000, "vmpulse up");
  } catch (err) {
    proc.kill("SIGKILL");
    throw err;
  }
  if (exited) throw new Error(`vmpulse up exited:\n${readFileSync(join(dataDir, "up.log"), "utf8")}`);
  const url = gatewayUrl(dataDir) as string;
  return {
    url,
    dataDir,
    env,
    stop: async () => {
      if (exited) return;
      proc.kill("SIGINT");
      const killer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
      await new Promise((r) => proc.once("exit", r));
      clearTimeout(killer);
    },
  };
}

/** A development JWT for `user` from `vmpulse token`. */
export async function token(up: Up, user: string, ttlHours?: number): Promise<string> {
  const args = ["token", "--user", user];
  if (ttlHours !== undefined) args.push("--ttl-hours", String(ttlHours));
  const { stdout } = await run(VMPULSE, args, { env: up.env });
  return stdout.trim();
}

/** Publish a resource event with `vmpulse emit`, as the platform backend would. */
export async function emit(
  up: Up,
  resource: string,
  action: string,
  data: unknown,
  by?: string,
): Promise<void> {
  const args = ["emit", resource, action, "--data", JSON.stringify(data)];
  if (by !== undefined) args.push("--by", by);
  await run(VMPULSE, args, { env: up.env, timeout: 60_000 });
}
