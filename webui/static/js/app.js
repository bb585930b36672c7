// The page's entry: router, header (live state, tracing switch, theme) and views.

import { api } from "./api.js";
import { compareView } from "./compare.js";
import { healthView } from "./health.js";
import { live } from "./live.js";
import { listView } from "./list.js";
import { bridge, embedded } from "./mode.js";
import { currentView, HISTORY_EVENT, setView } from "./nav.js";
import { conversationView, sessionsView, userView, usersView } from "./people.js";
import { statsView } from "./stats.js";
import { traceView } from "./trace.js";
import { notice } from "./widgets.js";

const main = document.getElementById("main");
const VIEWS = {
  index: listView,
  trace: traceView,
  compare: compareView,
  sessions: sessionsView,
  conversation: conversationView,
  users: usersView,
  user: userView,
  stats: statsView,
  health: healthView,
};
const NAV_OF = { trace: "index", compare: "index", conversation: "sessions", user: "users" };
const TITLES = {
  index: "Traces", trace: "Trace", compare: "Compare", sessions: "Conversations", conversation: "Conversation",
  users: "Users", user: "User", stats: "Stats", health: "Health",
};

let current = null;

function route() {
  const parts = currentView().path.split("/").filter(Boolean);
  if (parts.length === 0) return { view: "index" };
  if (parts[0] === "traces" && parts[1]) return { view: "trace", id: decodeURIComponent(parts[1]) };
  if (parts[0] === "compare" && parts[1] && parts[2] && parts.length === 3) {
    return { view: "compare", a: decodeURIComponent(parts[1]), b: decodeURIComponent(parts[2]) };
  }
  if (VIEWS[parts[0]] && parts.length === 1 && parts[0] !== "compare") return { view: parts[0] };
  return { view: "notfound" };
}

function render() {
  if (current && current.unmount) current.unmount();
  current = null;
  main.replaceChildren();
  const r = route();
  const nav = NAV_OF[r.view] || r.view;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.body.dataset.view = r.view;
  document.title = `${TITLES[r.view] || "Trace"} · ${document.body.dataset.title || "botrace"}`;
  const view = VIEWS[r.view];
  if (!view) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "There is no such page.";
    main.append(p);
    return;
  }
  current = view(main, { id: r.id, a: r.a, b: r.b, params: currentView().params, navigate });
}

/** Show a view: navigate("traces/<id>"), a path as link() takes it. */
export function navigate(path, { replace = false } = {}) {
  setView(path, { replace });
  render();
  // move focus into the new view for keyboard and screen-reader users, unless the view took it
  if (!replace && !main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[data-link]");
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  if (a.origin !== location.origin) return;
  ev.preventDefault();
  navigate(a.dataset.link);
  window.scrollTo(0, 0);
});
window.addEventListener(HISTORY_EVENT, render);

// -- live indicator ----------------------------------------------------------------
const liveEl = document.getElementById("live");
const LIVE_LABEL = { connecting: "connecting", live: "live", reconnecting: "reconnecting…", offline: "offline", static: "no live updates", polled: "live (from the database)" };
live.on("state", (state) => {
  liveEl.dataset.state = state;
  liveEl.querySelector(".live-label").textContent = LIVE_LABEL[state] || state;
});

// -- tracing switch ----------------------------------------------------------------
const toggle = document.getElementById("trace-enable");
function showConfig(cfg) {
  if (!toggle || cfg.trace_enable === null || cfg.trace_enable === undefined) return;
  toggle.checked = !!cfg.trace_enable;
  toggle.disabled = false;
  toggle.setAttribute("aria-checked", String(!!cfg.trace_enable));
  document.body.dataset.tracing = cfg.trace_enable ? "on" : "off";
}
if (toggle) {
  api.get("config").then(showConfig).catch(() => {});
  toggle.addEventListener("change", async () => {
    const want = toggle.checked;
    toggle.disabled = true;
    try {
      showConfig(await api.put("config", { trace_enable: want }));
    } catch (err) {
      toggle.checked = !want;
      toggle.disabled = false;
      const text = `Could not switch tracing: ${err.message}`;
      // AstrBot's sandbox has no allow-modals: alert() would be dropped without a word
      if (embedded) main.prepend(notice("error", text));
      else alert(text);
    }
  });
  live.on("config", showConfig);
}

// -- theme -------------------------------------------------------------------------
const THEMES = ["auto", "light", "dark"];
function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  const btn = document.getElementById("theme");
  if (btn) btn.title = `Theme: ${theme} (click to change)`;
}
if (embedded) {
  // Inside AstrBot's dashboard its theme rules: AstrBot writes it into the page and the
  // bridge passes on every change (context.isDark). No button, and no storage to keep one.
  bridge?.onContext((ctx) => {
    if (typeof ctx?.isDark === "boolean") setTheme(ctx.isDark ? "dark" : "light");
  });
} else {
  let theme = "auto";
  try {
    theme = localStorage.getItem("botrace-theme") || "auto";
  } catch {
    /* storage may be off */
  }
  setTheme(theme);
  document.getElementById("theme")?.addEventListener("click", () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    setTheme(theme);
    try {
      localStorage.setItem("botrace-theme", theme);
    } catch {
      /* ignore */
    }
  });
}

// -- health in the nav: a mark on the tab while tracing is degraded ------------------
const healthTab = document.querySelector('[data-nav="health"]');
async function checkHealth() {
  if (document.hidden) return;
  try {
    const doc = await api.get("health");
    healthTab.dataset.status = doc.status;
    healthTab.title = doc.status === "ok" ? "Health: ok" : `Health: ${doc.status} (${(doc.problems || []).length} problems)`;
  } catch {
    /* the views show API errors */
  }
}
if (healthTab) {
  checkHealth();
  setInterval(checkHealth, 30000);
}

live.start();
render();
