// Latency over time: a duration scatter of the filtered list (SVG, no library). A point per
// finished trace (GET /latency: the newest ones matching the list's filters); an error is a
// cross, another status that is not ok a hollow square, so status never rests on colour
// alone. Click a point, or focus the chart and walk the points with the arrow keys and press
// Enter, to open its trace.

import { api } from "./api.js";
import { h } from "./dom.js";
import { fmtDuration, fmtFullTime, fmtNum, fmtTime } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const LIMIT = 500;
const HEIGHT = 150;
const PAD = { left: 58, right: 12, top: 10, bottom: 22 };
const OPEN_KEY = "botrace-latency-open";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

function remembered() {
  try {
    return localStorage.getItem(OPEN_KEY) !== "0";
  } catch {
    return true; // AstrBot's sandboxed frame: no storage, open
  }
}

function remember(open) {
  try {
    localStorage.setItem(OPEN_KEY, open ? "1" : "0");
  } catch {
    // nothing to remember it in
  }
}

function describe(p) {
  return `${fmtTime(p.start_ns)} · ${fmtDuration(p.duration_ns)} · ${p.status}`;
}

/**
 * latencyChart({open(traceId)}) -> {el, load(filters), onLive(summary, matches)}.
 * `load` draws the newest points for the filters; `onLive` adds a finished trace.
 */
