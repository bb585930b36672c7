// Is tracing healthy: the tracer's queue, every sink (store, exporters, a host adapter) with
// its losses, retries and last error, the store's writer, and the live stream. GET /health,
// again every few seconds while the view is open. The verdict is the server's
// (webui/health.py): degraded while a part says so or lost data in the last minutes.

import { api } from "./api.js";
import { bdi, clear, h } from "./dom.js";
import { fmtAgo, fmtFullTime, fmtNum, fmtPct } from "./format.js";
import { emptyState, notice } from "./widgets.js";

const REFRESH_MS = 5000;
// counters of lost data: shown as errors when nonzero
const LOSSES = new Set(["dropped", "dropped_spans", "dropped_events", "failed_batches", "write_errors", "errors"]);
// a sink's fields in the order shown, with their labels; others follow under "More"
const FIELDS = [
  ["writer", "Writer"], ["queue", "Queue"], ["accepted", "Accepted"], ["written", "Written"],
  ["exported", "Exported"], ["lines_written", "Lines written"], ["dropped", "Dropped"],
  ["dropped_spans", "Dropped spans"], ["dropped_events", "Dropped events"],
  ["failed_batches", "Failed batches"], ["write_errors", "Write errors"], ["errors", "Errors"],
  ["retries", "Retries"], ["spilled", "Spilled"], ["backpressure_waits", "Back-pressure waits"],
  ["db_bytes", "Database size"], ["db_path", "Database"], ["url", "Endpoint"], ["path", "File"],
];
const SHOWN = new Set(["name", "state", "queue_depth", "queue_max", "last_error", "last_error_ns",
  "unavailable", "wrapped", ...FIELDS.map(([key]) => key)]);

export function healthView(root) {
  const head = h("div", { class: "view-head" }, h("h1", null, "Health"));
  const stamp = h("p", { class: "hint" }, "Loading…");
  const body = h("div", { class: "health-body" });
  root.append(h("section", { class: "health-view" }, head, stamp, body));

  let verdict = null;
  async function load() {
    if (document.hidden) return;
    try {
      const doc = await api.get("health");
      if (verdict) verdict.remove();
      verdict = h("span", { class: `status health-status status-${doc.status === "ok" ? "ok" : "error"}`, dataset: { status: doc.status } },
        h("span", { class: "status-dot", "aria-hidden": "true" }), doc.status);
      head.append(verdict);
      stamp.textContent = `Checked at ${new Date().toLocaleTimeString()}, again every ${REFRESH_MS / 1000} s. `
        + `Degraded while a part says so, or lost data in the last ${Math.round((doc.window_s || 300) / 60)} minutes.`;
      draw(doc);
    } catch (err) {
      clear(body).append(notice("error", err.message));
    }
  }

  function draw(doc) {
    clear(body);
    const problems = doc.problems || [];
    body.append(h("section", { class: "health-problems", "aria-label": "Problems" },
      problems.length
        ? problems.map((p) => notice("warn", h("strong", null, bdi(p.part)), ": ", bdi(p.problem)))
        : notice("info", "Nothing is losing data.")));
    const cards = h("div", { class: "health-cards" });
    const tracer = doc.tracer;
    if (tracer) cards.append(tracerCard(tracer));
    const sinks = tracer && !tracer.error ? tracer.sinks || [] : [];
    for (const sink of sinks) cards.append(sink.name === "live_hub" ? liveCard(sink) : sinkCard(sink, problems));
    // a read-only viewer has no tracer: the store it reads and the page's stream are all there is
    if (doc.store && !sinks.some((s) => s.name === "store")) cards.append(sinkCard({ name: "store", ...doc.store }, problems));
    if (doc.live && !sinks.some((s) => s.name === "live_hub")) cards.append(liveCard(doc.live));
    body.append(cards.childElementCount ? cards : emptyState("Nothing to report."));
  }

  load();
  const timer = setInterval(load, REFRESH_MS);
  return { unmount: () => clearInterval(timer) };
}

function card(title, state, ...content) {
  return h("section", { class: "card health-card", dataset: { part: title } },
    h("h2", null, bdi(title), state ? h("span", { class: `chip state state-${state}` }, state) : null), ...content);
}

