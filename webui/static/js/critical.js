// The critical path of a trace, in the page: the same walk as botrace/critical_path.py
// (kept in step with it; tests/browser/test_browser_critical_path.py compares the two).
//
// Walk back from the root's end; at each point the child that ended last at or before it
// is what the parent waited for: go down into it, and when it is done carry on in the
// parent from that child's start. Time no child covers is the parent's own. Running spans
// end at `nowNs` (else the latest time the spans know), children are clipped to their
// parent, spans outside their parent are left out, spans whose parent is missing hang from
// the root. O(n log n), no recursion.

/**
 * @param {Iterable<{span_id, parent_id, start_ns, end_ns}>} spans
 * @returns {{rootId, startNs, endNs, totalNs, segments: {spanId, startNs, endNs}[], contributions: Map<string, number>} | null}
 */
export function criticalPath(spans, nowNs = null) {
  const start = new Map();
  const end = new Map();
  const parent = new Map();
  let latest = 0;
  for (const s of spans) {
    if (!s || !s.span_id || typeof s.start_ns !== "number") continue;
    const en = typeof s.end_ns === "number" ? s.end_ns : null;
    start.set(s.span_id, s.start_ns);
    end.set(s.span_id, en);
    parent.set(s.span_id, s.parent_id || null);
    latest = Math.max(latest, s.start_ns, en || 0);
  }
  if (!start.size) return null;
  if (nowNs !== null) latest = Math.max(latest, nowNs);
  const endOf = (id) => (end.get(id) === null ? latest : end.get(id));
  const parentless = (id) => {
    const p = parent.get(id);
    return !p || p === id || !start.has(p);
  };
  let tops = [...start.keys()].filter((id) => !parent.get(id) || parent.get(id) === id);
  if (!tops.length) tops = [...start.keys()].filter(parentless);
  if (!tops.length) return null;
  let root = tops[0];
  for (const id of tops) {
    if (start.get(id) < start.get(root) || (start.get(id) === start.get(root) && endOf(id) > endOf(root))) root = id;
  }

  const children = new Map();
  for (const id of start.keys()) {
    if (id === root) continue;
    const p = parentless(id) ? root : parent.get(id);
    if (!children.has(p)) children.set(p, []);
    children.get(p).push(id);
  }

  const effStart = new Map([[root, start.get(root)]]);
  const effEnd = new Map([[root, Math.max(start.get(root), endOf(root))]]);
  const todo = [root];
  while (todo.length) {
    const node = todo.pop();
    const ps = effStart.get(node);
    const pe = effEnd.get(node);
    const kept = [];
    for (const child of children.get(node) || []) {
      const cs = Math.max(start.get(child), ps);
      const ce = Math.min(Math.max(endOf(child), start.get(child)), pe);
      if (cs > ce) continue;
      effStart.set(child, cs);
      effEnd.set(child, ce);
      kept.push(child);
      todo.push(child);
    }
    kept.sort((a, b) => (effEnd.get(b) - effEnd.get(a)) || (effStart.get(a) - effStart.get(b)));
    children.set(node, kept);
  }

  const backwards = [];
  const next = new Map();
  const stack = [[root, effEnd.get(root)]];
  while (stack.length) {
    const frame = stack[stack.length - 1];
    const [node, point] = frame;
    const kids = children.get(node) || [];
    let i = next.get(node) || 0;
    while (i < kids.length && effEnd.get(kids[i]) > point) i++;
    if (i < kids.length) {
      const child = kids[i];
      next.set(node, i + 1);
      const ce = effEnd.get(child);
      if (point > ce) backwards.push({ spanId: node, startNs: ce, endNs: point });
      frame[1] = effStart.get(child);
      stack.push([child, ce]);
    } else {
      next.set(node, i);
      if (point > effStart.get(node)) backwards.push({ spanId: node, startNs: effStart.get(node), endNs: point });
      stack.pop();
    }
  }
  const segments = [];
  for (let k = backwards.length - 1; k >= 0; k--) {
    const seg = backwards[k];
    const prev = segments[segments.length - 1];
    if (prev && prev.spanId === seg.spanId && prev.endNs === seg.startNs) prev.endNs = seg.endNs;
    else segments.push({ ...seg });
  }
  const per = new Map();
  for (const seg of segments) per.set(seg.spanId, (per.get(seg.spanId) || 0) + seg.endNs - seg.startNs);
  const contributions = new Map([...per].sort((a, b) => b[1] - a[1]));
  const startNs = effStart.get(root);
  const endNs = effEnd.get(root);
  return { rootId: root, startNs, endNs, totalNs: endNs - startNs, segments, contributions };
}

/** "Where the time went": the path's time by span name, type and plugin, largest first. */
export function summarize(spansById, path) {
  const groups = new Map();
  for (const [id, ns] of path.contributions) {
    const s = spansById.get(id) || {};
    const plugin = s.plugin && s.plugin.name ? s.plugin : null;
    const name = String(s.name || id);
    const key = JSON.stringify([name, s.span_type || "", plugin ? plugin.name : ""]);
    let g = groups.get(key);
    if (!g) {
      const display = plugin ? plugin.display_name || plugin.name : "";
      g = { name, spanType: s.span_type, plugin: plugin ? plugin.name : null, pluginDisplay: display || null,
        label: display ? `${name} (${display})` : name, spanIds: [], ns: 0, share: 0 };
      groups.set(key, g);
    }
    g.spanIds.push(id);
    g.ns += ns;
  }
  const out = [...groups.values()].sort((a, b) => b.ns - a.ns);
  for (const g of out) g.share = path.totalNs > 0 ? g.ns / path.totalNs : 0;
  return out;
}
