// Two traces side by side: their spans aligned by path (GET /api/v1/compare, botrace/compare.py),
// each row with both durations and tokens and B minus A; spans in one trace only are marked.
//
// The address is compare/<a>/<b>. The trace view's "Compare with…" gets here.

import { api } from "./api.js";
import { bdi, clear, h, icon, link } from "./dom.js";
import { fmtCost, fmtDuration, fmtNum, fmtTime } from "./format.js";
import { emptyState, notice, pluginChip, statusBadge } from "./widgets.js";

const TYPE_ICON = {
  message: "message", pipeline_stage: "stage", plugin_call: "handler", llm_call: "llm",
  tool_call: "tool", subagent_call: "agent", io_call: "io", custom: "dot",
};
const SHOW_ROWS = 1000; // rows drawn before "Show all"
const SAME = 0.05; // a duration within 5 % (or 1 ms) of the other side's reads as the same

export function compareView(root, ctx) {
  const a = (ctx.a || "").toLowerCase();
  const b = (ctx.b || "").toLowerCase();
  const head = h("header", { class: "trace-head card compare-head" });
  const body = h("section", { class: "compare-pane card", "aria-label": "Spans of both traces" });
  root.append(h("div", { class: "compare-view" }, head, body));
  let gone = false;
  let showAll = false;
  let onlyDiff = false;
  let doc = null;

  async function load() {
    head.append(h("div", { class: "crumbs" }, link("", null, "← Traces")), h("h1", null, "Compare two traces"));
    body.append(h("p", { class: "hint" }, "Loading…"));
    try {
      doc = await api.get("compare", { a, b });
    } catch (err) {
      if (gone) return;
      clear(body).append(notice(err.status === 404 ? "info" : "error",
        err.status === 404 ? `${err.message}: one of the two traces is not in the store.` : err.message));
      return;
    }
    if (gone) return;
    drawHead();
    drawRows();
    root.dataset.compared = String(doc.rows.length); // for tests: the rows are drawn
  }

  function side(t, letter) {
    return h("div", { class: `compare-side side-${letter}` },
      h("div", { class: "trace-title" }, h("span", { class: `side-tag tag-${letter}` }, letter.toUpperCase()),
        statusBadge(t.status),
        link(`traces/${t.trace_id}`, { class: "outline", title: t.trace_id }, bdi(t.outline || "(no text)"))),
      h("dl", { class: "facts" },
        fact("Started", fmtTime(t.start_ns)),
        fact("Duration", fmtDuration(t.duration_ns)),
        fact("Spans", fmtNum(t.span_count || 0)),
        fact("Tokens", `${fmtNum(t.input_tokens || 0)} in / ${fmtNum(t.output_tokens || 0)} out`),
        fact("Cost", fmtCost(t.cost_usd || 0))));
  }

  function drawHead() {
    clear(head);
    const A = doc.a;
    const B = doc.b;
    const sum = doc.summary;
    const tokA = (A.input_tokens || 0) + (A.output_tokens || 0);
    const tokB = (B.input_tokens || 0) + (B.output_tokens || 0);
    // the spans whose own time differs most, leaving out differences that read as the same
    const largest = sum.largest.map((i) => doc.rows[i])
      .filter((r) => r.delta && tone(r.delta.self_ns, r.a.self_ns) !== "same");
    head.append(
      h("div", { class: "crumbs" }, link("", null, "← Traces")),
      h("div", { class: "compare-title" }, h("h1", null, "Compare two traces"),
        link(`compare/${b}/${a}`, { class: "button secondary swap", title: "Make B the baseline" }, "⇄ Swap")),
      h("div", { class: "compare-sides" }, side(A, "a"), side(B, "b")),
      h("dl", { class: "facts compare-delta" },
        fact("Duration B − A", deltaDuration(A.duration_ns, B.duration_ns)),
        fact("Tokens B − A", deltaNum(tokB - tokA)),
        fact("Cost B − A", A.cost_usd || B.cost_usd ? deltaCost((B.cost_usd || 0) - (A.cost_usd || 0)) : "–"),
        fact("Spans", h("span", { class: "compare-counts" },
          `${fmtNum(sum.aligned)} aligned · `,
          h("span", { class: "only-a-count" }, `${fmtNum(sum.only_a)} only in A`), " · ",
          h("span", { class: "only-b-count" }, `${fmtNum(sum.only_b)} only in B`)))),
    );
    if (!largest.length) {
      head.append(h("p", { class: "hint compare-largest" }, "No span's own time differs by more than 1 ms or 5 %."));
    } else {
      head.append(h("div", { class: "compare-largest" }, h("h2", null, "Largest differences (own time)"),
        h("ol", null, largest.map((r) => h("li", null, h("button", {
          type: "button", class: "link-button", title: r.path.join(" / "),
          onclick: () => focusRow(doc.rows.indexOf(r)),
        }, h("span", { class: `delta ${tone(r.delta.self_ns, r.a.self_ns)}` }, signed(fmtDuration(Math.abs(r.delta.self_ns)), r.delta.self_ns)),
        " ", bdi(r.name)))))));
    }
  }

  function focusRow(index) {
    if (index >= SHOW_ROWS && !showAll) {
      showAll = true;
      drawRows();
    }
    if (onlyDiff && !body.querySelector(`tr[data-row="${index}"]`)) {
      onlyDiff = false;
      drawRows();
    }
    const tr = body.querySelector(`tr[data-row="${index}"]`);
    if (!tr) return;
    for (const el of body.querySelectorAll("tr.flash")) el.classList.remove("flash");
    tr.classList.add("flash");
    tr.scrollIntoView({ block: "center" });
    tr.focus({ preventScroll: true });
  }

  function drawRows() {
    clear(body);
    const rows = doc.rows;
    if (!rows.length) {
      body.append(emptyState("Neither trace has spans."));
      return;
    }
    let maxDur = 1;
    for (const r of rows) {
      maxDur = Math.max(maxDur, (r.a && r.a.duration_ns) || 0, (r.b && r.b.duration_ns) || 0);
    }
    const shown = [];
    for (let i = 0; i < rows.length; i++) {
      if (onlyDiff && !differs(rows[i])) continue;
      shown.push(i);
    }
    const limit = showAll ? shown.length : Math.min(shown.length, SHOW_ROWS);
    const tbody = h("tbody");
    for (let k = 0; k < limit; k++) tbody.append(rowElement(rows[shown[k]], shown[k], maxDur));
    const toggle = h("label", { class: "only-diff" },
      h("input", { type: "checkbox", checked: onlyDiff, onchange: (ev) => {
        onlyDiff = ev.target.checked;
        drawRows();
      } }), " Only spans that differ (one side only, ±5 % time, other tokens)");
    body.append(
      h("div", { class: "compare-tools" }, toggle,
        h("span", { class: "hint" }, "Aligned by path: the names of a span's ancestors and its own; repeated names pair in order.")),
      h("div", { class: "table-wrap" }, h("table", { class: "compare" },
        h("thead", null, h("tr", null,
          h("th", { scope: "col" }, "Span"),
          h("th", { scope: "col", class: "c-bars" }, h("span", { class: "tag-a" }, "A"), " / ", h("span", { class: "tag-b" }, "B")),
          h("th", { scope: "col", class: "num" }, "A time"), h("th", { scope: "col", class: "num" }, "B time"),
          h("th", { scope: "col", class: "num" }, "Δ time"),
          h("th", { scope: "col", class: "num" }, "A tokens"), h("th", { scope: "col", class: "num" }, "B tokens"),
          h("th", { scope: "col", class: "num" }, "Δ tokens"))),
        tbody)));
    if (limit < shown.length) {
      body.append(h("p", { class: "pager" }, `${fmtNum(limit)} of ${fmtNum(shown.length)} spans shown `,
        h("button", { type: "button", class: "secondary", onclick: () => {
          showAll = true;
          drawRows();
        } }, `Show all ${fmtNum(shown.length)}`)));
    }
  }

  function rowElement(r, index, maxDur) {
    const s = r.a || r.b;
    const cls = r.only ? ` only-${r.only}` : "";
    const indent = h("span", { class: "indent" });
    indent.style.width = `${r.depth * 14}px`;
    const nameCell = h("th", { scope: "row", class: "c-span", title: r.path.join(" / ") },
      h("div", { class: "c-span-in" }, indent, icon(TYPE_ICON[r.span_type] || "dot", "icon type-icon"),
        h("span", { class: "span-name" }, bdi(r.name)),
        r.occurrence ? h("span", { class: "occ", title: `occurrence ${r.occurrence + 1} of this name here` }, `#${r.occurrence + 1}`) : null,
        s.plugin ? pluginChip(s.plugin, null, s.plugin_display) : null,
        r.only ? h("span", { class: `chip only-chip only-${r.only}` }, `only in ${r.only.toUpperCase()}`) : null));
    const bars = h("td", { class: "c-bars", "aria-hidden": "true" }, bar(r.a, "a", maxDur), bar(r.b, "b", maxDur));
    const tokA = r.a ? r.a.input_tokens + r.a.output_tokens : null;
    const tokB = r.b ? r.b.input_tokens + r.b.output_tokens : null;
    return h("tr", { class: `cmp-row${cls}`, tabindex: "-1", dataset: { row: String(index), only: r.only || "" } },
      nameCell, bars,
      h("td", { class: "num c-a" }, sideTime(r.a, doc.a.trace_id)),
      h("td", { class: "num c-b" }, sideTime(r.b, doc.b.trace_id)),
      h("td", { class: "num c-dt" }, r.delta ? deltaDuration(r.a.duration_ns, r.b.duration_ns) : "–"),
      h("td", { class: "num c-ta" }, tokA ? fmtNum(tokA) : r.a ? "–" : ""),
      h("td", { class: "num c-tb" }, tokB ? fmtNum(tokB) : r.b ? "–" : ""),
      h("td", { class: "num c-dtok" }, r.delta && r.delta.tokens ? deltaNum(r.delta.tokens) : "–"));
  }

  function sideTime(x, tid) {
    if (!x) return "";
    return link(`traces/${tid}?span=${x.span_id}`, { class: `status-${x.status}`, title: x.status === "error" ? "error: open the span" : "open the span" },
      fmtDuration(x.duration_ns), x.status === "error" ? h("span", { class: "err-mark" }, "!") : null);
  }

  load();
  return { unmount() { gone = true; } };
}

