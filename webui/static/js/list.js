// The trace list: filters reflected in the URL, live insertions, and (demo) the chat box.

import { api } from "./api.js";
import { bdi, clear, h, link, qs, reveal } from "./dom.js";
import { latencyChart } from "./latency.js";
import { live } from "./live.js";
import { setView } from "./nav.js";
import { matchesFilters, notice, traceTable } from "./widgets.js";

const FILTERS = [
  { name: "since", label: "Time", kind: "select", options: [["", "Any time"], ["15m", "Last 15 min"], ["1h", "Last hour"], ["24h", "Last 24 h"], ["7d", "Last 7 days"]] },
  { name: "status", label: "Status", kind: "select", options: [["", "Any status"], ["ok", "ok"], ["error", "error"], ["running", "running"], ["interrupted", "interrupted"], ["cancelled", "cancelled"]] },
  { name: "plugin", label: "Plugin", kind: "text", list: "plugin-names", placeholder: "any plugin" },
  { name: "user_id", label: "User", kind: "text", placeholder: "user id" },
  { name: "session_id", label: "Session", kind: "text", placeholder: "session id" },
  { name: "min_duration_ms", label: "Min ms", kind: "number", placeholder: "0" },
  { name: "q", label: "Text", kind: "search", placeholder: "text in message  ( / )" },
];
// accepted in the URL without a control of their own (links from other views)
const HIDDEN = ["umo", "model", "tool", "span_type"];
// the list's order (GET /traces?sort=), set from the column headers; absent: newest first
const SORTS = ["time", "-time", "duration", "-duration", "tokens", "-tokens", "cost", "-cost"];

export function listView(root, ctx) {
  const values = {};
  for (const f of [...FILTERS.map((f) => f.name), ...HIDDEN]) {
    const v = ctx.params.get(f);
    if (v) values[f] = v;
  }
  let sort = SORTS.includes(ctx.params.get("sort")) && ctx.params.get("sort") !== "-time" ? ctx.params.get("sort") : "";

  const controls = FILTERS.map((f) => {
    let input;
    if (f.kind === "select") {
      input = h("select", { name: f.name, id: `f-${f.name}` }, f.options.map(([v, label]) => h("option", { value: v }, label)));
      input.value = values[f.name] || "";
    } else {
      input = h("input", {
        name: f.name, id: `f-${f.name}`, type: f.kind, placeholder: f.placeholder, value: values[f.name] || "",
        list: f.list, min: f.kind === "number" ? "0" : undefined, step: f.kind === "number" ? "any" : undefined,
        autocomplete: "off", spellcheck: "false",
      });
    }
    input.addEventListener(f.kind === "select" ? "change" : "input", () => changed(f.name, input.value, f.kind !== "select"));
    return h("label", { class: `filter filter-${f.name}` }, h("span", { class: "filter-label" }, f.label), input);
  });
  const hiddenChips = h("span", { class: "hidden-filters" });
  const clearBtn = h("button", { type: "button", class: "link-button", onclick: clearAll }, "Clear");
  const form = h("form", { class: "filters", role: "search", onsubmit: (ev) => ev.preventDefault() },
    controls, hiddenChips, clearBtn, h("datalist", { id: "plugin-names" }));

  // display name or name (lower case) -> plugin name: the server takes either, and live
  // rows carry the name, so the table filters by the name
  const displayNames = new Map();
  const filtersNow = () => {
    const out = { ...values };
    if (out.plugin) out.plugin = displayNames.get(out.plugin.toLowerCase()) || out.plugin;
    return out;
  };
  const table = traceTable(() => (sort ? { ...filtersNow(), sort } : filtersNow()), {
    emptyText: "No traces match these filters.",
    onSort: (s) => {
      sort = s === "-time" ? "" : s;
      setView(qs({ ...values, sort }), { replace: true });
      table.reload();
    },
  });
  // the durations of the listed traces over time; a point opens its trace
  const chart = latencyChart({ open: (id) => ctx.navigate(`traces/${id}`) });
  const tracingOff = h("div", { class: "tracing-off-hint" },
    notice("info", "Tracing is off: new messages are not recorded. Switch it on at the top right."));

  const listCol = h("section", { class: "list-col", "aria-label": "Traces" }, tracingOff, form, chart.el, table.el);
  const layout = h("div", { class: "list-layout" }, listCol);
  if (document.body.dataset.chat === "on") layout.append(chatBox());
  root.append(layout);
  showHidden();

  let timer = null;
  function changed(name, value, debounce) {
    if (value) values[name] = value;
    else delete values[name];
    clearTimeout(timer);
    timer = setTimeout(apply, debounce ? 300 : 0);
  }
  function apply() {
    setView(qs({ ...values, sort }), { replace: true });
    showHidden();
    table.reload();
    chart.load(filtersNow());
  }
  function clearAll() {
    for (const k of Object.keys(values)) delete values[k];
    for (const el of form.querySelectorAll("input, select")) el.value = "";
    apply();
  }
  function showHidden() {
    clear(hiddenChips);
    for (const k of HIDDEN) {
      if (!values[k]) continue;
      hiddenChips.append(h("button", {
        type: "button", class: "chip filter-chip", title: "Remove this filter",
        onclick: () => changed(k, "", false),
      }, `${k}: `, bdi(values[k]), " ×"));
    }
  }

  // plugin names for the datalist, from the stats of the last week (best effort): every
  // plugin with a span, offered by display name and by name ("Search agent (search)")
  api.get("stats", { group_by: "plugin", since: "7d", percentiles: "false" }).then((st) => {
    const dl = form.querySelector("datalist");
    for (const g of st.groups || []) {
      const name = String(g.key);
      const display = String(g.display_name || name);
      const label = display === name ? name : `${display} (${name})`;
      if (display !== name) dl.append(h("option", { value: display, label }));
      dl.append(h("option", { value: name, label }));
      if (!displayNames.has(display.toLowerCase())) displayNames.set(display.toLowerCase(), name);
      displayNames.set(name.toLowerCase(), name);
    }
  }).catch(() => {});

  form.querySelector("#f-q").addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") ev.target.blur();
  });
  const onSlash = (ev) => {
    if (ev.key === "/" && !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement?.tagName)) {
      ev.preventDefault();
      form.querySelector("#f-q").focus();
    }
  };
  document.addEventListener("keydown", onSlash);

  const offs = [
    live.on("trace_started", (d) => table.onLive("trace_started", d)),
    live.on("trace_finished", (d) => {
      table.onLive("trace_finished", d);
      if (matchesFilters(d, filtersNow(), false)) chart.onLive(d);
    }),
    live.on("resync", () => {
      table.reload();
      chart.load(filtersNow());
    }),
  ];
  table.reload();
  chart.load(filtersNow());
  return {
    unmount() {
      chart.unmount();
      offs.forEach((off) => off());
      document.removeEventListener("keydown", onSlash);
      clearTimeout(timer);
    },
  };
}

