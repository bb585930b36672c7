"""The query layer against a generated store: filters, pagination, stats, sessions, cost."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from storeutil import fed_store

from botrace.config import Settings
from botrace.pricing import PriceTable
from botrace.query import QueryError
from botrace.store import TraceStore
from botrace.store.synthetic import synthetic_traces

N = 400
PRICES = {"gpt-4o": {"input": 2.5, "cached_input": 1.25, "output": 10.0},
          "claude-sonnet-4": {"input": 3.0, "output": 15.0}}


@pytest.fixture(scope="module")
def generated() -> list:
    return list(synthetic_traces(N, spans=20, users=12, sessions=40, error_rate=0.2, seed=7))


@pytest.fixture
async def store(tmp_path: Path, generated):
    settings = Settings.from_mapping({"trace_price_table": PRICES, "trace_retention_days": 0})
    async with fed_store(tmp_path / "q.db", settings, generated) as s:
        yield s


def expected_ids(generated, pred) -> list[str]:
    chosen = [t for t in generated if pred(t)]
    chosen.sort(key=lambda t: (t.start_ns, t.trace_id), reverse=True)
    return [t.trace_id for t in chosen]


async def all_pages(store: TraceStore, filters: dict, limit: int) -> tuple[list[str], int]:
    ids: list[str] = []
    cursor = None
    totals = set()
    while True:
        page = await store.list_traces(filters, limit=limit, cursor=cursor)
        totals.add(page["total"])
        ids += [t["trace_id"] for t in page["traces"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["traces"]) == limit
    assert len(totals) == 1
    return ids, totals.pop()


def has_span(t, pred) -> bool:
    return any(pred(s) for s in t.spans)


def duration(t) -> int:
    return t.end_ns - t.start_ns


FILTER_CASES = {
    "none": ({}, lambda t: True),
    "user": ({"user_id": "u3"}, lambda t: t.attributes["user_id"] == "u3"),
    "session": ({"session_id": "s5"}, lambda t: t.attributes["session_id"] == "s5"),
    "umo": ({"umo": "qq:GroupMessage:5"}, lambda t: t.attributes["umo"] == "qq:GroupMessage:5"),
    "plugin": ({"plugin": "weather"},
               lambda t: has_span(t, lambda s: s.plugin is not None and s.plugin.name == "weather")),
    "status": ({"status": "error"}, lambda t: t.status == "error"),
    "span_type": ({"span_type": "io_call"}, lambda t: has_span(t, lambda s: s.span_type == "io_call")),
    "model": ({"model": "gpt-4o"},
              lambda t: has_span(t, lambda s: (s.meta or {}).get("model") == "gpt-4o")),
    "tool": ({"tool": "calculator"},
             lambda t: has_span(t, lambda s: (s.meta or {}).get("tool_name") == "calculator")),
    "min_duration": ({"min_duration_ms": "60"}, lambda t: duration(t) >= 60_000_000),
    "text": ({"q": "RAIN"}, lambda t: "rain" in t.attributes["outline"]),
    "combined": ({"plugin": "search", "model": "deepseek-chat", "status": "ok"},
                 lambda t: t.status == "ok"
                 and has_span(t, lambda s: s.plugin is not None and s.plugin.name == "search")
                 and has_span(t, lambda s: (s.meta or {}).get("model") == "deepseek-chat")),
}


@pytest.mark.parametrize("case", sorted(FILTER_CASES))
async def test_filters_and_pagination_match_the_generated_data(store, generated, case) -> None:
    filters, pred = FILTER_CASES[case]
    want = expected_ids(generated, pred)
    assert want, "the generated data should exercise this filter"
    got, total = await all_pages(store, filters, limit=7)
    assert got == want
    assert total == len(want)


async def test_time_range_is_start_inclusive_end_exclusive(store, generated) -> None:
    lo, hi = generated[100].start_ns, generated[150].start_ns
    got, total = await all_pages(store, {"since_ns": str(lo), "until_ns": hi}, limit=50)
    assert got == expected_ids(generated, lambda t: lo <= t.start_ns < hi)
    assert total == 50


async def test_trace_summary_has_totals_and_cost(store, generated) -> None:
    table = PriceTable(PRICES)
    t = generated[3]
    page = await store.list_traces({"session_id": t.attributes["session_id"],
                                    "until_ns": t.start_ns + 1}, limit=1)
    summary = page["traces"][0]
    assert summary["trace_id"] == t.trace_id
    llm = [s for s in t.spans if s.span_type == "llm_call"]
    assert summary["llm_calls"] == len(llm)
    assert summary["input_tokens"] == sum(s.meta["input_tokens"] for s in llm)
    assert summary["span_count"] == 20
    cost = sum(table.cost(s.meta["model"], s.meta["input_tokens"], s.meta["output_tokens"],
                          s.meta["cached_tokens"]) for s in llm)
    assert summary["cost_usd"] == pytest.approx(cost)
    assert summary["user_id"] == t.attributes["user_id"]
    assert set(summary["plugins"]) == {s.plugin.name for s in t.spans if s.plugin}


async def test_one_trace_as_a_tree_matches_its_parents(store, generated) -> None:
    t = generated[10]
    doc = await store.get_trace(t.trace_id.upper())
    assert len(doc["spans"]) == 20
    parent_of = {s.span_id: s.parent_id for s in t.spans}

    def walk(node, parent):
        assert parent_of[node["span_id"]] == parent
        seen = 1
        for child in node["children"]:
            seen += walk(child, node["span_id"])
        return seen

    (root,) = doc["tree"]
    assert walk(root, None) == 20
    assert await store.get_trace("0" * 32) is None
    flat = await store.get_trace(t.trace_id, flat=True)
    assert "tree" not in flat and len(flat["spans"]) == 20


async def test_stats_per_group_match_exact_figures(store, generated) -> None:
    by_tool: dict[str, list] = {}
    for t in generated:
        for s in t.spans:
            if s.span_type == "tool_call":
                by_tool.setdefault(s.meta["tool_name"], []).append(s)
    result = await store.stats("tool")
    groups = {g["key"]: g for g in result["groups"]}
    assert set(groups) == set(by_tool)
    for tool, spans in by_tool.items():
        g = groups[tool]
        durations = sorted(s.end_ns - s.start_ns for s in spans)
        assert g["count"] == len(spans)
        assert g["errors"] == sum(s.status == "error" for s in spans)
        assert g["total_ms"] == pytest.approx(sum(durations) / 1e6, rel=1e-6)
        for name, p in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            exact = durations[max(1, math.ceil(p * len(durations))) - 1] / 1e6
            assert g[name] == pytest.approx(exact, rel=0.04)
    totals = [g["total_ms"] for g in result["groups"]]
    assert totals == sorted(totals, reverse=True)


async def test_stats_by_model_sum_tokens_and_cost(store, generated) -> None:
    result = await store.stats("model", filters={"plugin": "weather"})
    for g in result["groups"]:
        spans = [s for t in generated for s in t.spans if s.span_type == "llm_call"
                 and s.meta["model"] == g["key"] and s.plugin and s.plugin.name == "weather"]
        assert g["count"] == len(spans)
        assert g["output_tokens"] == sum(s.meta["output_tokens"] for s in spans)
    stage = await store.stats("stage", since_ns=generated[0].start_ns,
                              until_ns=generated[10].start_ns)
    assert {g["count"] for g in stage["groups"]} == {10}
    assert all(0 <= g["self_ms"] <= g["total_ms"] for g in stage["groups"])


async def test_sessions_and_users_totals(store, generated) -> None:
    page = await store.sessions(limit=500)
    by_session: dict[str, list] = {}
    for t in generated:
        by_session.setdefault(t.attributes["session_id"], []).append(t)
    assert page["total"] == len(by_session)
    for s in page["sessions"]:
        traces = by_session[s["session_id"]]
        assert s["trace_count"] == len(traces)
        assert s["last_ns"] == max(t.start_ns for t in traces)
        assert set(s["user_ids"]) == {t.attributes["user_id"] for t in traces}
    # cursor pagination covers every session once, most recent first
    seen, cursor = [], None
    while True:
        p = await store.sessions(limit=9, cursor=cursor)
        seen += [s["session_id"] for s in p["sessions"]]
        cursor = p["next_cursor"]
        if not cursor:
            break
    assert seen == [s["session_id"] for s in page["sessions"]]
    users = await store.users(limit=500)
    assert users["total"] == len({t.attributes["user_id"] for t in generated})
    u3 = next(u for u in users["users"] if u["user_id"] == "u3")
    mine = [t for t in generated if t.attributes["user_id"] == "u3"]
    assert u3["trace_count"] == len(mine)
    assert u3["session_count"] == len({t.attributes["session_id"] for t in mine})
    one = await store.sessions({"user_id": "u3"}, limit=500)
    assert one["total"] == u3["session_count"]
    # one user's totals, however many users were seen after them
    alone = await store.users({"user_id": "u3"}, limit=1)
    assert alone["total"] == 1 and alone["users"] == [u3] and alone["next_cursor"] is None


def _cursor(values: list) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(("call", "param"), [
    (lambda s: s.list_traces(limit=0), "limit"),
    (lambda s: s.list_traces(limit="many"), "limit"),
    (lambda s: s.list_traces(limit=501), "limit"),
    (lambda s: s.list_traces(cursor="not-a-cursor!!"), "cursor"),
    (lambda s: s.list_traces({"status": "sideways"}), "status"),
    (lambda s: s.list_traces({"span_type": "banana"}), "span_type"),
    (lambda s: s.list_traces({"since_ns": "yesterday"}), "since_ns"),
    (lambda s: s.list_traces({"since_ns": 10, "until_ns": 5}), "until_ns"),
    (lambda s: s.list_traces({"min_duration_ms": "-1"}), "min_duration_ms"),
    (lambda s: s.list_traces({"colour": "red"}), "colour"),
    (lambda s: s.get_trace("xyz"), "trace_id"),
    (lambda s: s.stats("planet"), "group_by"),
    (lambda s: s.stats("tool", filters={"model": "x"}), "model"),
    (lambda s: s.sessions(cursor="W10"), "cursor"),
    # past SQLite's 64-bit INTEGER: an error naming the parameter, never an OverflowError
    (lambda s: s.list_traces({"since_ns": 2**63}), "since_ns"),
    (lambda s: s.list_traces({"until_ns": "99999999999999999999999"}), "until_ns"),
    (lambda s: s.list_traces({"min_duration_ms": 1e13}), "min_duration_ms"),
    (lambda s: s.list_traces(cursor=_cursor([10**30, "z"])), "cursor"),
    (lambda s: s.users(cursor=_cursor([10**30, "z"])), "cursor"),
])
async def test_bad_parameters_raise_query_error_naming_the_parameter(store, call, param) -> None:
    with pytest.raises(QueryError) as info:
        await call(store)
    assert info.value.param == param
    assert info.value.to_dict()["error"]


async def test_sql_is_parameterised_and_hostile_values_are_plain_data(store, monkeypatch) -> None:
    seen: list[tuple[str, tuple]] = []
    for conn in store._readers:
        real = conn.execute

        def recording(sql, params=(), _real=real):
            seen.append((sql, tuple(params)))
            return _real(sql, params)

        monkeypatch.setattr(conn, "execute", recording)
    hostile = "x' OR '1'='1"
    for key in ("user_id", "session_id", "umo", "plugin", "model", "tool", "q"):
        page = await store.list_traces({key: hostile})
        assert page["total"] == 0 and page["traces"] == []
    # LIKE wildcards are escaped: "%" matches only a literal percent sign
    assert (await store.list_traces({"q": "%"}))["total"] == 0
    await store.stats("model", filters={"user_id": hostile})
    await store.sessions({"umo": hostile})
    await store.users({"umo": hostile})
    await store.get_trace("a" * 32)
    assert len(seen) > 10
    for sql, _params in seen:
        assert hostile not in sql and "'1'='1" not in sql and "a" * 32 not in sql
    assert any(hostile in p for _, params in seen for p in params if isinstance(p, str))


async def test_total_of_combined_filters_is_capped_and_says_so(store, generated, monkeypatch) -> None:
    import botrace.query as query

    monkeypatch.setattr(query, "TOTAL_CAP", 10)
    page = await store.list_traces({"plugin": "weather", "status": "ok"}, limit=5)
    assert page["total"] == 10 and page["total_capped"] is True
    single = await store.list_traces({"plugin": "weather"}, limit=5)
    assert single["total_capped"] is False and single["total"] > 10