function facts(rows) {
  return h("dl", { class: "kv" }, rows.map(([k, v, cls]) => [h("dt", null, k), h("dd", { class: cls || null }, v)]));
}

function value(v) {
  if (typeof v === "number") return fmtNum(v);
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (v === null || v === undefined) return "–";
  if (typeof v === "object") return bdi(JSON.stringify(v));
  return bdi(String(v));
}

function tracerCard(t) {
  if (t.error) return card("tracer", "error", notice("error", `Its health could not be read: ${t.error}`));
  const rows = [
    ["Tracing", t.enabled ? "on" : "off"],
    ["Dispatcher", t.dispatcher_running ? "running" : "stopped", t.dispatcher_running ? null : "err"],
    ["Queue", `${fmtNum(t.queue_depth)} / ${fmtNum(t.queue_capacity)}`],
    ["Traces started", fmtNum(t.traces_started)],
    ["Events dispatched", fmtNum(t.dispatched_events)],
    ["Events dropped", fmtNum(t.dropped_events), t.dropped_events ? "err" : null],
  ];
  const sm = t.sampling;
  if (sm && sm.rate < 1) {  // tail-based sampling (trace_sample_rate)
    rows.push(["Sampling", `${fmtPct(sm.rate)} of ordinary traces kept`],
      ["Kept", `${fmtNum(sm.kept_error)} failed, ${fmtNum(sm.kept_slow)} slow, ${fmtNum(sm.kept_forced)} forced, ${fmtNum(sm.kept_rate)} by rate`],
      ["Sampled out", fmtNum(sm.sampled_out)], ["Awaiting decision", fmtNum(sm.pending)]);
  }
  for (const [name, n] of Object.entries(t.sink_errors || {})) rows.push([["Hook errors of ", bdi(name)], fmtNum(n), "err"]);
  for (const [name, n] of Object.entries(t.sink_slow_calls || {})) rows.push([["Slow calls of ", bdi(name)], fmtNum(n)]);
  return card("tracer", t.dispatcher_running ? "ok" : "degraded", facts(rows));
}

function sinkCard(s, problems) {
  const name = String(s.name || "sink");
  const rows = [];
  for (const [key, label] of FIELDS) {
    if (key === "queue") {
      if (s.queue_depth !== undefined) rows.push([label, `${fmtNum(s.queue_depth)}${s.queue_max ? ` / ${fmtNum(s.queue_max)}` : ""}`]);
    } else if (key in s && s[key] !== null) {
      rows.push([label, key === "db_bytes" ? `${fmtNum(Math.round(s[key] / 1024))} KiB` : value(s[key]), LOSSES.has(key) && s[key] ? "err" : null]);
    }
  }
  const parts = [facts(rows)];
  const unavailable = Object.entries(s.unavailable || {});
  if (unavailable.length) {
    parts.push(h("h3", null, "Not traced"), h("ul", { class: "not-traced" },
      unavailable.map(([kind, why]) => h("li", null, h("strong", null, bdi(kind)), why ? [": ", bdi(String(why))] : null))));
  }
  if (Array.isArray(s.wrapped) && s.wrapped.length) {
    parts.push(h("h3", null, "Traced"), h("p", { class: "traced" }, s.wrapped.map((w, i) => [i ? ", " : "", bdi(String(w))])));
  }
  if (s.last_error) {
    parts.push(h("div", { class: "error-box" },
      h("div", { class: "error-head" }, "Last error", s.last_error_ns ? h("span", { title: fmtFullTime(s.last_error_ns) }, ` (${fmtAgo(s.last_error_ns)})`) : null, ": ", bdi(String(s.last_error)))));
  }
  const more = Object.entries(s).filter(([k]) => !SHOWN.has(k));
  if (more.length) parts.push(h("details", null, h("summary", null, "More"), facts(more.map(([k, v]) => [k, value(v)]))));
  const losing = problems.some((p) => p.part === name);
  const state = s.state || (losing ? "degraded" : null);
  return card(name, state, ...parts);
}

function liveCard(l) {
  return card("live stream", null, facts([
    ["Pages watching", fmtNum(l.subscribers)],
    ["Events", fmtNum(l.events_total)],
    ["Lost by slow pages", fmtNum(l.lost_by_slow_subscribers)],
  ]));
}