function bar(x, letter, maxDur) {
  const el = h("div", { class: `cmp-bar bar-${letter}` });
  if (x && x.duration_ns !== null && x.duration_ns !== undefined) el.style.width = `max(1px, ${(x.duration_ns / maxDur) * 100}%)`;
  else el.classList.add("none");
  return el;
}

function fact(k, v) {
  return h("div", null, h("dt", null, k), h("dd", null, v));
}

function differs(r) {
  if (r.only) return true;
  const d = r.delta;
  if (d.tokens) return true;
  return tone(d.duration_ns, r.a.duration_ns) !== "same";
}

/** "slower", "faster" or "same" for a change `d` of a value `base`. */
function tone(d, base) {
  if (d === null || d === undefined) return "same";
  if (Math.abs(d) < Math.max(1e6, Math.abs(base || 0) * SAME)) return "same";
  return d > 0 ? "slower" : "faster";
}

function signed(text, d) {
  return `${d > 0 ? "+" : d < 0 ? "−" : "±"}${text}`;
}

function deltaDuration(a, b) {
  if (a === null || a === undefined || b === null || b === undefined) return "–";
  const d = b - a;
  const pct = a ? ` (${d >= 0 ? "+" : "−"}${Math.round(Math.abs(d) / a * 100)} %)` : "";
  return h("span", { class: `delta ${tone(d, a)}`, dataset: { ns: String(d) } }, signed(fmtDuration(Math.abs(d)), d), pct);
}

function deltaNum(d) {
  return h("span", { class: `delta ${d > 0 ? "more" : d < 0 ? "less" : "same"}`, dataset: { n: String(d) } }, signed(fmtNum(Math.abs(d)), d));
}

function deltaCost(d) {
  return h("span", { class: `delta ${d > 0 ? "more" : d < 0 ? "less" : "same"}` }, signed(fmtCost(Math.abs(d)), d));
}