export function latencyChart({ open }) {
  const status = h("span", { class: "latency-info" });
  const said = h("p", { class: "sr-only", "aria-live": "polite" });
  const plot = h("div", { class: "latency-plot" });
  const legend = h("span", { class: "latency-legend", "aria-hidden": "true" },
    h("span", { class: "lg lg-ok" }, "● ok"), h("span", { class: "lg lg-error" }, "✕ error"),
    h("span", { class: "lg lg-other" }, "□ other"));
  const details = h("details", { class: "latency card" },
    h("summary", null, h("span", { class: "latency-title" }, "Latency over time"), " ", status, legend),
    plot, said);
  details.open = remembered();
  let points = [];
  let more = false;
  let filters = {};
  let active = -1;
  let gen = 0;
  let loaded = false;

  details.addEventListener("toggle", () => {
    remember(details.open);
    if (details.open && !loaded) load(filters);
    else if (details.open) draw();
  });
  const resize = new ResizeObserver(() => {
    if (details.open && loaded) draw();
  });
  resize.observe(plot);
  // a point must not move under the pointer: live points wait until it leaves the chart
  let hovering = false;
  let stale = false;
  plot.addEventListener("pointerenter", () => { hovering = true; });
  plot.addEventListener("pointerleave", () => {
    hovering = false;
    if (stale && details.open) draw();
  });

  async function load(f) {
    filters = f;
    if (!details.open) {
      loaded = false;
      return;
    }
    const g = ++gen;
    try {
      const doc = await api.get("latency", { ...f, limit: LIMIT });
      if (g !== gen) return;
      points = doc.points.slice().reverse(); // oldest first: the arrow keys walk forward in time
      more = !!doc.more;
      loaded = true;
      active = -1;
      draw();
    } catch (err) {
      if (g !== gen) return;
      plot.replaceChildren(h("p", { class: "notice notice-error" }, `Latency: ${err.message}`));
    }
  }

  function draw() {
    stale = false;
    const errors = points.filter((p) => p.status === "error").length;
    status.textContent = points.length
      ? `${fmtNum(points.length)} ${more ? "newest " : ""}traces · ${fmtNum(errors)} errors`
      : "no finished traces";
    if (!points.length) {
      plot.replaceChildren(h("p", { class: "empty latency-empty" }, "No finished traces match these filters."));
      return;
    }
    const width = Math.max(320, plot.clientWidth || 800);
    const xs = points.map((p) => p.start_ns);
    let x0 = Math.min(...xs);
    let x1 = Math.max(...xs);
    if (x1 === x0) {
      x0 -= 1e9;
      x1 += 1e9;
    }
    // durations on a log scale (ms): one slow outlier must not flatten the rest
    const ms = points.map((p) => Math.max(p.duration_ns / 1e6, 0.001));
    let lo = Math.log10(Math.min(...ms));
    let hi = Math.log10(Math.max(...ms));
    if (hi - lo < 1) {
      const mid = (hi + lo) / 2;
      lo = mid - 0.5;
      hi = mid + 0.5;
    }
    const iw = width - PAD.left - PAD.right;
    const ih = HEIGHT - PAD.top - PAD.bottom;
    const X = (ns) => PAD.left + ((ns - x0) / (x1 - x0)) * iw;
    const Y = (v) => PAD.top + ih - ((Math.log10(Math.max(v, 0.001)) - lo) / (hi - lo)) * ih;

    const chart = svg("svg", {
      class: "latency-svg", width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, tabindex: "0",
      role: "img",
      "aria-label": `Trace durations over time, ${points.length} traces. Arrow keys pick a trace, Enter opens it.`,
    });
    const axis = svg("g", { class: "axis", "aria-hidden": "true" });
    for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) {
      const y = Y(10 ** e);
      axis.append(svg("line", { x1: PAD.left, x2: width - PAD.right, y1: y, y2: y, class: "grid" }));
      const label = svg("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end" });
      label.textContent = fmtDuration(10 ** e * 1e6);
      axis.append(label);
    }
    for (const [ns, anchor] of [[x0, "start"], [x1, "end"]]) {
      const label = svg("text", { x: X(ns), y: HEIGHT - 6, "text-anchor": anchor });
      label.textContent = fmtTime(ns);
      axis.append(label);
    }
    chart.append(axis);
    const dots = svg("g", { class: "points" });
    points.forEach((p, i) => {
      const x = X(p.start_ns).toFixed(1);
      const y = Y(p.duration_ns / 1e6).toFixed(1);
      const kind = p.status === "error" ? "error" : p.status === "ok" ? "ok" : "other";
      const shape = kind === "ok" ? svg("circle", { r: 3.5 })
        : kind === "error" ? svg("path", { d: "M-4,-4L4,4M-4,4L4,-4" })
          : svg("rect", { x: -3.5, y: -3.5, width: 7, height: 7 });
      const title = svg("title");
      title.textContent = `${fmtFullTime(p.start_ns)} · ${fmtDuration(p.duration_ns)} · ${p.status}`;
      const g = svg("g", { class: `pt pt-${kind}`, transform: `translate(${x},${y})`, "data-trace-id": p.trace_id, "data-index": i },
        title, svg("circle", { r: 7, class: "hit" }), shape);
      dots.append(g);
    });
    chart.append(dots);
    chart.addEventListener("click", (ev) => {
      const g = ev.target.closest("g.pt");
      if (g) open(g.dataset.traceId);
    });
    chart.addEventListener("keydown", (ev) => {
      const step = { ArrowRight: 1, ArrowLeft: -1, ArrowUp: 1, ArrowDown: -1 }[ev.key];
      if (step) {
        ev.preventDefault();
        pick(active < 0 ? (step > 0 ? points.length - 1 : 0) : Math.max(0, Math.min(points.length - 1, active + step)));
      } else if (ev.key === "Home" || ev.key === "End") {
        ev.preventDefault();
        pick(ev.key === "Home" ? 0 : points.length - 1);
      } else if (ev.key === "Enter" && active >= 0) {
        ev.preventDefault();
        open(points[active].trace_id);
      }
    });
    plot.replaceChildren(chart);
    if (active >= 0) pick(Math.min(active, points.length - 1));
  }

  function pick(i) {
    active = i;
    for (const g of plot.querySelectorAll("g.pt.active")) g.classList.remove("active");
    const g = plot.querySelector(`g.pt[data-index="${i}"]`);
    if (!g) return;
    g.classList.add("active");
    said.textContent = `${i + 1} of ${points.length}: ${describe(points[i])}`;
  }

  return {
    el: details,
    load,
    /** a finished trace that matches the list's filters, from the live stream */
    onLive(t) {
      if (!loaded || t.duration_ns === null || t.duration_ns === undefined || t.status === "running") return;
      if (points.some((p) => p.trace_id === t.trace_id)) return;
      points.push({ trace_id: t.trace_id, start_ns: t.start_ns, duration_ns: t.duration_ns, status: t.status });
      points.sort((a, b) => a.start_ns - b.start_ns);
      if (points.length > LIMIT) {
        points.splice(0, points.length - LIMIT);
        more = true;
      }
      if (!details.open) return;
      if (hovering) stale = true;
      else draw();
    },
    unmount() {
      resize.disconnect();
      gen++;
    },
  };
}
