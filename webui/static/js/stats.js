// "Which phase is the bottleneck": latency, errors and tokens per stage / plugin / tool / model.

import { api } from "./api.js";
import { bdi, clear, h, link, qs } from "./dom.js";
import { fmtCost, fmtMs, fmtNum, fmtPct, pluginHue } from "./format.js";
import { setView } from "./nav.js";
import { emptyState, notice, pluginChip } from "./widgets.js";

const GROUPS = [["stage", "Stages"], ["plugin", "Plugins"], ["tool", "Tools"], ["model", "Models"], ["span_type", "Span types"]];
const WINDOWS = [["1h", "Last hour"], ["24h", "Last 24 h"], ["7d", "Last 7 days"], ["all", "All time"]];
// where a click on a group leads: the trace list filtered by it
const LIST_FILTER = { plugin: "plugin", tool: "tool", model: "model", span_type: "span_type" };

export function statsView(root, ctx) {
  const state = {
    group_by: ctx.params.get("group_by") || "stage",
    since: WINDOWS.some(([v]) => v === ctx.params.get("since")) ? ctx.params.get("since") : "24h",
  };
  const tabs = h("div", { class: "segmented", role: "tablist", "aria-label": "Group by" });
  const windowSel = h("select", { id: "stats-window", "aria-label": "Time window" },
    WINDOWS.map(([v, l]) => h("option", { value: v }, l)));
  windowSel.value = state.since;
  windowSel.addEventListener("change", () => {
    state.since = windowSel.value;
    load();
  });
  const body = h("div", { class: "stats-body" });
  const sampledNote = h("p", { class: "notice notice-info sampled-note", id: "stats-sampled", role: "note", hidden: true });
  root.append(h("section", { class: "stats-view" },
    h("div", { class: "view-head" }, h("h1", null, "Where the time goes"), h("div", { class: "controls" }, tabs, windowSel)),
    h("p", { class: "hint" }, "Per group: how often it ran, how often it failed, and its latency (p50 and p95 bars on one scale)."),
    sampledNote,
    body));
  showSampling(sampledNote);

  function drawTabs() {
    clear(tabs);
    for (const [v, l] of GROUPS) {
      tabs.append(h("button", {
        type: "button", role: "tab", "aria-selected": String(state.group_by === v), class: state.group_by === v ? "on" : "",
        onclick: () => {
          state.group_by = v;
          load();
        },
      }, l));
    }
  }

  let gen = 0;
  async function load() {
    const mine = ++gen;
    drawTabs();
    setView(`stats${qs({ group_by: state.group_by, since: state.since === "24h" ? "" : state.since })}`, { replace: true });
    const params = { group_by: state.group_by };
    if (state.since && state.since !== "all") params.since = state.since;
    try {
      const st = await api.get("stats", params);
      if (mine !== gen) return;
      draw(st.groups || [], st);
    } catch (err) {
      if (mine === gen) clear(body).append(notice("error", err.message));
    }
  }

  function draw(groups, st) {
    clear(body);
    if (!groups.length) {
      body.append(emptyState("Nothing recorded in this window."));
      return;
    }
    if (state.group_by === "plugin") {
      drawPlugins(groups, st);
      return;
    }
    const scale = Math.max(...groups.map((g) => g.p95_ms || 0), 1e-9);
    const tbody = h("tbody");
    for (const g of groups) {
      const p50 = h("span", { class: "lat-bar p50" });
      p50.style.width = `${((g.p50_ms || 0) / scale) * 100}%`;
      const p95 = h("span", { class: "lat-bar p95" });
      p95.style.width = `${((g.p95_ms || 0) / scale) * 100}%`;
      if (state.group_by === "plugin") {
        p50.style.setProperty("--ph", String(pluginHue(String(g.key))));
        p95.style.setProperty("--ph", String(pluginHue(String(g.key))));
        p50.classList.add("plugin-colored");
        p95.classList.add("plugin-colored");
      }
      const key = String(g.key ?? "(none)");
      const filter = LIST_FILTER[state.group_by];
      const label = state.group_by === "plugin" ? pluginChip(key) : h("span", { class: "group-key" }, bdi(key));
      const since = state.since === "all" ? undefined : state.since;
      const name = filter ? link(`${qs({ [filter]: key, since })}`, { title: "Show these traces" }, label) : label;
      tbody.append(h("tr", { class: g.errors ? "has-errors" : "" },
        h("th", { scope: "row", class: "c-key" }, name),
        h("td", { class: "num" }, fmtNum(g.count)),
        h("td", { class: `num${g.errors ? " err" : ""}` }, `${fmtPct(g.error_rate)}${g.errors ? ` (${fmtNum(g.errors)})` : ""}`),
        h("td", { class: "num" }, fmtMs(g.p50_ms)),
        h("td", { class: "num" }, fmtMs(g.p95_ms)),
        h("td", { class: "num" }, fmtMs(g.p99_ms)),
        h("td", { class: "c-bars", title: `p50 ${fmtMs(g.p50_ms)} · p95 ${fmtMs(g.p95_ms)}` }, h("div", { class: "lat" }, p95, p50)),
        h("td", { class: "num" }, fmtMs(g.total_ms)),
        h("td", { class: "num" }, g.input_tokens || g.output_tokens ? `${fmtNum(g.input_tokens)} / ${fmtNum(g.output_tokens)}` : "–"),
        h("td", { class: "num" }, fmtCost(g.cost_usd))));
    }
    body.append(h("div", { class: "table-wrap card" }, h("table", { class: "stats" },
      h("thead", null, h("tr", null,
        ["Name", "Count", "Errors", "p50", "p95", "p99", "Latency", "Total time", "Tokens in / out", "Cost"].map((c, i) =>
          h("th", { scope: "col", class: i === 0 ? "c-key" : i === 6 ? "c-bars" : "num" }, c)))),
      tbody)));
  }

  // Per plugin: every span attributed to it; the percentiles are of its top-level spans
  // (what a caller waited for), the sums of all its spans, with a breakdown by span type.
  function drawPlugins(groups, st) {
    const sample = st.percentiles_from || {};
    body.append(h("p", { class: "hint plugin-stats-hint" },
      "Every span attributed to a plugin counts: its handlers, tools, LLM calls, IO, subagents and own spans. ",
      "p50 / p95 / p99 are of its top-level spans (those not inside another span of the same plugin)",
      sample.capped ? `, from the newest ${fmtNum(sample.traces)} traces of the window.` : ".",
      " Sorted by self time (time in the plugin's own code)."));
    const scale = Math.max(...groups.map((g) => g.p95_ms || 0), 1e-9);
    const tbody = h("tbody");
    const since = state.since === "all" ? undefined : state.since;
    for (const g of groups) {
      const key = String(g.key);
      const display = String(g.display_name || key);
      const hue = String(pluginHue(key));
      const bars = [["p95", g.p95_ms], ["p50", g.p50_ms]].map(([cls, v]) => {
        const bar = h("span", { class: `lat-bar ${cls} plugin-colored` });
        bar.style.width = `${((v || 0) / scale) * 100}%`;
        bar.style.setProperty("--ph", hue);
        return bar;
      });
      const label = [pluginChip(key, g.plugin_type, display),
        display !== key ? h("span", { class: "plugin-internal" }, " (", bdi(key), ")") : null];
      const types = (g.by_type || []).map((t) => h("span", {
        class: `chip span-type-chip${t.errors ? " err" : ""}`,
        title: `${t.span_type}: ${fmtNum(t.count)} spans, ${fmtNum(t.errors)} errors, total ${fmtMs(t.total_ms)}, self ${fmtMs(t.self_ms)}`
          + (t.input_tokens || t.output_tokens ? `, tokens ${fmtNum(t.input_tokens)} / ${fmtNum(t.output_tokens)}` : ""),
        dataset: { spanType: t.span_type },
      }, `${t.span_type} ×${fmtNum(t.count)}${t.errors ? ` (${fmtNum(t.errors)} err)` : ""} · ${fmtMs(t.total_ms)}`));
      tbody.append(h("tr", { class: g.errors ? "has-errors" : "", dataset: { plugin: key } },
        h("th", { scope: "row", class: "c-key" },
          link(`${qs({ plugin: key, since })}`, { title: `Show the traces of ${display} (${key})` }, label)),
        h("td", { class: "num c-count" }, fmtNum(g.count)),
        h("td", { class: `num c-errors${g.errors ? " err" : ""}` }, `${fmtPct(g.error_rate)}${g.errors ? ` (${fmtNum(g.errors)})` : ""}`),
        h("td", { class: "num c-p50" }, fmtMs(g.p50_ms)),
        h("td", { class: "num c-p95" }, fmtMs(g.p95_ms)),
        h("td", { class: "num c-p99" }, fmtMs(g.p99_ms)),
        h("td", { class: "c-bars", title: `top-level spans: ${fmtNum(g.top_count)} · p50 ${fmtMs(g.p50_ms)} · p95 ${fmtMs(g.p95_ms)}` },
          h("div", { class: "lat" }, ...bars)),
        h("td", { class: "num c-total" }, fmtMs(g.total_ms)),
        h("td", { class: "num c-self" }, fmtMs(g.self_ms)),
        h("td", { class: "num" }, g.input_tokens || g.output_tokens ? `${fmtNum(g.input_tokens)} / ${fmtNum(g.output_tokens)}` : "–"),
        h("td", { class: "num" }, fmtCost(g.cost_usd)),
        h("td", { class: "c-types" }, types)));
    }
    const cols = ["Plugin", "Spans", "Errors", "p50", "p95", "p99", "Latency (top-level)", "Total time", "Self time", "Tokens in / out", "Cost", "By span type"];
    body.append(h("div", { class: "table-wrap card" }, h("table", { class: "stats stats-plugins" },
      h("thead", null, h("tr", null, cols.map((c, i) =>
        h("th", { scope: "col", class: i === 0 ? "c-key" : i === 6 ? "c-bars" : i === 11 ? "c-types" : "num" }, c)))),
      tbody)));
  }

  load();
  return {};
}

// Tail-based sampling (trace_sample_rate below 1): the figures are from the kept traces only.
async function showSampling(note) {
  try {
    const s = (await api.get("health")).tracer?.sampling;
    if (!s || typeof s.rate !== "number" || s.rate >= 1) return;
    const slow = s.keep_slower_than_ms ? `, slower than ${fmtMs(s.keep_slower_than_ms)}` : "";
    note.textContent = `Sampled: these figures are from the traces kept, not every message. ` +
      `${fmtPct(s.rate)} of ordinary traces are kept, and every failed${slow} or forced one, ` +
      "so counts are lower than the traffic and errors and slow messages are over-represented.";
    note.hidden = false;
  } catch {
    /* no tracer (a read-only viewer): nothing to say */
  }
}
