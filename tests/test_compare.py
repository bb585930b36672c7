"""botrace.compare: two traces' spans aligned by path, with their differences."""

from __future__ import annotations

from botrace.compare import compare_traces

MS = 1_000_000


def span(sid, parent, name, span_type="custom", start=0, dur=10, tokens=None, status="ok", plugin=None, cost=None):
    meta = {}
    if tokens:
        meta["input_tokens"], meta["output_tokens"] = tokens
    return {"span_id": sid, "parent_id": parent, "name": name, "span_type": span_type,
            "start_ns": start * MS, "end_ns": (start + dur) * MS, "duration_ns": dur * MS,
            "status": status, "meta": meta, "cost_usd": cost,
            "plugin": {"name": plugin, "display_name": plugin.title()} if plugin else None}


def trace(tool_ms=20, llm_tokens=(100, 10), extra_tool=False, base=1000):
    spans = [
        span("r", None, "message", "message", base, tool_ms + 80),
        span("s1", "r", "ProcessStage", "pipeline_stage", base + 1, tool_ms + 70),
        span("h", "s1", "dice.on_message", "plugin_call", base + 2, tool_ms + 60, plugin="dice"),
        span("l1", "h", "llm m", "llm_call", base + 3, 30, tokens=llm_tokens, cost=0.01),
        span("t", "h", "roll", "tool_call", base + 34, tool_ms, plugin="dice"),
    ]
    if extra_tool:
        spans.append(span("t2", "h", "flip", "tool_call", base + 60, 5, plugin="dice"))
    return spans


def by_path(result):
    return {"/".join(r["path"]) + (f"#{r['occurrence']}" if r["occurrence"] else ""): r for r in result["rows"]}


def test_same_shape_aligns_every_span_and_reports_the_differences():
    a = trace(tool_ms=20, llm_tokens=(100, 10))
    b = [{**s, "span_id": s["span_id"] + "b", "parent_id": s["parent_id"] and s["parent_id"] + "b"}
         for s in trace(tool_ms=50, llm_tokens=(150, 10), base=5000)]
    result = compare_traces(a, b)
    assert result["summary"]["aligned"] == 5
    assert result["summary"]["only_a"] == result["summary"]["only_b"] == 0
    assert [r["path"][-1] for r in result["rows"]] == ["message", "ProcessStage", "dice.on_message", "llm m", "roll"]
    assert [r["depth"] for r in result["rows"]] == [0, 1, 2, 3, 3]
    rows = by_path(result)
    roll = rows["message/ProcessStage/dice.on_message/roll"]
    assert roll["a"]["span_id"] == "t" and roll["b"]["span_id"] == "tb"
    assert roll["delta"]["duration_ns"] == 30 * MS and roll["delta"]["self_ns"] == 30 * MS
    assert roll["a"]["start_offset_ns"] == 34 * MS  # from each trace's own start
    assert roll["a"]["plugin"] == "dice" and roll["a"]["plugin_display"] == "Dice"
    llm = rows["message/ProcessStage/dice.on_message/llm m"]
    assert llm["delta"]["tokens"] == 50 and llm["delta"]["duration_ns"] == 0
    # tokens and cost are summed over the subtree: the handler and the root carry the LLM's
    handler = rows["message/ProcessStage/dice.on_message"]
    assert (handler["a"]["input_tokens"], handler["b"]["input_tokens"]) == (100, 150)
    assert handler["delta"]["tokens"] == 50
    assert rows["message"]["a"]["cost_usd"] == 0.01
    # self time: the handler's 80 ms minus its children's 30 + 20
    assert handler["a"]["self_ns"] == 30 * MS
    # the span whose own time differs most comes first
    assert result["rows"][result["summary"]["largest"][0]]["name"] == "roll"


def test_spans_present_in_one_trace_only_are_marked_with_their_subtree():
    a = trace()
    b = trace(extra_tool=True)
    b.append(span("x", "t2", "flip.io", "io_call", 1061, 2))  # below B's extra tool
    result = compare_traces(a, b)
    rows = by_path(result)
    flip = rows["message/ProcessStage/dice.on_message/flip"]
    assert flip["only"] == "b" and flip["a"] is None and flip["delta"] is None
    assert rows["message/ProcessStage/dice.on_message/flip/flip.io"]["only"] == "b"
    assert result["summary"] == {**result["summary"], "aligned": 5, "only_a": 0, "only_b": 2}
    # B's extra tool shows after the sibling it follows in B
    names = [r["name"] for r in result["rows"]]
    assert names.index("flip") == names.index("roll") + 1
    # the other way round it is A's
    back = compare_traces(b, a)
    assert by_path(back)["message/ProcessStage/dice.on_message/flip"]["only"] == "a"
    assert back["summary"]["only_a"] == 2 and back["summary"]["only_b"] == 0


