// Builds the dashboard into ../static (the gateway's package data): app.js, app.css, index.html.
// Everything is bundled from node_modules (socket.io-client, uPlot): nothing is fetched at run time.
// DEBUG_BUILD=1 keeps names readable (for a profile of the page).
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "static");

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  entryPoints: { app: join(here, "dashboard", "main.ts") },
  bundle: true,
  minify: process.env.DEBUG_BUILD ? false : true,
  format: "iife",
  target: ["es2020"],
  outdir: out,
  legalComments: "eof",
  logLevel: "warning",
});
await build({
  entryPoints: { app: join(here, "dashboard", "style.css") },
  bundle: true,
  minify: true,
  outdir: out,
  logLevel: "warning",
});
await copyFile(join(here, "dashboard", "index.html"), join(out, "index.html"));
