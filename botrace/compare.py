"""Two traces side by side: their spans aligned by path, with the differences.

Pure functions over flat span dicts (``span_id``, ``parent_id``, ``name``,
``span_type``, ``start_ns``, ``end_ns``, ``status``, ``meta``, ``plugin``; as
the store or ``Span.to_dict()`` give them), no I/O.

A span's *path* is the names (and span types) of its ancestors and its own,
root first: ``message / ProcessStage / weather.on_message / get_weather``.
Two spans are aligned when their parents are aligned and they have the same
name and type; siblings that repeat a name (two ``llm gpt-4o`` calls under one
handler, a tool called in a loop) are matched by occurrence in start order:
the first with the first, the second with the second. A span with no partner
(and everything below it) is in one trace only.

The rows come in tree order: trace A's order, each span found only in B placed
after the aligned sibling it follows in B. Every row carries both sides'
duration, self time, tokens and cost (tokens and cost summed over the span's
subtree, so a handler's row says what its LLM calls spent), and B minus A.

Runs in O(n log n) for n spans, without recursion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["compare_traces"]

#: how many rows ``compare_traces`` lists in ``summary.largest``
LARGEST = 5


class _Node:
    __slots__ = ("children", "cost", "duration", "input_tokens", "output_tokens", "self_ns", "span")

    def __init__(self, span: Mapping[str, Any]) -> None:
        self.span = span
        self.children: list[_Node] = []
        self.duration = _duration(span)
        self.self_ns = self.duration
        meta = span.get("meta") or {}
        self.input_tokens = _int(meta.get("input_tokens"))
        self.output_tokens = _int(meta.get("output_tokens"))
        cost = span.get("cost_usd")
        if cost is None:
            cost = meta.get("cost_usd")
        self.cost = _float(cost)


def _int(value: Any) -> int:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else 0
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else 0.0
    except (TypeError, ValueError):
        return 0.0


def _duration(span: Mapping[str, Any]) -> int | None:
    dur = span.get("duration_ns")
    if dur is None and span.get("end_ns") is not None and span.get("start_ns") is not None:
        dur = span["end_ns"] - span["start_ns"]
    return None if dur is None else max(0, int(dur))


def _key(span: Mapping[str, Any]) -> tuple[str, str]:
    return (str(span.get("span_type") or ""), str(span.get("name") or ""))


def _forest(spans: Iterable[Mapping[str, Any]]) -> list[_Node]:
    """Root nodes, children in start order, subtree totals and self times filled in.

    A span whose parent is missing (dropped, or naming itself) is a root.
    """
    nodes: dict[str, _Node] = {}
    order: list[_Node] = []
    for s in spans:
        sid = s.get("span_id")
        if not sid or sid in nodes:
            continue
        node = _Node(s)
        nodes[sid] = node
        order.append(node)
    roots: list[_Node] = []
    for node in order:
        pid = node.span.get("parent_id")
        parent = nodes.get(pid) if pid and pid != node.span.get("span_id") else None
        (parent.children if parent is not None else roots).append(node)
    for node in order:
        node.children.sort(key=lambda n: (n.span.get("start_ns") or 0))
    roots.sort(key=lambda n: (n.span.get("start_ns") or 0))
    # subtree sums and self time, children before parents (post-order without recursion)
    post: list[_Node] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        post.append(node)
        stack.extend(node.children)
    for node in reversed(post):
        covered = 0
        for child in node.children:
            node.input_tokens += child.input_tokens
            node.output_tokens += child.output_tokens
            node.cost += child.cost
            covered += child.duration or 0
        if node.duration is not None:
            node.self_ns = max(0, node.duration - covered)
    return roots


def _pair(a: list[_Node], b: list[_Node]) -> list[tuple[_Node | None, _Node | None, int]]:
    """Siblings of two aligned parents, paired by (type, name) and occurrence, in display order:
    ``(a node or None, b node or None, occurrence)``."""
    b_by_key: dict[tuple[str, str], list[_Node]] = {}
    for node in b:
        b_by_key.setdefault(_key(node.span), []).append(node)
    seen: dict[tuple[str, str], int] = {}
    partner: dict[int, _Node] = {}  # id(b node) -> its a node
    pairs_a: list[tuple[_Node, _Node | None, int]] = []
    for node in a:
        key = _key(node.span)
        k = seen.get(key, 0)
        seen[key] = k + 1
        candidates = b_by_key.get(key, [])
        other = candidates[k] if k < len(candidates) else None
        if other is not None:
            partner[id(other)] = node
        pairs_a.append((node, other, k))
    # each B-only sibling goes after the aligned sibling it follows in B (first if none)
    after: dict[int, list[tuple[_Node, int]]] = {}
    leading: list[tuple[_Node, int]] = []
    anchor: _Node | None = None
    seen_b: dict[tuple[str, str], int] = {}
    for node in b:
        key = _key(node.span)
        k = seen_b.get(key, 0)
        seen_b[key] = k + 1
        if id(node) in partner:
            anchor = partner[id(node)]
        elif anchor is None:
            leading.append((node, k))
        else:
            after.setdefault(id(anchor), []).append((node, k))
    out: list[tuple[_Node | None, _Node | None, int]] = [(None, n, k) for n, k in leading]
    for node, other, k in pairs_a:
        out.append((node, other, k))
        out.extend((None, n, kb) for n, kb in after.get(id(node), ()))
    return out


def _side(node: _Node | None, t0: int) -> dict[str, Any] | None:
    if node is None:
        return None
    s = node.span
    plugin = s.get("plugin") or None
    return {
        "span_id": s.get("span_id"),
        "status": s.get("status"),
        "start_offset_ns": (s.get("start_ns") or t0) - t0,
        "duration_ns": node.duration,
        "self_ns": node.self_ns,
        "input_tokens": node.input_tokens,
        "output_tokens": node.output_tokens,
        "cost_usd": round(node.cost, 10),
        "plugin": plugin.get("name") if isinstance(plugin, Mapping) else None,
        "plugin_display": plugin.get("display_name") if isinstance(plugin, Mapping) else None,
    }


def _delta(a: Any, b: Any) -> Any:
    return None if a is None or b is None else b - a


def compare_traces(a_spans: Iterable[Mapping[str, Any]],
                   b_spans: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Align the spans of trace A and trace B by path; see the module's doc.

    Returns ``{"rows": [...], "summary": {...}}``. Each row: ``path`` (names, root
    first), ``name``, ``span_type``, ``depth``, ``occurrence`` (0 for the first
    sibling of that name), ``only`` (``"a"``, ``"b"`` or None when aligned),
    ``a`` and ``b`` (``span_id``, ``status``, ``start_offset_ns`` from the
    trace's first span, ``duration_ns``, ``self_ns``, ``input_tokens``,
    ``output_tokens``, ``cost_usd`` of the subtree, ``plugin``,
    ``plugin_display``; None on the side that lacks it) and ``delta`` (B minus
    A: ``duration_ns``, ``self_ns``, ``tokens``, ``cost_usd``; None unless aligned).
    ``summary``: ``aligned``, ``only_a``, ``only_b`` (row counts), and
    ``largest``: the indexes of the aligned rows whose self time differs most
    (the spans that made one trace slower), largest first.
    """
    a_spans = list(a_spans)
    b_spans = list(b_spans)
    a_roots = _forest(a_spans)
    b_roots = _forest(b_spans)
    a_t0 = min((s.get("start_ns") or 0 for s in a_spans if s.get("start_ns")), default=0)
    b_t0 = min((s.get("start_ns") or 0 for s in b_spans if s.get("start_ns")), default=0)

    rows: list[dict[str, Any]] = []
    counts = {"aligned": 0, "only_a": 0, "only_b": 0}
    # depth-first, in display order: the stack holds pairs in reverse
    stack: list[tuple[_Node | None, _Node | None, int, int, tuple[str, ...]]] = []
    for a, b, occ in reversed(_pair(a_roots, b_roots)):
        stack.append((a, b, occ, 0, ()))
    while stack:
        a, b, occ, depth, parent_path = stack.pop()
        node = a if a is not None else b
        assert node is not None
        span_type, name = _key(node.span)
        path = (*parent_path, name)
        only = None if a is not None and b is not None else ("a" if a is not None else "b")
        counts["aligned" if only is None else f"only_{only}"] += 1
        sa, sb = _side(a, a_t0), _side(b, b_t0)
        delta = None
        if sa is not None and sb is not None:
            delta = {
                "duration_ns": _delta(sa["duration_ns"], sb["duration_ns"]),
                "self_ns": _delta(sa["self_ns"], sb["self_ns"]),
                "tokens": (sb["input_tokens"] + sb["output_tokens"]) - (sa["input_tokens"] + sa["output_tokens"]),
                "cost_usd": round(sb["cost_usd"] - sa["cost_usd"], 10),
            }
        rows.append({"path": list(path), "name": name, "span_type": span_type, "depth": depth,
                     "occurrence": occ, "only": only, "a": sa, "b": sb, "delta": delta})
        kids = _pair(a.children if a is not None else [], b.children if b is not None else [])
        for ka, kb, k in reversed(kids):
            stack.append((ka, kb, k, depth + 1, path))

    ranked = sorted((i for i, r in enumerate(rows)
                     if r["delta"] is not None and r["delta"]["self_ns"]),
                    key=lambda i: -abs(rows[i]["delta"]["self_ns"]))
    return {"rows": rows, "summary": {**counts, "largest": ranked[:LARGEST]}}
