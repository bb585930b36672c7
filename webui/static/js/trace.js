// One trace: the span tree with a waterfall on one time axis, and the detail pane.
//
// Rows are virtualised: only the ones in view (plus a margin) exist in the DOM, so a
// trace of thousands of spans opens and scrolls like a small one. A running trace
// grows as span events arrive on the live stream.

import { api, ApiError } from "./api.js";
import { criticalPath, summarize } from "./critical.js";
import { bdi, clear, escapeBidi, h, icon, link, reveal } from "./dom.js";
import { fmtCost, fmtDuration, fmtFullTime, fmtNum, fmtTime, pluginHue } from "./format.js";
import { live } from "./live.js";
import { currentView, setView } from "./nav.js";
import { promptView } from "./prompt.js";
import { downloadLink, emptyState, notice, pluginChip, statusBadge } from "./widgets.js";

const ROW_H = 28;
const OVERSCAN = 10;
const DISPLAY_MAX = 2000; // characters of one string shown before "cut for display"
const TYPE_ICON = {
  message: "message", pipeline_stage: "stage", plugin_call: "handler", llm_call: "llm",
  tool_call: "tool", subagent_call: "agent", io_call: "io", custom: "dot",
};
const CP_KEY = "botrace-critical-path"; // "off" when the reader switched the highlight off
const CP_LIST = 5; // entries of "where the time went" before "other"
const TYPE_LABEL = {
  message: "message", pipeline_stage: "stage", plugin_call: "handler", llm_call: "LLM call",
  tool_call: "tool call", subagent_call: "subagent", io_call: "IO", custom: "custom",
};
const NAME_COL_KEY = "botrace-name-col"; // the tree's name column width (px) the reader chose
const NAME_COL_MIN = 140;
const WF_MIN = 160; // the waterfall keeps at least this much
const SLOWEST = 10; // entries of the "Slowest" list

/** localStorage, or nothing where the page may not use it (AstrBot's sandboxed frame). */
function stored(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function store(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    /* storage is off */
  }
}

/**
 * A find-in-trace query as terms: `type:tool status:error roll` is three terms, all must
 * match. Fields: name, plugin, type, status; a bare word (or "quoted words") matches the
 * name, the plugin, the tool or the model. Returns [{field, value}] in lower case.
 */
