// Small pieces several views share: plugin chips, status badges, notices, the trace table.

import { api, apiUrl } from "./api.js";
import { bdi, clear, h, icon, link } from "./dom.js";
import { fmtCost, fmtDuration, fmtFullTime, fmtNum, fmtTime, fmtTokens, pluginHue } from "./format.js";
import { embedded } from "./mode.js";

/** A plugin's name in its colour (hue from a stable hash of `name`), gear = builtin, puzzle = third-party. */
export function pluginChip(name, pluginType, label) {
  const kind = pluginType ? ` (${pluginType === "builtin" ? "builtin" : "third-party"})` : "";
  const chip = h("span", { class: "chip plugin", title: `plugin ${name}${kind}`, dataset: { plugin: name } });
  chip.style.setProperty("--ph", String(pluginHue(name)));
  if (pluginType) chip.append(icon(pluginType === "builtin" ? "gear" : "puzzle", "icon icon-sm"));
  else chip.append(h("span", { class: "swatch", "aria-hidden": "true" }));
  chip.append(bdi(label || name));
  return chip;
}

export function statusBadge(status) {
  return h("span", { class: `status status-${status || "unknown"}`, title: `status: ${status}` },
    h("span", { class: "status-dot", "aria-hidden": "true" }), status || "?");
}

export function notice(kind, ...text) {
  return h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" }, ...text);
}

/**
 * A download of an API document (a trace, a span) as `filename`. Served by botrace it is a
 * link to the API. Inside AstrBot's dashboard the page cannot reach the API by URL, so it is
 * a button that has the dashboard fetch the file through the bridge and save it.
 */
export function downloadLink(path, params, filename, props, ...children) {
  if (!embedded) return h("a", { ...props, href: apiUrl(path, params), download: "" }, ...children);
  const btn = h("button", {
    type: "button", class: (props && props.class) || "link-button",
    onclick: async () => {
      btn.disabled = true;
      try {
        await api.download(path, params, filename);
      } catch (err) {
        btn.after(notice("error", `Download failed: ${err.message}`));
      } finally {
        btn.disabled = false;
      }
    },
  }, ...children);
  return btn;
}

export function emptyState(...text) {
  return h("div", { class: "empty" }, ...text);
}

/** "3 of 1,204 traces" + a Load more button driving a cursor. */
export function pager(onMore) {
  const info = h("span", { class: "pager-info" });
  const btn = h("button", { type: "button", class: "secondary", onclick: onMore }, "Load more");
  const el = h("div", { class: "pager" }, info, btn);
  return {
    el,
    update(shown, total, hasMore, noun = "traces", capped = false) {
      // a capped total (the store stops counting combined filters at 1,000) reads "1,000+"
      info.textContent = `${fmtNum(shown)} of ${fmtNum(total)}${capped ? "+" : ""} ${noun}`;
      btn.hidden = !hasMore;
    },
    busy(on) {
      btn.disabled = on;
    },
  };
}

const COLUMNS = [
  ["c-time", "Time"], ["c-status", "Status"], ["c-msg", "Message"], ["c-from", "User · session"],
  ["c-dur num", "Duration"], ["c-spans num", "Spans"], ["c-tokens num", "Tokens in / out"], ["c-plugins", "Plugins"],
];

export function traceRow(t) {
  const tr = h("tr", { dataset: { traceId: t.trace_id, status: t.status } });
  const msg = t.outline ? t.outline : "(no text)";
  tr.append(
    h("td", { class: "c-time", title: fmtFullTime(t.start_ns) }, fmtTime(t.start_ns)),
    h("td", { class: "c-status" }, statusBadge(t.status)),
    h("td", { class: "c-msg" }, link(`traces/${t.trace_id}`, { class: "row-link", title: msg }, bdi(msg))),
    h("td", { class: "c-from", title: [t.sender, t.umo].filter(Boolean).join(" · ") },
      h("span", { class: "c-user" }, bdi(t.user_id || "–")),
      t.session_id || t.umo ? h("span", { class: "c-session" }, " · ", bdi(t.session_id || t.umo)) : null),
    h("td", { class: "c-dur num" }, t.status === "running" ? "running…" : fmtDuration(t.duration_ns)),
    h("td", { class: "c-spans num" }, fmtNum(t.span_count)),
    h("td", { class: "c-tokens num", title: t.cost_usd ? `cost ${fmtCost(t.cost_usd)}` : "" }, fmtTokens(t.input_tokens, t.output_tokens)),
    h("td", { class: "c-plugins" }, (t.plugins || []).slice(0, 2).map((p) => pluginChip(p)),
      (t.plugins || []).length > 2 ? h("span", { class: "more", title: t.plugins.slice(2).join(", ") }, `+${t.plugins.length - 2}`) : null),
  );
  tr.addEventListener("click", (ev) => {
    if (ev.target.closest("a")) return;
    tr.querySelector("a.row-link").click();
  });
  return tr;
}

/** Client-side check of a live summary against the list's filters.
 * `partial`: the trace has just started, so plugins, duration and status are not known yet. */