function chatBox() {
  const log = h("ol", { class: "chat-log", "aria-live": "polite", "aria-label": "Conversation" });
  const input = h("textarea", { id: "chat-input", rows: "2", placeholder: "Say something to the demo bot…", "aria-label": "Message", maxlength: "8000" });
  const user = h("input", { id: "chat-user", value: "demo-user", "aria-label": "User id", spellcheck: "false" });
  const session = h("input", { id: "chat-session", value: "demo-session", "aria-label": "Session", spellcheck: "false" });
  const send = h("button", { type: "submit", class: "primary", id: "chat-send" }, "Send");
  // the fields are 70 px wide: the full value is their title (hover), and a focused field
  // widens to show it (CSS)
  for (const field of [user, session]) {
    const full = () => { field.title = reveal(field.value); };
    full();
    field.addEventListener("input", full);
  }
  const form = h("form", { class: "chat-form", onsubmit: submit }, input,
    h("div", { class: "chat-row" }, h("label", null, "user ", user), h("label", null, "session ", session), send));
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });

  async function submit(ev) {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    log.append(h("li", { class: "bubble me" }, bdi(text)));
    const pending = h("li", { class: "bubble bot pending" }, "…");
    log.append(pending);
    log.scrollTop = log.scrollHeight;
    send.disabled = true;
    try {
      const res = await api.post("chat", { text, user_id: user.value || "demo-user", session: session.value || "demo-session" });
      pending.replaceChildren(bdi(res.reply || "(no reply)"));
      pending.classList.remove("pending");
      if (res.trace_id) {
        pending.append(h("br"), link(`traces/${res.trace_id}`, { class: "bubble-link" }, "open trace →"));
      } else if (res.trace_id === null) {
        pending.append(h("br"), h("span", { class: "bubble-note" }, "(not traced)"));
      }
    } catch (err) {
      pending.replaceChildren("error: ", bdi(err.message));
      pending.classList.replace("pending", "error");
    } finally {
      send.disabled = false;
      log.scrollTop = log.scrollHeight;
      input.focus();
    }
  }

  return h("aside", { class: "chat card", "aria-label": "Demo chat" },
    h("h2", null, "Talk to the demo host"),
    h("p", { class: "hint" }, "Each message becomes a trace: watch it appear in the list."),
    log, form);
}
