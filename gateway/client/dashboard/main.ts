/**
 * The dashboard: sign in with a token, then the VM list, live charts, the
 * feed and (for admins) delivery and DLQ figures, all from @vmpulse/client.
 *
 * The token comes from `#token=` (a link the platform hands out; removed from
 * the address bar at once) or from the sign-in form, and is kept in
 * sessionStorage for reloads of this tab only. A refusal from the server is
 * shown as the server words it.
 */

import { connect, type VmpulseClient } from "../src/client.js";
import type { ConnectionState, StateChange } from "../src/types.js";
import { FeedLog } from "./model/feed.js";
import { Fleet } from "./model/fleet.js";
import { AdminPanel } from "./view/admin.js";
import { Charts } from "./view/charts.js";
import { FeedView } from "./view/feedview.js";
import { formatTime, Frame } from "./view/frame.js";
import { VmList } from "./view/vmlist.js";

const STORAGE_KEY = "vmpulse.token";
const RELOAD_DEBOUNCE_MS = 300;

const $ = <T extends HTMLElement = HTMLElement>(selector: string): T =>
  document.querySelector(selector) as T;

const LABELS: Record<ConnectionState, string> = {
  connecting: "connecting…",
  connected: "connected",
  resuming: "resuming…",
  resync: "resync: reloading",
  refused: "refused",
  ended: "session ended",
  closed: "signed out",
};

function showConnection(change: StateChange): void {
  const conn = $("#conn");
  conn.className = `conn conn-${change.state}`;
  conn.dataset.state = change.state;
  ($(".conn-text") as HTMLElement).textContent = LABELS[change.state];
}

function detail(text: string): void {
  $("#conn-detail").textContent = text;
}

/** One signed-in session: its client and views; `stop` tears it down for sign-out. */
class Session {
  readonly client: VmpulseClient;
  private readonly frame = new Frame();
  private readonly fleet = new Fleet();
  private readonly feed = new FeedLog();
  private readonly feedView: FeedView;
  private readonly list: VmList;
  private readonly charts: Charts;
  private readonly admin: AdminPanel;
  private reloadTimer: ReturnType<typeof setTimeout> | null = null;
  private shown = false;
  private stopped = false;

  constructor(
    private readonly token: string,
    private readonly onRefused: (message: string) => void,
  ) {
    this.client = connect(location.origin, {
      token,
      onResync: async (event) => {
        this.addSystem("resync", `${event.reason}: reloading`);
        await this.reload();
        this.charts.reload();
      },
    });
    this.feedView = new FeedView($("#feed"), this.feed, this.frame);
    this.charts = new Charts($("#charts"), this.client, this.frame, () => this.list.invalidate());
    this.list = new VmList(
      $("#vmlist"),
      this.fleet,
      this.frame,
      (id) => this.charts.isOpen(id),
      (id) => {
        const vm = this.fleet.get(id);
        if (vm) this.charts.toggle(vm);
      },
    );
    this.admin = new AdminPanel($("#admin"), this.client);
    this.wire();
  }

  private wire(): void {
    const client = this.client;
    client.on("state", (change) => {
      // After a refusal the badge keeps saying so; closing the client is not news.
      if (this.stopped) return;
      showConnection(change);
      if (change.state === "refused" || change.state === "ended") {
        this.onRefused(change.message ?? LABELS[change.state]);
      }
    });
    client.on("connected", (hello) => {
      ($(".who-name") as HTMLElement).textContent = `${hello.user.name || hello.user.id} (${hello.user.role})`;
      if (!this.shown) {
        this.shown = true;
        sessionStorage.setItem(STORAGE_KEY, this.token);
        $("#signin").hidden = true;
        $("#app").hidden = false;
        $("#who").hidden = false;
        if (hello.user.role === "admin") this.admin.start();
        void this.reload();
      }
      detail(`since ${formatTime(hello.timestamp)}`);
    });
    client.on("resumed", (e) => {
      detail(`resumed at ${formatTime(Date.now())}: ${e.replayed} missed events replayed`);
      this.addSystem("resumed", `${e.replayed} missed events replayed`);
    });
    client.on("*", (event) => {
      if (event.resource === "vms") {
        const changed = this.fleet.apply(event.action, event.payload.data, event.payload.timestamp);
        if (changed === "reload") this.scheduleReload();
        else if (changed) this.list.invalidate();
      }
      this.feedView.added(this.feed.add(event, (id) => this.fleet.get(id)?.name));
    });
  }

  private addSystem(title: string, text: string): void {
    this.feedView.added(this.feed.system(title, text));
  }

  private scheduleReload(): void {
    if (this.reloadTimer !== null) clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => void this.reload(), RELOAD_DEBOUNCE_MS);
  }

  /** Read the VM list again (at sign-in, after a resync, when VMs come or go). */
  async reload(): Promise<void> {
    try {
      this.fleet.load(await this.client.http.listVms());
    } catch (err) {
      detail(`VM list unavailable: ${(err as Error).message}`);
    }
    this.list.invalidate();
  }

  stop(): void {
    this.stopped = true;
    this.admin.stop();
    this.client.close();
  }
}

let session: Session | null = null;

function signIn(token: string): void {
  session?.stop();
  $("#signin-error").textContent = "";
  const current = new Session(token, (message) => {
    if (session !== current) return;
    current.stop();
    session = null;
    sessionStorage.removeItem(STORAGE_KEY);
    $("#app").hidden = true;
    $("#who").hidden = true;
    $("#signin").hidden = false;
    $("#signin-error").textContent = message;
  });
  session = current;
}

function signOut(): void {
  session?.stop();
  session = null;
  sessionStorage.removeItem(STORAGE_KEY);
  location.reload();
}

function tokenFromHash(): string | null {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token === null) return null;
  // Out of the address bar and history at once: the token is a credential.
  history.replaceState(null, "", location.pathname + location.search);
  return token.trim();
}

function main(): void {
  $("#signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = ($("#token") as HTMLTextAreaElement).value.trim();
    if (!token) {
      $("#signin-error").textContent = "Paste a token first.";
      return;
    }
    signIn(token);
  });
  $("#signout").addEventListener("click", signOut);
  // A sign-in link opened in a tab that already shows the dashboard.
  window.addEventListener("hashchange", () => {
    const linked = tokenFromHash();
    if (linked) signIn(linked);
  });
  const token = tokenFromHash() ?? sessionStorage.getItem(STORAGE_KEY);
  if (token) signIn(token);
  else $("#signin").hidden = false;
}

main();