export function matchesFilters(t, f, partial) {
  if (f.user_id && t.user_id !== f.user_id) return false;
  if (f.session_id && t.session_id !== f.session_id) return false;
  if (f.umo && t.umo !== f.umo) return false;
  if (f.q && !(t.outline || "").toLowerCase().includes(f.q.toLowerCase())) return false;
  if (partial) {
    if (f.plugin || f.min_duration_ms || f.model || f.tool || f.span_type) return false;
    if (f.status && f.status !== "running") return false;
    return true;
  }
  if (f.status && t.status !== f.status) return false;
  if (f.plugin && !(t.plugins || []).includes(f.plugin)) return false;
  if (f.model && !(t.models || []).includes(f.model)) return false;
  if (f.min_duration_ms && (t.duration_ns || 0) / 1e6 < Number(f.min_duration_ms)) return false;
  if (f.tool || f.span_type) return false; // not in a summary: the server decides on reload
  return true;
}

/**
 * A paged table of traces over GET /traces with live insertions.
 * filters(): the current filter values; returns {el, reload(), onLive(kind, data), destroy()}.
 */
export function traceTable(getFilters, { emptyText = "No traces match.", maxRows = 500 } = {}) {
  const MAX_ROWS = maxRows;
  const tbody = h("tbody");
  const table = h("table", { class: "traces" },
    h("thead", null, h("tr", null, COLUMNS.map(([cls, label]) => h("th", { class: cls, scope: "col" }, label)))),
    tbody);
  const status = h("div", { class: "table-status" });
  let cursor = null;
  let total = 0;
  let capped = false;
  let shown = 0;
  let generation = 0;
  let olderThan = null;
  const rows = new Map();
  const pg = pager(() => load(false));
  const el = h("div", { class: "trace-table" }, status, h("div", { class: "table-wrap" }, table), pg.el);

  tbody.addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowDown" && ev.key !== "ArrowUp") return;
    const links = [...tbody.querySelectorAll("a.row-link")];
    const i = links.indexOf(document.activeElement);
    if (i < 0) return;
    ev.preventDefault();
    links[Math.max(0, Math.min(links.length - 1, i + (ev.key === "ArrowDown" ? 1 : -1)))].focus();
  });

  async function load(reset) {
    const gen = reset ? ++generation : generation;
    if (reset) {
      cursor = null;
      olderThan = null;
    }
    pg.busy(true);
    try {
      const params = { ...getFilters(), limit: 50, cursor: reset ? undefined : cursor || undefined };
      // rows were trimmed: continue below the last one kept (a µs of margin for float ns; rows dedupe)
      if (olderThan) params.until = String(olderThan + 1000);
      const page = await api.get("traces", params);
      if (gen !== generation) return;
      if (reset) {
        clear(tbody);
        rows.clear();
        shown = 0;
      }
      clear(status);
      for (const t of page.traces) {
        if (rows.has(t.trace_id)) continue;
        const tr = traceRow(t);
        rows.set(t.trace_id, { tr, t });
        tbody.append(tr);
        shown++;
      }
      cursor = page.next_cursor;
      if (!olderThan) {  // below a trim point the total counts only the older ones
        total = page.total;
        capped = !!page.total_capped;
      }
      pg.update(shown, total, !!cursor, "traces", capped);
      if (shown === 0) status.append(emptyState(emptyText));
    } catch (err) {
      if (gen !== generation) return;
      clear(status).append(notice("error", err.message));
      if (reset) {
        clear(tbody);
        rows.clear();
        shown = 0;
        pg.update(0, 0, false);
      }
    } finally {
      pg.busy(false);
    }
  }

  function upsert(t, partial) {
    const known = rows.get(t.trace_id);
    if (known) {
      const tr = traceRow({ ...known.t, ...t });
      known.tr.replaceWith(tr);
      rows.set(t.trace_id, { tr, t: { ...known.t, ...t } });
      tr.classList.add("updated");
      return;
    }
    if (!matchesFilters(t, getFilters(), partial)) return;
    const tr = traceRow(t);
    tr.classList.add("fresh");
    // newest first: a live trace goes before the first row that started earlier
    let before = null;
    for (const { tr: other, t: ot } of rows.values()) {
      if ((ot.start_ns || 0) < (t.start_ns || 0) && (!before || ot.start_ns > before.t.start_ns)) before = { tr: other, t: ot };
    }
    if (before) tbody.insertBefore(tr, before.tr);
    else if (!cursor) tbody.append(tr);
    else return; // older than everything shown and more pages exist: it belongs to a later page
    rows.set(t.trace_id, { tr, t });
    shown++;
    total++;
    clear(status);
    trim();
    pg.update(shown, total, !!cursor || !!olderThan, "traces", capped);
  }

  // a page left open on a busy host keeps at most MAX_ROWS rows: the oldest go, and
  // "Load more" continues below the last row kept (until=) instead of the old cursor
  function trim() {
    while (rows.size > MAX_ROWS) {
      const last = tbody.lastElementChild;
      if (!last) break;
      const entry = rows.get(last.dataset.traceId);
      last.remove();
      rows.delete(last.dataset.traceId);
      shown--;
      if (entry) olderThan = entry.t.start_ns;
      cursor = null;
    }
  }

  return {
    el,
    reload: () => load(true),
    onLive(kind, data) {
      if (kind === "trace_started") upsert(data, true);
      else if (kind === "trace_finished") upsert(data, false);
    },
  };
}
