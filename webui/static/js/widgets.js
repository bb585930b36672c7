// Small pieces several views share: plugin chips, status badges, notices, the trace table.

import { api, apiUrl } from "./api.js";
import { bdi, clear, h, icon, link, reveal } from "./dom.js";
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

// [class, header, the API's sort key when the column sorts]
const COLUMNS = [
  ["c-time", "Time", "time"], ["c-status", "Status"], ["c-msg", "Message"], ["c-from", "User · session"],
  ["c-dur num", "Duration", "duration"], ["c-spans num", "Spans"], ["c-tokens num", "Tokens in / out", "tokens"],
  ["c-cost num", "Cost", "cost"], ["c-plugins", "Plugins"],
];
const SHOWN_CHIPS = 2;

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
    h("td", { class: "c-cost num" }, t.status === "running" ? "" : fmtCost(t.cost_usd)),
    h("td", { class: "c-plugins" }, pluginChips(t.plugins || [])),
  );
  tr.addEventListener("click", (ev) => {
    if (ev.target.closest("a")) return;
    tr.querySelector("a.row-link").click();
  });
  return tr;
}

/**
 * A row's plugins: two chips (cut at ~98 px) and "+N". Hovering the cell or focusing the row
 * lays every chip out at full width over the cell (CSS: .c-plugins:hover, tr:focus-within),
 * the extra ones included; each chip also carries its full name as its title and its text.
 */