def test_a_span_only_in_b_before_every_aligned_sibling_comes_first():
    a = [span("r", None, "message", "message", 0, 50), span("x", "r", "late", start=20, dur=5)]
    b = [span("r", None, "message", "message", 0, 50), span("y", "r", "early", start=1, dur=5),
         span("x", "r", "late", start=20, dur=5)]
    assert [r["name"] for r in compare_traces(a, b)["rows"]] == ["message", "early", "late"]


def test_repeated_siblings_are_matched_by_occurrence_order():
    # A called the tool twice, B three times; the LLM twice in both
    def run(n_tools, base):
        spans = [span("r", None, "message", "message", base, 200)]
        t = base + 1
        for i in range(n_tools):
            spans.append(span(f"llm{i}", "r", "llm m", "llm_call", t, 10, tokens=(10 * (i + 1), 1)))
            spans.append(span(f"tool{i}", "r", "roll", "tool_call", t + 10, 5 + i))
            t += 20
        return spans

    result = compare_traces(run(2, 0), run(3, 500))
    rolls = [r for r in result["rows"] if r["name"] == "roll"]
    assert [r["occurrence"] for r in rolls] == [0, 1, 2]
    assert [(r["a"] or {}).get("span_id") for r in rolls] == ["tool0", "tool1", None]
    assert [r["b"]["span_id"] for r in rolls] == ["tool0", "tool1", "tool2"]
    assert rolls[2]["only"] == "b"
    # the second call pairs with the second, not with the first of the same name
    assert rolls[1]["delta"]["duration_ns"] == 0
    llms = [r for r in result["rows"] if r["name"] == "llm m"]
    assert [r["only"] for r in llms] == [None, None, "b"]
    assert [r["a"]["input_tokens"] for r in llms[:2]] == [10, 20]
    assert [r["delta"]["tokens"] for r in llms[:2]] == [0, 0]
    # rows keep B's order for its extra calls: llm then roll, after the second pair
    assert [r["name"] for r in result["rows"]][-2:] == ["llm m", "roll"]


def test_same_name_different_type_is_not_aligned_and_spans_are_nested_by_path():
    a = [span("r", None, "message", "message", 0, 50), span("s", "r", "search", "tool_call", 1, 5),
         span("k", "s", "fetch", "io_call", 2, 1)]
    b = [span("r", None, "message", "message", 0, 50), span("s", "r", "search", "plugin_call", 1, 5),
         span("k", "s", "fetch", "io_call", 2, 1)]
    rows = compare_traces(a, b)["rows"]
    # B's span follows no aligned sibling: it comes first; each keeps its subtree below it
    assert [(r["name"], r["span_type"], r["only"], r["depth"]) for r in rows] == [
        ("message", "message", None, 0), ("search", "plugin_call", "b", 1), ("fetch", "io_call", "b", 2),
        ("search", "tool_call", "a", 1), ("fetch", "io_call", "a", 2)]


def test_running_spans_orphans_and_empty_traces():
    a = [span("r", None, "message", "message", 0, 50),
         {**span("w", "r", "wait", start=1), "end_ns": None, "duration_ns": None, "status": "running"},
         span("o", "gone", "orphan", start=3)]
    b = [span("r", None, "message", "message", 0, 50), span("w", "r", "wait", start=1, dur=7)]
    result = compare_traces(a, b)
    rows = by_path(result)
    assert rows["message/wait"]["a"]["duration_ns"] is None
    assert rows["message/wait"]["delta"]["duration_ns"] is None
    assert rows["orphan"]["only"] == "a" and rows["orphan"]["depth"] == 0  # its parent was dropped
    assert compare_traces([], []) == {"rows": [], "summary": {"aligned": 0, "only_a": 0, "only_b": 0, "largest": []}}
    assert all(r["only"] == "b" for r in compare_traces([], b)["rows"])


def test_a_deep_trace_needs_no_recursion():
    n = 5000
    chain = [span("0", None, "message", "message", 0, n + 1)]
    chain += [span(str(i), str(i - 1), "step", start=i, dur=n + 1 - i) for i in range(1, n)]
    result = compare_traces(chain, chain)
    assert result["summary"]["aligned"] == n and result["rows"][-1]["depth"] == n - 1
