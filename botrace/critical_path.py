"""The critical path of a trace: the chain of spans that determined its end-to-end time.

Pure functions over span dicts (``span_id``, ``parent_id``, ``start_ns``,
``end_ns``; as from ``Span.to_dict()`` or the store), no I/O.

The walk is Jaeger's: start at the root's end and go back in time. At each
point take the child that ended last at or before that point, descend into it
(its own end is the new point), and when it has no more children continue in
the parent from that child's start. Time that no child covers is the parent's
own (self) time on the path. Concurrent siblings are handled by this rule: of
two branches run together, only the one that ended last blocks its parent,
and the overlap is its. A sibling that ended after the blocking one started is
not on the path at all (as in Jaeger): the time before the blocking sibling
started counts as the parent's, unless an earlier sibling ended in it. This
keeps ``asyncio.gather`` honest: siblings started microseconds apart do not
all show up on the path with slivers of time. Every instant of the root's interval is attributed to exactly one span,
so the contributions add up to the root's duration.

Untidy traces are made tidy first:

* a running span (no ``end_ns``) ends at ``now_ns``, or else at the latest time
  the trace knows (the latest start or end of any span);
* a child is clipped to its parent's interval; a child entirely outside it
  (e.g. a background task started after the message ended) is left out, with
  everything below it;
* a span whose parent is missing (dropped, or a corrupt row naming itself)
  hangs from the root;
* zero-length spans are allowed and contribute nothing.

It runs in O(n log n) for n spans (one sort of each span's children) and
without recursion, so a trace thousands of levels deep is fine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CriticalPath", "Segment", "critical_path", "critical_path_doc", "summarize"]


@dataclass(frozen=True)
class Segment:
    """One stretch of the path: ``span_id`` was what the message waited for in [start_ns, end_ns)."""

    span_id: str
    start_ns: int
    end_ns: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass
class CriticalPath:
    """The path of one trace: its segments in time order, and what each span contributed."""

    root_id: str
    start_ns: int
    end_ns: int
    segments: list[Segment] = field(default_factory=list)
    #: span_id -> ns it contributed, largest first
    contributions: dict[str, int] = field(default_factory=dict)

    @property
    def total_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def span_ids(self) -> list[str]:
        """The spans on the path (those that contributed time), largest contribution first."""
        return list(self.contributions)


def critical_path(spans: Iterable[Mapping[str, Any]], *, now_ns: int | None = None) -> CriticalPath | None:
    """The critical path of one trace's spans, or None when there is no span with a start time.

    ``now_ns`` is where a running span ends (default: the latest time the spans know).
    """
    start: dict[str, int] = {}
    end: dict[str, int | None] = {}
    parent: dict[str, Any] = {}
    latest = 0
    for s in spans:
        sid = s.get("span_id")
        st = s.get("start_ns")
        if not sid or not isinstance(st, int):
            continue
        en = s.get("end_ns")
        en = en if isinstance(en, int) else None
        start[sid] = st
        end[sid] = en
        parent[sid] = s.get("parent_id")
        latest = max(latest, st, en or 0)
    if not start:
        return None
    if now_ns is not None:
        latest = max(latest, now_ns)

    def parentless(sid: str) -> bool:
        p = parent[sid]
        return not p or p == sid or p not in start

    # the root: a span with no parent at all, else the earliest whose parent is missing
    tops = [sid for sid in start if not parent[sid] or parent[sid] == sid] or \
        [sid for sid in start if parentless(sid)]
    if not tops:  # only a cycle of corrupt rows: nothing to hang the rest from
        return None
    root = min(tops, key=lambda sid: (start[sid], -(end[sid] if end[sid] is not None else latest)))

    children: dict[str, list[str]] = {}
    for sid in start:
        if sid == root:
            continue
        p = root if parentless(sid) else parent[sid]
        children.setdefault(p, []).append(sid)

    # each span's interval, clipped to its parent's (top-down); spans outside are left out
    eff_start = {root: start[root]}
    eff_end = {root: max(start[root], end[root] if end[root] is not None else latest)}
    todo = [root]
    while todo:
        node = todo.pop()
        ps, pe = eff_start[node], eff_end[node]
        kept = []
        for child in children.get(node, ()):
            cs = max(start[child], ps)
            raw_end = end[child] if end[child] is not None else latest
            ce = min(max(raw_end, start[child]), pe)
            if cs > ce:
                continue
            eff_start[child], eff_end[child] = cs, ce
            kept.append(child)
            todo.append(child)
        # the last to end first; of equal ends, the one that started first (the longer)
        kept.sort(key=lambda c: (-eff_end[c], eff_start[c]))
        children[node] = kept

    # walk back from the root's end; a frame is [span, the point reached in it]
    backwards: list[Segment] = []
    nxt: dict[str, int] = {}  # span -> its next child (in end order) not yet passed
    stack: list[list[Any]] = [[root, eff_end[root]]]
    while stack:
        frame = stack[-1]
        node, point = frame
        kids = children.get(node, ())
        i = nxt.get(node, 0)
        while i < len(kids) and eff_end[kids[i]] > point:
            i += 1  # ended after the point: overlapped by what is already on the path
        if i < len(kids):
            child = kids[i]
            nxt[node] = i + 1
            ce = eff_end[child]
            if point > ce:
                backwards.append(Segment(node, ce, point))
            frame[1] = eff_start[child]
            stack.append([child, ce])
        else:
            nxt[node] = i
            if point > eff_start[node]:
                backwards.append(Segment(node, eff_start[node], point))
            stack.pop()

    segments: list[Segment] = []
    for seg in reversed(backwards):  # time order, a span's adjacent stretches joined
        if segments and segments[-1].span_id == seg.span_id and segments[-1].end_ns == seg.start_ns:
            segments[-1] = Segment(seg.span_id, segments[-1].start_ns, seg.end_ns)
        else:
            segments.append(seg)
    per_span: dict[str, int] = {}
    for seg in segments:
        per_span[seg.span_id] = per_span.get(seg.span_id, 0) + seg.duration_ns
    contributions = dict(sorted(per_span.items(), key=lambda kv: -kv[1]))
    return CriticalPath(root, eff_start[root], eff_end[root], segments, contributions)


def _plugin_of(span: Mapping[str, Any]) -> tuple[str, str]:
    plugin = span.get("plugin") or {}
    if not isinstance(plugin, Mapping):
        return "", ""
    name = str(plugin.get("name") or "")
    return name, str(plugin.get("display_name") or name)


def summarize(spans: Iterable[Mapping[str, Any]], path: CriticalPath) -> list[dict[str, Any]]:
    """"Where the time went": the path's time grouped by span name, type and plugin, largest first.

    Each entry: ``name``, ``span_type``, ``plugin`` (internal name or None),
    ``plugin_display``, ``label`` (e.g. ``roll_dice (Flaky)``), ``span_ids``
    (largest contribution first), ``ns`` and ``share`` (of the root's duration, 0..1).
    """
    by_id = {s.get("span_id"): s for s in spans}
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for sid, ns in path.contributions.items():
        s = by_id.get(sid) or {}
        name = str(s.get("name") or sid)
        plugin, display = _plugin_of(s)
        key = (name, str(s.get("span_type") or ""), plugin)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {
                "name": name, "span_type": key[1] or None, "plugin": plugin or None,
                "plugin_display": display or None,
                "label": f"{name} ({display})" if display else name,
                "span_ids": [], "ns": 0, "share": 0.0}
        g["span_ids"].append(sid)
        g["ns"] += ns
    total = path.total_ns
    out = sorted(groups.values(), key=lambda g: -g["ns"])
    for g in out:
        g["share"] = g["ns"] / total if total > 0 else 0.0
    return out


def critical_path_doc(spans: Iterable[Mapping[str, Any]], *, now_ns: int | None = None) -> dict[str, Any] | None:
    """The path as plain JSON (what ``GET /api/v1/traces/{id}`` returns as ``critical_path``)."""
    spans = list(spans)
    path = critical_path(spans, now_ns=now_ns)
    if path is None:
        return None
    return {
        "root_id": path.root_id,
        "start_ns": path.start_ns,
        "end_ns": path.end_ns,
        "total_ns": path.total_ns,
        "spans": [{"span_id": sid, "ns": ns} for sid, ns in path.contributions.items()],
        "segments": [{"span_id": g.span_id, "start_ns": g.start_ns, "end_ns": g.end_ns} for g in path.segments],
        "summary": summarize(spans, path),
    }