function pluginChips(plugins) {
  const chips = plugins.map((p, i) => {
    const chip = pluginChip(p);
    if (i >= SHOWN_CHIPS) chip.classList.add("chip-extra");
    return chip;
  });
  const rest = plugins.slice(SHOWN_CHIPS);
  const more = rest.length
    ? h("span", { class: "more", title: rest.join(", "), "aria-label": reveal(`and ${rest.length} more: ${rest.join(", ")}`) },
      `+${rest.length}`)
    : null;
  return h("span", { class: "chips" }, chips, more);
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
 * getFilters(): the current filter values (`sort` among them: a GET /traces sort, absent for
 * newest first); onSort(sort), when given, makes the Time, Duration, Tokens and Cost headers
 * buttons that ask for a sort (the caller stores it and reloads).
 * Returns {el, reload(), onLive(kind, data)}.
 *
 * Live rows never move the rows under the pointer: while the pointer is over the table or
 * focus is inside it, new traces wait behind an "N new" button (it inserts them; leaving the
 * table inserts them too). Under a sort other than newest first a new trace's place is the
 * server's to say, so they always wait and the button reloads.
 */
export function traceTable(getFilters, { emptyText = "No traces match.", maxRows = 500, onSort = null } = {}) {
  const MAX_ROWS = maxRows;
  const tbody = h("tbody");
  const heads = COLUMNS.map(([cls, label, key]) => {
    if (!key || !onSort) return h("th", { class: cls, scope: "col" }, label);
    const arrow = h("span", { class: "sort-arrow", "aria-hidden": "true" });
    const btn = h("button", { type: "button", class: "sort-button", dataset: { sort: key } }, label, arrow);
    btn.addEventListener("click", () => {
      const now = sortOf();
      onSort(now === `-${key}` ? key : `-${key}`);  // largest (newest) first, then smallest
    });
    return h("th", { class: `${cls} sortable`, scope: "col", dataset: { sort: key } }, btn);
  });
  const table = h("table", { class: "traces" }, h("thead", null, h("tr", null, heads)), tbody);
  const status = h("div", { class: "table-status" });
  const newBtn = h("button", { type: "button", class: "new-rows", hidden: true, onclick: (ev) => showNew(ev.detail === 0) });
  const newBar = h("div", { class: "new-rows-bar", "aria-live": "polite" }, newBtn);
  /** trace_id -> {t, partial}: live traces held back while the table is paused */
  const pending = new Map();
  let pointerIn = false;
  let cursor = null;
  let total = 0;
  let capped = false;
  let shown = 0;
  let generation = 0;
  let olderThan = null;
  const rows = new Map();
  const pg = pager(() => load(false));
  const el = h("div", { class: "trace-table" }, status, newBar, h("div", { class: "table-wrap" }, table), pg.el);

  function sortOf() {
    return getFilters().sort || "-time";
  }
  function sorted() {
    return sortOf() !== "-time";
  }
  function showSort() {
    const now = sortOf();
    for (const th of heads) {
      if (!th.dataset.sort) continue;
      const dir = now === th.dataset.sort ? "ascending" : now === `-${th.dataset.sort}` ? "descending" : null;
      if (dir) th.setAttribute("aria-sort", dir);
      else th.removeAttribute("aria-sort");
      th.querySelector(".sort-arrow").textContent = dir === "ascending" ? "▲" : dir === "descending" ? "▼" : "";
      th.querySelector(".sort-button").title = dir === "descending" ? "sorted largest first: click for smallest first"
        : dir === "ascending" ? "sorted smallest first: click for largest first" : "sort by this column, largest first";
    }
  }

  // paused while the pointer is over the table or focus is inside it
  el.addEventListener("pointerenter", () => { pointerIn = true; });
  el.addEventListener("pointerleave", () => {
    pointerIn = false;
    resume();
  });
  el.addEventListener("focusout", () => setTimeout(resume, 0));
  function paused() {
    return pointerIn || el.contains(document.activeElement);
  }
  function resume() {
    if (!paused() && pending.size && !sorted()) showNew(false);
  }
  function showPending() {
    newBtn.hidden = pending.size === 0;
    const n = pending.size;
    newBtn.textContent = `↑ ${fmtNum(n)} new`;
    newBtn.setAttribute("aria-label", sorted() ? `${n} new ${n === 1 ? "trace" : "traces"}: reload the list`
      : `Show ${n} new ${n === 1 ? "trace" : "traces"}`);
    newBtn.title = sorted() ? "new traces arrived: reload in this order" : "insert the traces that arrived while the list was paused";
  }
  function showNew(fromKeyboard) {
    if (sorted()) {
      pending.clear();
      showPending();
      load(true);
      return;
    }
    const batch = [...pending.values()].sort((a, b) => (a.t.start_ns || 0) - (b.t.start_ns || 0));
    pending.clear();
    showPending();
    let first = null;
    for (const { t, partial } of batch) {
      const tr = insert(t, partial);
      if (tr && (!first || (t.start_ns || 0) > first.t.start_ns)) first = { tr, t };
    }
    // a keyboard user lands on the newest of them
    if (fromKeyboard && first) first.tr.querySelector("a.row-link").focus();
  }

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
      pending.clear();
      showPending();
      showSort();
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
      const focused = known.tr.contains(document.activeElement);
      known.tr.replaceWith(tr);
      rows.set(t.trace_id, { tr, t: { ...known.t, ...t } });
      tr.classList.add("updated");
      if (focused) tr.querySelector("a.row-link").focus({ preventScroll: true });  // keep the keyboard's place
      return;
    }
    const held = pending.get(t.trace_id);
    if (held) {
      t = { ...held.t, ...t };
      partial = partial && held.partial;
    }
    if (!matchesFilters(t, getFilters(), partial)) {
      if (held && pending.delete(t.trace_id)) showPending();
      return;
    }
    if (held || paused() || sorted()) {
      pending.set(t.trace_id, { t, partial });
      showPending();
      return;
    }
    insert(t, partial);
  }

  /** a live trace in its place (newest first); returns its row, or null (a later page's) */
  function insert(t, partial) {
    if (rows.has(t.trace_id) || !matchesFilters(t, getFilters(), partial)) return null;
    const tr = traceRow(t);
    tr.classList.add("fresh");
    // newest first: a live trace goes before the first row that started earlier
    let before = null;
    for (const { tr: other, t: ot } of rows.values()) {
      if ((ot.start_ns || 0) < (t.start_ns || 0) && (!before || ot.start_ns > before.t.start_ns)) before = { tr: other, t: ot };
    }
    if (before) tbody.insertBefore(tr, before.tr);
    else if (!cursor) tbody.append(tr);
    else return null; // older than everything shown and more pages exist: it belongs to a later page
    rows.set(t.trace_id, { tr, t });
    shown++;
    total++;
    clear(status);
    trim();
    pg.update(shown, total, !!cursor || !!olderThan, "traces", capped);
    return tr;
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