export function parseFind(text) {
  const terms = [];
  const re = /(\w+):"([^"]*)"?|(\w+):(\S+)|"([^"]*)"?|(\S+)/g;
  for (const m of String(text).matchAll(re)) {
    const field = (m[1] || m[3] || "").toLowerCase();
    let value = m[2] ?? m[4] ?? m[5] ?? m[6] ?? "";
    if (field && !["name", "plugin", "type", "status"].includes(field)) {
      value = `${field}:${value}`; // not a field: the words as they are
      terms.push({ field: null, value: value.toLowerCase() });
      continue;
    }
    value = value.toLowerCase();
    if (value) terms.push({ field: field || null, value });
  }
  return terms;
}

/** Whether span `s` matches every term of parseFind(). */
export function spanMatches(s, terms) {
  const name = String(s.name ?? "").toLowerCase();
  const p = s.plugin || {};
  const plugin = `${p.name ?? ""}\u0000${p.display_name ?? ""}`.toLowerCase();
  const m = s.meta || {};
  for (const { field, value } of terms) {
    if (field === "name") {
      if (!name.includes(value)) return false;
    } else if (field === "plugin") {
      if (!plugin.includes(value)) return false;
    } else if (field === "status") {
      if (!String(s.status ?? "").startsWith(value)) return false;
    } else if (field === "type") {
      const t = String(s.span_type ?? "");
      if (!(t.startsWith(value) || TYPE_ICON[t] === value || (TYPE_LABEL[t] || "").toLowerCase().startsWith(value))) return false;
    } else {
      const extra = `${m.tool_name ?? ""}\u0000${m.model ?? ""}`.toLowerCase();
      if (!name.includes(value) && !plugin.includes(value) && !extra.includes(value)) return false;
    }
  }
  return true;
}

export function traceView(root, ctx) {
  const tid = (ctx.id || "").toLowerCase();
  const nodes = new Map(); // span_id -> {s, children, parent}
  const roots = [];
  const waiting = new Map(); // parent span_id -> [nodes that arrived before their parent]
  const collapsed = new Set();
  const fullSpans = new Map(); // span_id -> span with its values
  let trace = null;
  let rows = []; // visible nodes in order, with depth
  let selected = null;
  let t0 = 0;
  let t1 = 0;
  let structureDirty = true;
  let frame = 0;
  let tick = 0;
  let loaded = false;
  let drawnMarked = false;
  let rootEnd = 0; // end of the trace's root span once it finished: spans starting later are late
  // the critical path: computed once the trace has finished, again when a (late) span arrives
  let cp = null;
  let cpDirty = true;
  let cpVersion = 0;
  let cpOn = stored(CP_KEY) !== "off";
  const cpSegs = new Map(); // span_id -> its stretches on the path [{startNs, endNs}]
  // find in trace: the query's matches in tree order (folded spans too), the one shown
  let findTerms = [];
  let findStale = false; // spans changed since the matches were worked out
  let matches = [];
  let matchSet = new Set();
  let matchAt = -1;
  let findVersion = 0;

  // -- skeleton ---------------------------------------------------------------------
  const headEl = h("header", { class: "trace-head card" });
  const cpBox = h("section", { class: "critical-summary card", "aria-label": "Where the time went" });
  const axis = h("div", { class: "col-wf axis", "aria-hidden": "true" });
  const spacer = h("div", { class: "tree-spacer" });
  const scroller = h("div", {
    class: "tree-scroll", tabindex: "0", role: "tree", "aria-label": "Span tree (arrow keys to move, Enter to fold)",
  }, spacer);
  const treeStatus = h("div", { class: "tree-status" });
  const detail = h("aside", { class: "detail-pane card", "aria-label": "Span details", tabindex: "-1" },
    emptyState("Select a span to see its input, output and metadata."));
  const findInput = h("input", {
    type: "search", class: "find-input", placeholder: "Find: name, plugin:…, type:tool, status:error",
    "aria-label": "Find in trace (Enter: next, Shift+Enter: previous)", autocomplete: "off", spellcheck: "false",
    title: "Find spans by name, plugin, type or status, e.g. type:tool status:error roll. Enter: next, Shift+Enter: previous, Esc: clear",
  });
  const findCount = h("span", { class: "find-count", role: "status", "aria-live": "polite" });
  const prevBtn = h("button", { type: "button", class: "secondary find-prev", title: "Previous match (Shift+Enter)", "aria-label": "Previous match", disabled: true, onclick: () => stepMatch(-1) }, "↑");
  const nextBtn = h("button", { type: "button", class: "secondary find-next", title: "Next match (Enter)", "aria-label": "Next match", disabled: true, onclick: () => stepMatch(1) }, "↓");
  const slowList = h("ol", { class: "slowest-list", hidden: true, "aria-label": "Slowest spans by their own time" });
  const slowBtn = h("button", { type: "button", class: "secondary slowest-btn", "aria-expanded": "false", title: "The spans that took longest themselves (own time, without their children)", onclick: () => toggleSlowest() }, "Slowest");
  const errBtn = h("button", { type: "button", class: "secondary errors-btn", disabled: true, title: "Jump to the next span that failed", onclick: () => nextError() }, "Errors");
  const findBar = h("div", { class: "tree-tools", role: "search" }, findInput, findCount, prevBtn, nextBtn,
    h("span", { class: "tools-gap" }), h("div", { class: "slowest" }, slowBtn, slowList), errBtn);
  const colHandle = h("div", {
    class: "col-resize", role: "separator", tabindex: "0", "aria-orientation": "vertical",
    "aria-label": "Width of the span names (arrow keys; double-click resets)", title: "Drag to resize the names (double-click: reset)",
  });
  const nameHead = h("div", { class: "col-name" }, "Span", colHandle);
  const treePane = h("section", { class: "tree-pane card", "aria-label": "Spans" },
    findBar, h("div", { class: "tree-head" }, nameHead, axis), treeStatus, scroller);
  root.append(h("div", { class: "trace-view" }, headEl, cpBox, h("div", { class: "trace-body" }, treePane, detail)));

  // -- the model ---------------------------------------------------------------------
  function finished(s) {
    return s.status && s.status !== "running";
  }

  function addSpan(s) {
    cpDirty = true;
    findStale = true;
    const known = nodes.get(s.span_id);
    if (known) {
      // a finished span never goes back to running (events and REST may arrive in any order)
      if (finished(known.s) && !finished(s)) return;
      known.s = { ...known.s, ...s };
      known.version++;
      return;
    }
    const node = { s, children: [], parent: null, version: 0 };
    nodes.set(s.span_id, node);
    const parent = s.parent_id ? nodes.get(s.parent_id) : null;
    if (parent) insertChild(parent, node);
    else {
      insertSorted(roots, node);
      if (s.parent_id) {
        if (!waiting.has(s.parent_id)) waiting.set(s.parent_id, []);
        waiting.get(s.parent_id).push(node);
      }
    }
    const early = waiting.get(s.span_id);
    if (early) {
      waiting.delete(s.span_id);
      for (const child of early) {
        roots.splice(roots.indexOf(child), 1);
        insertChild(node, child);
      }
    }
    structureDirty = true;
  }

  function insertChild(parent, node) {
    node.parent = parent;
    insertSorted(parent.children, node);
  }

  function insertSorted(list, node) {
    const start = node.s.start_ns || 0;
    let i = list.length;
    while (i > 0 && (list[i - 1].s.start_ns || 0) > start) i--;
    list.splice(i, 0, node);
  }

  function flatten() {
    rows = [];
    const stack = [];
    for (let i = roots.length - 1; i >= 0; i--) stack.push([roots[i], 0]);
    while (stack.length) {
      const [node, depth] = stack.pop();
      node.depth = depth;
      node.index = rows.length;
      rows.push(node);
      if (!collapsed.has(node.s.span_id)) {
        for (let i = node.children.length - 1; i >= 0; i--) stack.push([node.children[i], depth + 1]);
      }
    }
    structureDirty = false;
  }

  /** The root span's end (0 while it runs): a span that starts after it is late. */
  function rootEndNs() {
    for (const node of roots) {
      if (!node.s.parent_id) return finished(node.s) ? node.s.end_ns || 0 : 0;
    }
    return 0;
  }

  function isLate(s) {
    return rootEnd > 0 && (s.start_ns || 0) > rootEnd;
  }

  function timeBounds() {
    let lo = Infinity;
    let hi = 0;
    let running = false;
    for (const { s } of nodes.values()) {
      if (s.start_ns && s.start_ns < lo) lo = s.start_ns;
      if (s.end_ns && s.end_ns > hi) hi = s.end_ns;
      if (!finished(s)) running = true;
    }
    if (trace && trace.status === "running") running = true;
    if (running) hi = Math.max(hi, Date.now() * 1e6);
    if (lo === Infinity) lo = hi;
    t0 = lo;
    t1 = Math.max(hi, lo + 1);
    return running;
  }

  // -- drawing -------------------------------------------------------------------------
  const rendered = new Map(); // span_id -> {el, key}

  function schedule() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function draw() {
    frame = 0;
    if (structureDirty) flatten();
    const running = timeBounds();
    rootEnd = rootEndNs();
    updateCritical(running);
    if (findStale) refreshFind(false);
    spacer.style.height = `${rows.length * ROW_H}px`;
    drawAxis();
    const top = scroller.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((top + scroller.clientHeight) / ROW_H) + OVERSCAN);
    const keep = new Set();
    for (let i = first; i < last; i++) {
      const node = rows[i];
      const id = node.s.span_id;
      keep.add(id);
      const key = `${node.version}|${i}|${node.depth}|${selected === id}|${collapsed.has(id)}|${node.children.length}|${t0}|${t1}|${rootEnd}|${cpOn}|${cpVersion}|${findVersion}`;
      const have = rendered.get(id);
      if (have && have.key === key) continue;
      const el = rowElement(node, i);
      if (have) have.el.replaceWith(el);
      else spacer.append(el);
      rendered.set(id, { el, key });
    }
    for (const [id, r] of rendered) {
      if (!keep.has(id)) {
        r.el.remove();
        rendered.delete(id);
      }
    }
    if (selected && nodes.has(selected)) scroller.setAttribute("aria-activedescendant", `row-${selected}`);
    if (loaded && rows.length && !drawnMarked) {
      drawnMarked = true; // for tests and the benchmark: when the tree first showed, after loading
      performance.mark("botrace:trace-drawn", { detail: { spans: nodes.size } });
      root.dataset.drawn = String(nodes.size);
    }
    treeStatus.textContent = running ? `running… ${fmtNum(nodes.size)} spans so far` : "";
    treeStatus.hidden = !running;
    if (running && !tick) tick = setInterval(schedule, 250);
    if (!running && tick) {
      clearInterval(tick);
      tick = 0;
    }
  }

  function drawAxis() {
    clear(axis);
    const total = t1 - t0;
    for (const f of [0, 0.25, 0.5, 0.75, 1]) {
      const mark = h("span", { class: "tick" }, fmtDuration(total * f));
      mark.style.left = `${f * 100}%`;
      axis.append(mark);
    }
  }

  function rowElement(node, index) {
    const s = node.s;
    const id = s.span_id;
    const hasKids = node.children.length > 0;
    const isCollapsed = collapsed.has(id);
    const late = isLate(s);
    const onPath = cpOn && cp ? cp.contributions.get(id) : undefined;
    const pathClass = cpOn && cp ? (onPath !== undefined ? " critical" : " off-path") : "";
    const findClass = matchSet.has(id) ? (matches[matchAt] === id ? " match match-current" : " match") : "";
    const el = h("div", {
      class: `span-row type-${s.span_type} status-${s.status}${selected === id ? " selected" : ""}${late ? " late" : ""}${pathClass}${findClass}`,
      id: `row-${id}`, role: "treeitem", "aria-level": String(node.depth + 1),
      "aria-selected": String(selected === id), dataset: { spanId: id, index: String(index) },
    });
    if (hasKids) el.setAttribute("aria-expanded", String(!isCollapsed));
    el.style.transform = `translateY(${index * ROW_H}px)`;

    const indent = h("span", { class: "indent" });
    indent.style.width = `${node.depth * 16}px`;
    const caret = hasKids
      ? h("button", { type: "button", class: `caret${isCollapsed ? " closed" : ""}`, tabindex: "-1", "aria-hidden": "true", title: isCollapsed ? "Expand" : "Collapse" }, icon("chevron", "icon icon-sm"))
      : h("span", { class: "caret-space" });
    caret.addEventListener("click", (ev) => {
      ev.stopPropagation();
      toggle(id);
    });
    const plugin = s.plugin && s.plugin.name ? s.plugin : null;
    const cpMark = onPath !== undefined
      ? h("span", { class: "cp-mark", role: "img", "aria-label": "on the critical path",
        title: `On the critical path: ${fmtDuration(onPath)} (${pctText(onPath / cp.totalNs)} of the trace)` }, "◆")
      : null;
    const name = h("div", { class: "col-name" }, indent, caret, cpMark,
      icon(TYPE_ICON[s.span_type] || "dot", "icon type-icon"),
      h("span", { class: "span-name", title: `${s.name} (${TYPE_LABEL[s.span_type] || s.span_type})` }, bdi(s.name)),
      plugin ? pluginChip(plugin.name, plugin.plugin_type, plugin.display_name) : null,
      late ? h("span", { class: "chip late", title: "started after the message's trace had ended" }, "late") : null,
      s.status === "error" ? h("span", { class: "err-mark", title: s.error ? errorSummary(s.error) : "error" }, "!") : null,
      hasKids && isCollapsed ? h("span", { class: "folded" }, `+${countBelow(node)}`) : null);

    const total = t1 - t0;
    const start = (s.start_ns || t0) - t0;
    const end = (s.end_ns || (finished(s) ? s.start_ns : t1)) - t0;
    const bar = h("div", { class: `bar status-${s.status}` });
    bar.style.left = `${(start / total) * 100}%`;
    bar.style.width = `max(2px, ${(Math.max(0, end - start) / total) * 100}%)`;
    if (plugin) bar.style.setProperty("--ph", String(pluginHue(plugin.name)));
    else bar.classList.add("no-plugin");
    const label = h("span", { class: "bar-label" }, finished(s) ? fmtDuration(s.duration_ns ?? end - start) : "…");
    label.style.left = `${(end / total) * 100}%`;
    if (end / total > 0.8) label.classList.add("inside");
    const stretches = onPath !== undefined ? (cpSegs.get(id) || []).map((seg) => {
      const mark = h("div", { class: "cp-seg" });
      mark.style.left = `${((seg.startNs - t0) / total) * 100}%`;
      mark.style.width = `max(2px, ${((seg.endNs - seg.startNs) / total) * 100}%)`;
      return mark;
    }) : [];
    const wf = h("div", { class: "col-wf" }, bar, stretches, label);
    el.append(name, wf);
    el.addEventListener("click", () => select(id, true));
    el.addEventListener("dblclick", () => toggle(id));
    return el;
  }

  function countBelow(node) {
    let n = 0;
    const stack = [...node.children];
    while (stack.length) {
      const c = stack.pop();
      n++;
      stack.push(...c.children);
    }
    return n;
  }

  // -- find in trace, jumps ------------------------------------------------------------
  /** Every span in tree order, folded ones too (what find and the jumps walk). */
  function treeOrder() {
    const out = [];
    const stack = [];
    for (let i = roots.length - 1; i >= 0; i--) stack.push(roots[i]);
    while (stack.length) {
      const node = stack.pop();
      out.push(node);
      for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]);
    }
    return out;
  }

  /** Work out the matches again (the query or the spans changed); `jump`: show the first. */
  function refreshFind(jump) {
    findStale = false;
    const before = matches[matchAt];
    const errors = [];
    const found = [];
    for (const node of treeOrder()) {
      if (node.s.status === "error") errors.push(node.s.span_id);
      if (findTerms.length && spanMatches(node.s, findTerms)) found.push(node.s.span_id);
    }
    errorIds = errors;
    errBtn.disabled = !errors.length;
    errBtn.textContent = errors.length ? `Errors ${fmtNum(errors.length)}` : "No errors";
    matches = found;
    matchSet = new Set(found);
    matchAt = before ? found.indexOf(before) : -1;
    if (jump && found.length) {
      // the first match at or after the selected span
      const from = selected && nodes.has(selected) ? treeIndex(selected) : 0;
      const order = orderIndex();
      let k = found.findIndex((id) => order.get(id) >= from);
      if (k < 0) k = 0;
      matchAt = k;
      jumpTo(found[k]);
    }
    findVersion++;
    showFindCount();
    schedule();
  }

  let orderCache = null;
  let orderCacheSize = -1;
  function orderIndex() {
    if (!orderCache || orderCacheSize !== nodes.size || structureDirty) {
      orderCache = new Map(treeOrder().map((n, i) => [n.s.span_id, i]));
      orderCacheSize = nodes.size;
    }
    return orderCache;
  }

  function treeIndex(id) {
    return orderIndex().get(id) ?? 0;
  }

  function showFindCount() {
    const n = matches.length;
    prevBtn.disabled = nextBtn.disabled = !n;
    findBar.classList.toggle("finding", findTerms.length > 0);
    treePane.classList.toggle("finding", findTerms.length > 0);
    if (!findTerms.length) findCount.textContent = "";
    else if (!n) findCount.textContent = "no matches";
    else if (matchAt < 0) findCount.textContent = `${fmtNum(n)} ${n === 1 ? "match" : "matches"}`;
    else findCount.textContent = `${fmtNum(matchAt + 1)} of ${fmtNum(n)}`;
    findCount.dataset.count = String(n);
  }

  function stepMatch(dir) {
    if (findStale) refreshFind(false);
    if (!matches.length) return;
    if (matchAt < 0) {
      // from the selected span: the next (or previous) match in tree order
      const from = selected && nodes.has(selected) ? treeIndex(selected) : -1;
      const order = orderIndex();
      if (dir > 0) {
        matchAt = matches.findIndex((id) => order.get(id) > from);
        if (matchAt < 0) matchAt = 0;
      } else {
        matchAt = -1;
        for (let k = matches.length - 1; k >= 0; k--) {
          if (order.get(matches[k]) < from) {
            matchAt = k;
            break;
          }
        }
        if (matchAt < 0) matchAt = matches.length - 1;
      }
    } else {
      matchAt = (matchAt + dir + matches.length) % matches.length;
    }
    findVersion++;
    jumpTo(matches[matchAt]);
    showFindCount();
  }

  /** Select a span and bring its row into view, in the tree and in the window. */
  function jumpTo(id) {
    select(id, true);
    requestAnimationFrame(() => { // after the draw select() scheduled
      const el = document.getElementById(`row-${id}`);
      if (el && el.isConnected) el.scrollIntoView({ block: "nearest" });
    });
  }

  let findTimer = 0;
  findInput.addEventListener("input", () => {
    clearTimeout(findTimer);
    findTimer = setTimeout(() => {
      findTerms = parseFind(findInput.value);
      matchAt = -1;
      refreshFind(false);
    }, 120);
  });
  findInput.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      if (findTimer) {
        clearTimeout(findTimer);
        findTimer = 0;
        const terms = parseFind(findInput.value);
        if (JSON.stringify(terms) !== JSON.stringify(findTerms)) {
          findTerms = terms;
          matchAt = -1;
          refreshFind(false);
        }
      }
      stepMatch(ev.shiftKey ? -1 : 1);
    } else if (ev.key === "Escape" && findInput.value) {
      ev.preventDefault();
      findInput.value = "";
      findTerms = [];
      matchAt = -1;
      refreshFind(false);
    }
  });

  let errorIds = [];
  function nextError() {
    if (findStale) refreshFind(false);
    if (!errorIds.length) return;
    const from = selected && nodes.has(selected) ? treeIndex(selected) : -1;
    const order = orderIndex();
    let next = errorIds.find((id) => order.get(id) > from);
    if (!next) next = errorIds[0];
    jumpTo(next);
    const k = errorIds.indexOf(next);
    errBtn.textContent = `Errors ${fmtNum(k + 1)}/${fmtNum(errorIds.length)}`;
  }

  /** Own time (duration minus the time its children cover, merged) of a finished span. */
  function selfNs(node) {
    const s = node.s;
    if (!finished(s) || s.end_ns === undefined || s.end_ns === null) return -1;
    const lo = s.start_ns || 0;
    const hi = s.end_ns;
    const spans = node.children.map((c) => [Math.max(lo, c.s.start_ns || lo), Math.min(hi, c.s.end_ns || hi)])
      .filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
    let covered = 0;
    let curA = -1;
    let curB = -1;
    for (const [a, b] of spans) {
      if (a > curB) {
        covered += curB - curA;
        curA = a;
        curB = b;
      } else if (b > curB) curB = b;
    }
    covered += curB - curA;
    return Math.max(0, hi - lo - covered);
  }

  function toggleSlowest(open = slowList.hidden) {
    slowList.hidden = !open;
    slowBtn.setAttribute("aria-expanded", String(open));
    if (!open) return;
    clear(slowList);
    const ranked = [...nodes.values()].map((n) => [n, selfNs(n)]).filter(([, ns]) => ns >= 0)
      .sort((x, y) => y[1] - x[1]).slice(0, SLOWEST);
    if (!ranked.length) slowList.append(h("li", { class: "hint" }, "No finished spans yet."));
    for (const [n, ns] of ranked) {
      const p = n.s.plugin && n.s.plugin.name ? n.s.plugin : null;
      slowList.append(h("li", null, h("button", {
        type: "button", class: "link-button slow-entry", dataset: { span: n.s.span_id },
        title: `${fmtDuration(ns)} own time, ${fmtDuration(n.s.duration_ns)} in all`,
        onclick: () => {
          toggleSlowest(false);
          jumpTo(n.s.span_id);
          scroller.focus({ preventScroll: true });
        },
      }, h("span", { class: "slow-dur" }, fmtDuration(ns)), " ", bdi(n.s.name),
      p ? h("span", { class: "slow-plugin" }, " (", bdi(p.display_name || p.name), ")") : null)));
    }
  }
  slowList.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      toggleSlowest(false);
      slowBtn.focus();
    }
  });

  // -- the name column's width -----------------------------------------------------------
  let nameCol = Number(stored(NAME_COL_KEY)) || 0; // px; 0: the stylesheet's default
  function applyNameCol(px, save) {
    const paneW = treePane.clientWidth || 1000;
    nameCol = px ? Math.round(Math.max(NAME_COL_MIN, Math.min(px, paneW - WF_MIN))) : 0;
    if (nameCol) treePane.style.setProperty("--name-col", `${nameCol}px`);
    else treePane.style.removeProperty("--name-col");
    const now = nameCol || Math.round(nameHead.getBoundingClientRect().width);
    colHandle.setAttribute("aria-valuenow", String(now));
    colHandle.setAttribute("aria-valuemin", String(NAME_COL_MIN));
    colHandle.setAttribute("aria-valuemax", String(Math.max(NAME_COL_MIN, paneW - WF_MIN)));
    if (save) store(NAME_COL_KEY, nameCol ? String(nameCol) : null);
  }
  colHandle.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    const startX = ev.clientX;
    const startW = nameHead.getBoundingClientRect().width;
    colHandle.setPointerCapture(ev.pointerId);
    treePane.classList.add("resizing");
    const move = (e) => applyNameCol(startW + e.clientX - startX, false);
    const up = () => {
      colHandle.removeEventListener("pointermove", move);
      colHandle.removeEventListener("pointerup", up);
      colHandle.removeEventListener("pointercancel", up);
      treePane.classList.remove("resizing");
      applyNameCol(nameCol, true);
    };
    colHandle.addEventListener("pointermove", move);
    colHandle.addEventListener("pointerup", up);
    colHandle.addEventListener("pointercancel", up);
  });
  colHandle.addEventListener("dblclick", () => applyNameCol(0, true));
  applyNameCol(nameCol, false);
  colHandle.addEventListener("keydown", (ev) => {
    const w = nameHead.getBoundingClientRect().width;
    const step = ev.shiftKey ? 80 : 20;
    if (ev.key === "ArrowLeft") applyNameCol(w - step, true);
    else if (ev.key === "ArrowRight") applyNameCol(w + step, true);
    else if (ev.key === "Home") applyNameCol(NAME_COL_MIN, true);
    else if (ev.key === "End") applyNameCol(1e6, true);
    else return;
    ev.preventDefault();
  });

  // -- critical path -------------------------------------------------------------------
  /** Recompute the path when spans changed and the trace is not running (cheap: n log n). */
  function updateCritical(running) {
    if (!cpDirty && !(running && cp)) return;
    if (running) {
      if (cp || !cpBox.dataset.state) {
        cp = null;
        cpSegs.clear();
        cpVersion++;
        drawCritical();
      }
      return; // computed when it finishes
    }
    cpDirty = false;
    cp = criticalPath([...nodes.values()].map((n) => n.s));
    cpSegs.clear();
    if (cp) {
      for (const seg of cp.segments) {
        if (!cpSegs.has(seg.spanId)) cpSegs.set(seg.spanId, []);
        cpSegs.get(seg.spanId).push(seg);
      }
    }
    cpVersion++;
    drawCritical();
  }

  function drawCritical() {
    clear(cpBox);
    const toggleBtn = h("button", {
      type: "button", class: "secondary cp-toggle", "aria-pressed": String(cpOn),
      title: "Mark the spans that determined the message's end-to-end time",
      onclick: () => {
        cpOn = !cpOn;
        store(CP_KEY, cpOn ? "on" : "off");
        cpVersion++;
        drawCritical();
        schedule();
      },
    }, h("span", { class: "cp-mark", "aria-hidden": "true" }, "◆"), " Critical path");
    const title = h("h2", null, "Where the time went");
    if (!cp) {
      cpBox.dataset.state = "running";
      cpBox.append(h("div", { class: "cp-head" }, title, toggleBtn),
        h("p", { class: "hint" }, "The critical path is worked out when the trace finishes."));
      return;
    }
    cpBox.dataset.state = "ready";
    const byId = new Map();
    for (const [id, n] of nodes) byId.set(id, n.s);
    const groups = summarize(byId, cp);
    const shown = groups.slice(0, CP_LIST);
    const rest = groups.slice(CP_LIST);
    const items = shown.map((g) => h("li", { dataset: { share: String(g.share) } },
      h("button", {
        type: "button", class: "link-button cp-entry", dataset: { span: g.spanIds[0] },
        title: `${g.spanIds.length > 1 ? `${g.spanIds.length} spans, ` : ""}${fmtDuration(g.ns)} on the critical path`,
        onclick: () => select(g.spanIds[0], true),
      }, h("span", { class: "cp-pct" }, pctText(g.share)), " ", bdi(g.label),
      g.spanIds.length > 1 ? h("span", { class: "cp-count" }, ` ×${g.spanIds.length}`) : null,
      h("span", { class: "cp-dur" }, ` ${fmtDuration(g.ns)}`))));
    if (rest.length) {
      const share = rest.reduce((a, g) => a + g.share, 0);
      items.push(h("li", { class: "cp-other", dataset: { share: String(share) } },
        h("span", { class: "cp-pct" }, pctText(share)), ` ${rest.length} other`));
    }
    cpBox.append(h("div", { class: "cp-head" }, title, toggleBtn),
      h("ol", { class: "cp-list" }, items));
  }

  function pctText(share) {
    const pct = share * 100;
    if (pct > 0 && pct < 1) return "<1 %";
    return `${Math.round(pct)} %`;
  }

  // -- interaction ---------------------------------------------------------------------
  function toggle(id) {
    const node = nodes.get(id);
    if (!node || !node.children.length) return;
    if (collapsed.has(id)) collapsed.delete(id);
    else collapsed.add(id);
    structureDirty = true;
    schedule();
  }

  function setAll(open) {
    collapsed.clear();
    if (!open) for (const [id, n] of nodes) if (n.children.length && n.parent) collapsed.add(id);
    structureDirty = true;
    schedule();
  }

  function select(id, showDetail) {
    selected = id;
    const node = nodes.get(id);
    if (!node) return;
    // reveal it: unfold its ancestors
    for (let p = node.parent; p; p = p.parent) {
      if (collapsed.delete(p.s.span_id)) structureDirty = true;
    }
    if (structureDirty) flatten();
    ensureVisible(node.index);
    schedule();
    if (showDetail) showSpan(id);
    const { path, params } = currentView();
    params.set("span", id);
    setView(`${path}?${params}`, { replace: true });
  }

  function ensureVisible(index) {
    const top = index * ROW_H;
    if (top < scroller.scrollTop) scroller.scrollTop = top;
    else if (top + ROW_H > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = top + ROW_H - scroller.clientHeight;
  }

  scroller.addEventListener("scroll", schedule, { passive: true });
  const onResize = () => schedule();
  window.addEventListener("resize", onResize);

  scroller.addEventListener("keydown", (ev) => {
    if (!rows.length) return;
    if (structureDirty) flatten();
    const cur = selected && nodes.has(selected) ? nodes.get(selected) : null;
    const i = cur ? cur.index : -1;
    const page = Math.max(1, Math.floor(scroller.clientHeight / ROW_H) - 1);
    const go = (j) => select(rows[Math.max(0, Math.min(rows.length - 1, j))].s.span_id, true);
    switch (ev.key) {
      case "ArrowDown": go(i + 1); break;
      case "ArrowUp": go(i <= 0 ? 0 : i - 1); break;
      case "PageDown": go(i + page); break;
      case "PageUp": go(i - page); break;
      case "Home": go(0); break;
      case "End": go(rows.length - 1); break;
      case "ArrowRight":
        if (!cur) go(0);
        else if (cur.children.length && collapsed.has(selected)) toggle(selected);
        else if (cur.children.length) go(i + 1);
        break;
      case "ArrowLeft":
        if (cur && cur.children.length && !collapsed.has(selected)) toggle(selected);
        else if (cur && cur.parent) select(cur.parent.s.span_id, true);
        break;
      case "Enter":
      case " ":
        if (cur) toggle(selected);
        break;
      case "f":
        if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
        findInput.focus();
        findInput.select();
        break;
      case "n":
      case "N":
        if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
        stepMatch(ev.shiftKey ? -1 : 1);
        break;
      default:
        return;
    }
    ev.preventDefault();
  });

  // -- detail pane ---------------------------------------------------------------------
  let detailFor = null;
  async function showSpan(id) {
    detailFor = id;
    const node = nodes.get(id);
    if (!node) return;
    let full = fullSpans.get(id);
    if (!full && "input" in node.s && finished(node.s)) full = node.s; // a live event carries the values
    drawDetail(full || node.s, !full);
    if (full) return;
    try {
      full = await api.get(`traces/${tid}/spans/${id}`);
      fullSpans.set(id, full);
    } catch (err) {
      full = "input" in node.s ? node.s : null;
      if (!full && detailFor === id) {
        detail.append(notice("info", err.status === 404 ? "Values not stored yet (the span is still running)." : err.message));
      }
    }
    if (full && detailFor === id) drawDetail(full, false);
  }

  function drawDetail(s, loading) {
    clear(detail);
    const plugin = s.plugin && s.plugin.name ? s.plugin : null;
    const start = (s.start_ns || t0) - t0;
    detail.append(
      h("h2", { class: "detail-title" }, icon(TYPE_ICON[s.span_type] || "dot", "icon type-icon"), bdi(s.name)),
      h("div", { class: "detail-tags" },
        h("span", { class: "chip type" }, TYPE_LABEL[s.span_type] || s.span_type),
        plugin ? pluginChip(plugin.name, plugin.plugin_type, plugin.display_name) : null,
        statusBadge(s.status)),
    );
    const kv = [
      ["Starts at", `+${fmtDuration(start)}`],
      ["Duration", finished(s) ? fmtDuration(s.duration_ns) : "running…"],
    ];
    if (isLate(s)) kv.push(["Late", `starts ${fmtDuration(s.start_ns - rootEnd)} after the trace ended`]);
    if (s.self_ns !== undefined && s.self_ns !== null) kv.push(["Self time", fmtDuration(s.self_ns)]);
    const m = s.meta || {};
    if (m.model) kv.push(["Model", [bdi(m.model), m.provider ? [" (", bdi(m.provider), ")"] : null]]);
    if (m.input_tokens !== undefined || m.output_tokens !== undefined) {
      kv.push(["Tokens", `${fmtNum(m.input_tokens || 0)} in / ${fmtNum(m.output_tokens || 0)} out${m.cached_tokens ? ` / ${fmtNum(m.cached_tokens)} cached` : ""}`]);
    }
    if (m.ttft_ms !== undefined) kv.push(["First token", `${fmtNum(m.ttft_ms)} ms`]);
    if (s.cost_usd) kv.push(["Cost", fmtCost(s.cost_usd)]);
    if (plugin) {
      kv.push(["Plugin", [bdi(plugin.display_name || plugin.name), ` · ${plugin.plugin_type === "builtin" ? "builtin" : "third-party"}`,
        plugin.version ? [" · v", bdi(plugin.version)] : null]]);
    }
    kv.push(["Span id", s.span_id]);
    if (s.parent_id) kv.push(["Parent", s.parent_id]);
    detail.append(h("dl", { class: "kv" }, kv.map(([k, v]) => [h("dt", null, k), h("dd", null, v)])));

    let cut = false;
    if (s.error) {
      // cut for display like the values: the message from its start, the traceback from its end
      const [message, messageCut] = clip(String(s.error.message ?? ""));
      const [traceback, tracebackCut] = clipStart(String(s.error.traceback ?? ""));
      cut = messageCut || tracebackCut;
      detail.append(h("section", { class: "error-box", "aria-label": "Error" },
        h("div", { class: "error-head" }, h("strong", null, bdi(s.error.type || "Error")), ": ", bdi(message)),
        traceback ? h("pre", { class: "traceback" }, traceback) : null));
    }
    if (s.truncated) {
      detail.append(notice("warn", "Some values of this span were cut when they were recorded (the trace's size limits)."));
    }
    if (loading) {
      detail.append(h("p", { class: "hint" }, "Loading values…"));
      return;
    }
    const chat = promptView(s); // an llm_call's request as a chat, a hook's additions (prompt.js)
    if (chat) detail.append(chat.el);
    for (const key of ["input", "output", "meta"]) {
      const value = s[key];
      if (chat && chat.replaces.includes(key)) continue;
      if (!value || (typeof value === "object" && !Object.keys(value).length)) continue;
      const [text, wasCut] = displayJson(value);
      cut = cut || wasCut;
      detail.append(h("section", { class: `values values-${key}` },
        h("h3", null, key[0].toUpperCase() + key.slice(1)), h("pre", { class: "json" }, text)));
    }
    if (s.events && s.events.length) {
      detail.append(h("section", { class: "values" }, h("h3", null, "Events"),
        h("ol", { class: "events" }, s.events.map((e) =>
          h("li", null, h("span", { class: "ev-time" }, `+${fmtDuration((e.time_ns || t0) - t0)}`), " ", h("strong", null, bdi(e.name)),
            e.attributes && Object.keys(e.attributes).length ? h("pre", { class: "json" }, displayJson(e.attributes)[0]) : null)))));
    }
    if (cut) detail.append(notice("warn", "Long values are cut for display. The download has them in full."));
    detail.append(h("p", { class: "downloads" },
      downloadLink(`traces/${tid}/spans/${s.span_id}`, { download: "true" }, `span-${tid}-${s.span_id}.json`, null,
        icon("download", "icon icon-sm"), " Full span (JSON)")));
  }

  // -- header ----------------------------------------------------------------------------
  function drawHead() {
    clear(headEl);
    const t = trace || {};
    // a running trace's summary counts only what it had when it started; the tree knows better
    const spanCount = t.status === "running" ? Math.max(t.span_count || 0, nodes.size) : t.span_count || nodes.size;
    let inTok = t.input_tokens;
    let outTok = t.output_tokens;
    let cost = t.cost_usd;
    if (t.status === "running" || inTok === undefined) {
      inTok = 0;
      outTok = 0;
      cost = 0;
      for (const { s } of nodes.values()) {
        inTok += (s.meta && s.meta.input_tokens) || 0;
        outTok += (s.meta && s.meta.output_tokens) || 0;
        cost += s.cost_usd || 0;
      }
    }
    const facts = [
      ["Started", h("span", { title: fmtFullTime(t.start_ns) }, fmtTime(t.start_ns))],
      ["Duration", t.status === "running" ? "running…" : fmtDuration(t.duration_ns)],
      ["Spans", fmtNum(spanCount)],
      ["Tokens", `${fmtNum(inTok)} in / ${fmtNum(outTok)} out${t.cached_tokens ? ` (${fmtNum(t.cached_tokens)} cached)` : ""}`],
      ["Cost", fmtCost(cost)],
    ];
    if (t.user_id) {
      facts.push(["User", link(`user?user_id=${encodeURIComponent(t.user_id)}`, null,
        t.sender && t.sender !== t.user_id ? [bdi(t.sender), " (", bdi(t.user_id), ")"] : bdi(t.user_id))]);
    }
    if (t.session_id || t.umo) {
      const q = t.session_id ? `session_id=${encodeURIComponent(t.session_id)}` : `umo=${encodeURIComponent(t.umo)}`;
      facts.push(["Conversation", link(`conversation?${q}`, { title: t.umo || "" }, bdi(t.session_id || t.umo))]);
    }
    if (t.agent_type) facts.push(["Agent", bdi(t.agent_type)]);
    if (t.outline) document.title = `${reveal(t.outline.slice(0, 60))} · ${document.body.dataset.title || "botrace"}`;
    headEl.append(
      h("div", { class: "crumbs" }, link("", null, "← Traces")),
      h("div", { class: "trace-title" }, statusBadge(t.status), h("h1", { class: "outline" }, bdi(t.outline || "(no text)"))),
      h("dl", { class: "facts" }, facts.map(([k, v]) => h("div", null, h("dt", null, k), h("dd", null, v)))),
    );
    const warnings = [];
    if (t.dropped_spans) warnings.push(`${fmtNum(t.dropped_spans)} spans were dropped (span budget).`);
    if (t.truncated) warnings.push("Some values were cut to the size limits (long text, long lists or the trace's byte budget).");
    if (t.late_spans) {
      warnings.push(`${fmtNum(t.late_spans)} ${t.late_spans === 1 ? "span" : "spans"} started after the message's trace had ended `
        + "(work the message left running, e.g. a background task); they are marked late in the tree.");
    }
    if (warnings.length) headEl.append(notice("warn", warnings.join(" ")));
    headEl.append(h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => setAll(true) }, "Expand all"),
      h("button", { type: "button", class: "secondary", onclick: () => setAll(false) }, "Collapse all"),
      downloadLink(`traces/${tid}/download`, { format: "json" }, `trace-${tid}.json`, { class: "button secondary" },
        icon("download", "icon icon-sm"), " JSON"),
      downloadLink(`traces/${tid}/download`, { format: "otlp" }, `trace-${tid}.otlp.json`, { class: "button secondary" },
        icon("download", "icon icon-sm"), " OTLP"),
      h("button", {
        type: "button", class: "secondary compare-with", "aria-expanded": String(!pickEl.hidden),
        title: "Compare this trace with another, span by span", onclick: (ev) => togglePick(ev.currentTarget),
      }, "Compare with…")));
    headEl.append(pickEl); // kept across redraws of the header
  }

  // -- compare with another trace --------------------------------------------------------
  const pickEl = h("section", { class: "compare-pick", hidden: true, "aria-label": "Compare with another trace" });
  async function togglePick(btn) {
    pickEl.hidden = !pickEl.hidden;
    btn.setAttribute("aria-expanded", String(!pickEl.hidden));
    if (pickEl.hidden) return;
    clear(pickEl);
    const idInput = h("input", { type: "text", class: "compare-id", placeholder: "a trace id (32 hex characters)", "aria-label": "Trace id to compare with", maxlength: "32", spellcheck: "false" });
    const go = () => {
      const other = idInput.value.trim().toLowerCase();
      if (!/^[0-9a-f]{32}$/.test(other)) {
        idInput.setCustomValidity("32 hex characters");
        idInput.reportValidity();
        return;
      }
      ctx.navigate(`compare/${tid}/${other}`);
    };
    idInput.addEventListener("input", () => idInput.setCustomValidity(""));
    idInput.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") go();
    });
    const list = h("ul", { class: "compare-candidates" }, h("li", { class: "hint" }, "Looking for traces of the same message…"));
    pickEl.append(h("h2", null, "Compare with…"), list,
      h("div", { class: "compare-by-id" }, idInput, h("button", { type: "button", class: "secondary", onclick: go }, "Compare")));
    const outline = (trace && trace.outline) || "";
    let found = [];
    try {
      const same = outline ? await api.get("traces", { q: outline.slice(0, 500), limit: 50 }) : { traces: [] };
      found = same.traces.filter((t) => t.trace_id !== tid && t.outline === outline).slice(0, 10);
      if (!found.length) {
        const recent = await api.get("traces", { limit: 11 });
        found = recent.traces.filter((t) => t.trace_id !== tid).slice(0, 10);
        list.dataset.kind = "recent";
      } else list.dataset.kind = "same";
    } catch (err) {
      clear(list).append(h("li", null, notice("error", err.message)));
      return;
    }
    clear(list);
    list.append(h("li", { class: "hint" }, list.dataset.kind === "same"
      ? "Traces of the same message, newest first:" : "No other trace of this message; recent traces:"));
    for (const t of found) {
      list.append(h("li", null, link(`compare/${tid}/${t.trace_id}`, { class: "compare-candidate", dataset: { trace: t.trace_id } },
        statusBadge(t.status), " ", h("span", { class: "cand-time" }, fmtTime(t.start_ns)), " ",
        h("span", { class: "cand-dur" }, fmtDuration(t.duration_ns)), " ", bdi(t.outline || "(no text)"))));
    }
  }

  // -- data ------------------------------------------------------------------------------
  function seedFromLive() {
    const entry = live.recent.get(tid);
    if (!entry) return false;
    trace = { ...entry.trace, ...(trace || {}) };
    for (const s of entry.spans.values()) addSpan(s);
    return true;
  }

  async function load() {
    const fromLive = seedFromLive();
    if (fromLive) {
      drawHead();
      schedule();
    }
    try {
      const doc = await api.get(`traces/${tid}`, { shape: "flat", values: "none" });
      trace = trace && trace.status === "running" && doc.trace.status === "running" ? { ...doc.trace, ...trace } : doc.trace;
      for (const s of doc.spans) addSpan(s);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404 && (fromLive || nodes.size))) {
        clear(treeStatus).append(notice(err.status === 404 ? "info" : "error",
          err.status === 404 ? "No trace with this id (yet). If it is running, it will appear here." : err.message));
        treeStatus.hidden = false;
      }
    }
    loaded = true;
    drawHead();
    const want = ctx.params.get("span");
    if (want && nodes.has(want)) select(want, true);
    else if (!selected && roots.length) select(roots[0].s.span_id, false);
    schedule();
  }

  // live growth of this trace
  const offs = [
    live.on("trace_started", (t) => {
      if (t.trace_id !== tid) return;
      trace = { ...t, ...(trace || {}) };
      drawHead();
    }),
    live.on("trace_finished", (t) => {
      if (t.trace_id !== tid) return;
      trace = { ...(trace || {}), ...t };
      drawHead();
      schedule();
    }),
    live.on("span_started", (s) => {
      if (s.trace_id !== tid) return;
      addSpan(s);
      if (!selected) selected = s.span_id;
      if (loaded) drawHeadSoon();
      schedule();
    }),
    live.on("span_finished", (s) => {
      if (s.trace_id !== tid) return;
      addSpan(s);
      fullSpans.set(s.span_id, s);
      if (detailFor === s.span_id) drawDetail(s, false);
      if (loaded) drawHeadSoon();
      schedule();
    }),
    live.on("resync", () => {
      if (trace && trace.status !== "running") return;
      load();
    }),
  ];
  let headTimer = 0;
  function drawHeadSoon() {
    if (!headTimer) headTimer = setTimeout(() => {
      headTimer = 0;
      drawHead();
    }, 200);
  }

  load();
  scroller.focus({ preventScroll: true });
  return {
    unmount() {
      offs.forEach((off) => off());
      clearInterval(tick);
      clearTimeout(headTimer);
      clearTimeout(findTimer);
      cancelAnimationFrame(frame);
      window.removeEventListener("resize", onResize);
    },
  };
}

/** Pretty JSON with long strings cut for display, bidi controls as \u escapes;
 * returns [text, whether anything was cut]. */
export function displayJson(value) {
  let cut = false;
  const text = JSON.stringify(value, (_k, v) => {
    if (typeof v !== "string") return v;
    const [shown, wasCut] = clip(v);
    cut = cut || wasCut;
    return shown;
  }, 2);
  return [text === undefined ? String(value) : escapeBidi(text), cut];
}

/** "Type: message" for a tooltip, the message cut short. */
function errorSummary(error) {
  return `${error.type}: ${clip(String(error.message ?? ""), 300)[0]}`;
}

/** The first `max` characters of `text`, marked when cut; returns [text, whether cut]. */
function clip(text, max = DISPLAY_MAX) {
  if (text.length <= max) return [text, false];
  return [`${text.slice(0, max)}… [cut for display: ${text.length - max} more characters]`, true];
}

/** The last `max` characters of `text` (a traceback's end says most), marked when cut. */
function clipStart(text, max = DISPLAY_MAX) {
  if (text.length <= max) return [text, false];
  return [`[cut for display: ${text.length - max} earlier characters] …${text.slice(-max)}`, true];
}
