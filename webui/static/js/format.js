// Numbers, times and colours as the page shows them.

export function fmtDuration(ns) {
  if (ns === null || ns === undefined) return "…";
  if (ns === 0) return "0";
  const ms = ns / 1e6;
  if (ms < 1) return `${(ns / 1e3).toFixed(0)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(0)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  return fmtDuration(ms * 1e6);
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const dateFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

export function fmtTime(ns) {
  if (!ns) return "–";
  const d = new Date(ns / 1e6);
  const today = new Date();
  const t = timeFmt.format(d);
  return d.toDateString() === today.toDateString() ? t : `${dateFmt.format(d)} ${t}`;
}

export function fmtFullTime(ns) {
  if (!ns) return "";
  return new Date(ns / 1e6).toISOString();
}

export function fmtAgo(ns) {
  if (!ns) return "–";
  const s = (Date.now() - ns / 1e6) / 1000;
  if (s < 5) return "just now";
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

const numFmt = new Intl.NumberFormat();
export function fmtNum(n) {
  return n === null || n === undefined ? "–" : numFmt.format(n);
}

export function fmtTokens(inp, out) {
  if (!inp && !out) return "–";
  return `${fmtNum(inp || 0)} / ${fmtNum(out || 0)}`;
}

export function fmtCost(usd) {
  if (!usd) return "–";
  if (usd < 0.01) return `$${usd.toFixed(4)}`;
  return `$${usd.toFixed(2)}`;
}

export function fmtPct(x) {
  if (x === null || x === undefined) return "–";
  if (x === 0) return "0%";
  return `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`;
}

/** A stable hue (0..359) for a plugin name: FNV-1a, so a plugin keeps its colour everywhere. */
export function pluginHue(name) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % 360;
}
