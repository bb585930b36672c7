"""The critical path algorithm (botrace.critical_path) on hand-made traces."""

from __future__ import annotations

import random
import time

from botrace.critical_path import critical_path, critical_path_doc, summarize


def sp(sid, parent, start, end, name=None, plugin=None, span_type="custom"):
    s = {"span_id": sid, "parent_id": parent, "start_ns": start, "end_ns": end,
         "name": name or sid, "span_type": span_type}
    if plugin:
        s["plugin"] = {"name": plugin, "display_name": plugin.title()}
    return s


def contrib(spans, **kw):
    return critical_path(spans, **kw).contributions


def segs(spans, **kw):
    return [(g.span_id, g.start_ns, g.end_ns) for g in critical_path(spans, **kw).segments]


def test_sequential_children_all_on_the_path_with_the_gaps_as_parent_self_time():
    spans = [sp("root", None, 0, 100), sp("a", "root", 10, 40), sp("b", "root", 40, 70), sp("c", "root", 80, 95)]
    assert segs(spans) == [("root", 0, 10), ("a", 10, 40), ("b", 40, 70), ("root", 70, 80),
                           ("c", 80, 95), ("root", 95, 100)]
    assert contrib(spans) == {"a": 30, "b": 30, "root": 25, "c": 15}
    assert sum(contrib(spans).values()) == 100


def test_concurrent_siblings_only_the_last_ending_branch_blocks():
    # gather(a, b): both start at 10; b ends last, so a is hidden behind it entirely
    spans = [sp("root", None, 0, 100), sp("a", "root", 10, 50), sp("b", "root", 10, 90),
             sp("a1", "a", 12, 48), sp("b1", "b", 20, 80)]
    path = critical_path(spans)
    assert "a" not in path.contributions and "a1" not in path.contributions
    assert segs(spans) == [("root", 0, 10), ("b", 10, 20), ("b1", 20, 80), ("b", 80, 90), ("root", 90, 100)]


def test_partially_overlapping_siblings_share_the_time_without_double_counting():
    # a runs 10..60, b 40..90: b blocks from 40 on; before b started, a was what we waited for
    spans = [sp("root", None, 0, 100), sp("a", "root", 10, 60), sp("b", "root", 40, 90)]
    # the overlap (40..60) goes to b, which ended last; a ended after b started, so it is not
    # what the parent waited for before b (Jaeger's rule): that time is the parent's
    assert segs(spans) == [("root", 0, 40), ("b", 40, 90), ("root", 90, 100)]
    assert contrib(spans) == {"b": 50, "root": 50}


def test_gather_siblings_started_microseconds_apart_leave_no_slivers():
    spans = [sp("root", None, 0, 1000), sp("fast", "root", 100, 300), sp("slow", "root", 101, 900)]
    assert contrib(spans) == {"slow": 799, "root": 201}


def test_overlap_where_the_earlier_sibling_ended_before_the_later_started():
    spans = [sp("root", None, 0, 100), sp("a", "root", 5, 30), sp("x", "root", 20, 35), sp("b", "root", 40, 90)]
    # x ended last before b started (35); a overlaps x (ends after x started): not on the path
    assert segs(spans) == [("root", 0, 20), ("x", 20, 35), ("root", 35, 40), ("b", 40, 90), ("root", 90, 100)]


def test_nested_chain_goes_down_to_the_deepest_blocking_span():
    spans = [sp("root", None, 0, 100), sp("stage", "root", 5, 95), sp("handler", "stage", 10, 90),
             sp("llm", "handler", 20, 60, span_type="llm_call"), sp("tool", "handler", 60, 85, span_type="tool_call"),
             sp("io", "tool", 62, 80, span_type="io_call")]
    assert segs(spans) == [("root", 0, 5), ("stage", 5, 10), ("handler", 10, 20), ("llm", 20, 60),
                           ("tool", 60, 62), ("io", 62, 80), ("tool", 80, 85), ("handler", 85, 90),
                           ("stage", 90, 95), ("root", 95, 100)]
    assert critical_path(spans).span_ids[0] == "llm"


def test_child_past_its_parents_end_is_clipped_and_one_entirely_outside_is_left_out():
    spans = [sp("root", None, 0, 100), sp("p", "root", 10, 50), sp("c", "p", 30, 70),
             sp("late", "root", 120, 130), sp("early", "p", 0, 5)]
    path = critical_path(spans)
    assert segs(spans) == [("root", 0, 10), ("p", 10, 30), ("c", 30, 50), ("root", 50, 100)]
    assert "late" not in path.contributions and "early" not in path.contributions
    assert path.total_ns == 100


def test_running_spans_end_at_now_or_at_the_latest_known_time():
    spans = [sp("root", None, 0, None), sp("a", "root", 10, 40), sp("b", "root", 40, None)]
    # latest known time is 40 (b's start): b has run for 0 so far
    assert critical_path(spans).end_ns == 40
    assert segs(spans, now_ns=100) == [("root", 0, 10), ("a", 10, 40), ("b", 40, 100)]
    assert contrib(spans, now_ns=100)["b"] == 60


def test_zero_length_spans_contribute_nothing_and_do_not_break_the_walk():
    spans = [sp("root", None, 0, 100), sp("z", "root", 50, 50), sp("a", "root", 10, 50), sp("z2", "a", 20, 20)]
    assert segs(spans) == [("root", 0, 10), ("a", 10, 50), ("root", 50, 100)]
    assert sum(contrib(spans).values()) == 100


def test_spans_whose_parent_is_missing_hang_from_the_root():
    spans = [sp("root", None, 0, 100), sp("orphan", "ffffffffffffffff", 20, 80), sp("self", "self", 85, 90)]
    assert segs(spans) == [("root", 0, 20), ("orphan", 20, 80), ("root", 80, 85), ("self", 85, 90),
                           ("root", 90, 100)]


def test_no_root_picks_the_earliest_orphan_and_empty_input_is_none():
    spans = [sp("a", "gone", 0, 50), sp("b", "gone", 10, 20)]
    assert critical_path(spans).root_id == "a"
    assert critical_path([]) is None
    assert critical_path([{"span_id": "x", "start_ns": None}]) is None


def test_summary_groups_by_name_and_plugin_and_shares_add_up():
    spans = [sp("root", None, 0, 100, name="message", span_type="message"),
             sp("l1", "root", 0, 30, name="llm scripted-1", span_type="llm_call"),
             sp("t", "root", 30, 60, name="roll_dice", plugin="flaky", span_type="tool_call"),
             sp("l2", "root", 60, 92, name="llm scripted-1", span_type="llm_call")]
    path = critical_path(spans)
    summary = summarize(spans, path)
    assert [(g["label"], g["span_ids"], round(g["share"], 2)) for g in summary] == [
        ("llm scripted-1", ["l2", "l1"], 0.62), ("roll_dice (Flaky)", ["t"], 0.3), ("message", ["root"], 0.08)]
    assert abs(sum(g["share"] for g in summary) - 1) < 1e-9
    doc = critical_path_doc(spans)
    assert doc["total_ns"] == 100 and doc["spans"][0] == {"span_id": "l2", "ns": 32}
    assert doc["summary"][1]["plugin"] == "flaky"


def test_random_traces_partition_the_root_and_no_child_ends_inside_its_parents_own_time():
    """Every instant of the root is attributed once, to a span running then; a stretch counted
    as a span's own time has none of its children ending inside it (that child would have
    been what the span waited for)."""
    rnd = random.Random(3)
    for _ in range(300):
        spans = [sp("r", None, 0, 1000)]
        for i in range(rnd.randint(1, 25)):
            p = rnd.choice(spans)
            a = rnd.randint(p["start_ns"] - 20, p["end_ns"])
            spans.append(sp(f"s{i}", p["span_id"], a, a + rnd.randint(0, 300)))
        # each span's interval clipped to its parent's, independently of the module
        clipped = {"r": (0, 1000)}
        for s in spans[1:]:  # parents come before children here
            if s["parent_id"] not in clipped:
                continue
            ps, pe = clipped[s["parent_id"]]
            cs, ce = max(s["start_ns"], ps), min(s["end_ns"], pe)
            if cs <= ce:
                clipped[s["span_id"]] = (cs, ce)
        kids = {}
        for s in spans[1:]:
            if s["span_id"] in clipped:
                kids.setdefault(s["parent_id"], []).append(clipped[s["span_id"]])
        path = critical_path(spans)
        assert sum(path.contributions.values()) == 1000
        last = 0
        for g in path.segments:
            assert g.start_ns == last and g.end_ns > g.start_ns
            last = g.end_ns
            lo, hi = clipped[g.span_id]
            assert lo <= g.start_ns and g.end_ns <= hi
            for cs, ce in kids.get(g.span_id, ()):
                assert not (g.start_ns < ce <= g.end_ns) or cs == ce, (g, cs, ce)
        assert last == 1000


def _chain_and_fanout(n):
    rnd = random.Random(1)
    spans = [sp("root", None, 0, 10 * n)]
    for i in range(1, n):
        p = spans[rnd.randrange(max(0, len(spans) - 50), len(spans))]
        a = rnd.randint(p["start_ns"], p["end_ns"])
        spans.append(sp(f"s{i}", p["span_id"], a, min(p["end_ns"] + 5, a + rnd.randint(0, 500))))
    return spans


def test_5000_spans_and_a_5000_deep_chain_scale_near_linearly():
    # a chain deeper than Python's recursion limit
    deep = [sp("s0", None, 0, 20000)] + [sp(f"s{i}", f"s{i - 1}", i, 20000 - i) for i in range(1, 5000)]
    assert len(critical_path(deep).segments) == 2 * 5000 - 1

    def cost(n):
        spans = _chain_and_fanout(n)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            path = critical_path(spans)
            best = min(best, time.perf_counter() - t)
        assert sum(path.contributions.values()) == 10 * n
        return best

    small, big = cost(500), cost(5000)
    # 10x the spans: near 10x the time for n log n; a quadratic walk would be ~100x
    assert big / small < 40


# -- the API: GET /api/v1/traces/{id} carries it ---------------------------------------

async def test_api_trace_carries_the_critical_path_of_a_gather(host, client):
    import asyncio

    try:
        from browser.harness import wait_for_trace
    except ImportError:  # pragma: no cover - tests/ imported as a package
        from tests.browser.harness import wait_for_trace

    tracer = host.tracer
    root = tracer.start_trace("message", {"outline": "two tools at once"})
    with root:
        with tracer.span("handler", "plugin_call") as handler:
            async def tool(name, seconds):
                with tracer.span(name, "tool_call"):
                    await asyncio.sleep(seconds)
            await asyncio.gather(tool("fast", 0.01), tool("slow", 0.2))
            handler_id = handler.span_id
    await wait_for_trace(host.store, root.trace_id, tracer)
    for shape in ("tree", "flat"):
        resp = await client.get(f"/api/v1/traces/{root.trace_id}", params={"shape": shape, "values": "none"})
        doc = await resp.json()
        cp = doc["critical_path"]
        names = {s["span_id"]: s["name"] for s in (doc.get("spans") or [])} if shape == "flat" else None
        assert cp["total_ns"] == doc["trace"]["duration_ns"]
        assert sum(s["ns"] for s in cp["spans"]) == cp["total_ns"]
        assert cp["summary"][0]["label"] == "slow"
        assert "fast" not in [g["name"] for g in cp["summary"]]
        assert cp["summary"][0]["share"] > 0.5
        assert handler_id in [s["span_id"] for s in cp["spans"]]
        if names:
            on_path = [names[g["span_id"]] for g in cp["segments"]]
            assert "slow" in on_path and "fast" not in on_path
    resp = await client.get(f"/api/v1/traces/{root.trace_id}", params={"critical_path": "false"})
    assert "critical_path" not in await resp.json()
    resp = await client.get(f"/api/v1/traces/{root.trace_id}", params={"critical_path": "maybe"})
    assert resp.status == 400 and (await resp.json())["param"] == "critical_path"
