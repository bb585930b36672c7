"""Statistics per plugin (every span attributed to it), plugin filters by display name, and
tokens and cost per user and per conversation (``GET /spend``), on known traces."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from storeutil import fed_store

from botrace.attribution import PluginRef
from botrace.config import Settings
from botrace.query import QueryError
from botrace.store.synthetic import SynthSpan, SynthTrace
from botrace_webui import create_app
from botrace_webui.api import API_PREFIX

MS = 1_000_000
T0 = 1_700_000_000 * 10**9
PRICES = {"m-cheap": {"input": 1.0, "output": 2.0}, "m-dear": {"input": 10.0, "output": 30.0}}
ALPHA = PluginRef("alpha", "Alpha Helper", "third_party", "1.0")
TOOLER = PluginRef("tooler", "Tool Only", "third_party", "0.1")
CORE = PluginRef("core", "Core", "builtin", "4.0")
_ids = itertools.count(1)


def _sid() -> str:
    return f"{next(_ids):016x}"


def message(i: int, user: str, session: str, parts: list[tuple], base: int = T0) -> SynthTrace:
    """A trace at ``base + i s``: root -> core stage -> the ``parts``: ``(key, parent key,
    name, span_type, plugin, offset ms, duration ms, status, meta)``."""
    start = base + i * 1_000 * MS
    trace = SynthTrace(trace_id=f"{i:032x}", name="message", start_ns=start, end_ns=None,
                       attributes={"umo": f"demo:{session}", "user_id": user, "sender": user,
                                   "session_id": session, "outline": f"m{i}"})
    root = SynthSpan(trace, _sid(), None, "message", "message", None, start, start + 900 * MS)
    stage = SynthSpan(trace, _sid(), root.span_id, "ProcessStage", "pipeline_stage", CORE,
                      start + MS, start + 800 * MS)
    spans = {"root": root, "stage": stage}
    for key, parent, name, stype, plugin, off, dur, status, meta in parts:
        s = SynthSpan(trace, _sid(), spans[parent].span_id, name, stype, plugin,
                      start + off * MS, start + (off + dur) * MS, status=status, meta=meta)
        spans[key] = s
    trace.spans = list(spans.values())
    trace.end_ns = root.end_ns
    return trace


def llm(model: str, tin: int, tout: int) -> dict:
    return {"model": model, "input_tokens": tin, "output_tokens": tout}


# alpha: a handler (top-level, 100 ms) with its own IO inside (40 ms) and an LLM call (20 ms);
# tooler: only tool calls, called by the host's agent (an llm_call of no plugin's); one is slow
# and fails (a timeout); the core stage is a plugin of its own.
def known_traces(base: int = T0) -> list[SynthTrace]:
    return [
        message(0, "alice", "s-a", [
            ("h", "stage", "alpha.on_message", "plugin_call", ALPHA, 10, 100, "ok", None),
            ("io", "h", "GET", "io_call", ALPHA, 20, 40, "ok", None),
            ("l", "h", "chat", "llm_call", ALPHA, 70, 20, "ok", llm("m-dear", 1000, 100)),
            ("agent", "stage", "agent", "llm_call", None, 200, 10, "ok", llm("m-cheap", 500, 50)),
            ("t1", "stage", "lookup", "tool_call", TOOLER, 300, 5, "ok", {"tool_name": "lookup"})], base),
        message(1, "bob", "s-b", [
            ("agent", "stage", "agent", "llm_call", None, 10, 10, "ok", llm("m-cheap", 300, 30)),
            ("t1", "stage", "lookup", "tool_call", TOOLER, 30, 2000, "error", {"tool_name": "lookup"}),
            ("t2", "stage", "lookup", "tool_call", TOOLER, 40, 7, "ok", {"tool_name": "lookup"})], base),
        message(2, "bob", "s-c", [
            ("h", "stage", "alpha.on_message", "plugin_call", ALPHA, 10, 50, "ok", None),
            ("l", "h", "chat", "llm_call", ALPHA, 15, 10, "ok", llm("m-cheap", 100, 10))], base),
        message(3, "carol", "s-d", [
            ("agent", "stage", "agent", "llm_call", None, 10, 10, "ok", llm("m-dear", 2000, 200))], base),
    ]


TRACES = known_traces()


def cost(model: str, tin: int, tout: int) -> float:
    p = PRICES[model]
    return (tin * p["input"] + tout * p["output"]) / 1e6


@pytest.fixture
async def store(tmp_path: Path):
    settings = Settings.from_mapping({"trace_price_table": PRICES, "trace_retention_days": 0})
    async with fed_store(tmp_path / "p.db", settings, TRACES) as s:
        yield s


def by_key(result: dict) -> dict[str, dict]:
    return {g["key"]: g for g in result["groups"]}


async def test_every_span_of_a_plugin_counts_and_percentiles_are_of_its_top_level_spans(store):
    groups = by_key(await store.stats("plugin"))
    assert set(groups) == {"alpha", "tooler", "core"}
    tooler = groups["tooler"]  # a plugin whose only spans are tools: it was missing before
    assert (tooler["count"], tooler["errors"], tooler["top_count"]) == (3, 1, 3)
    assert tooler["display_name"] == "Tool Only"
    assert tooler["total_ms"] == pytest.approx(2012, rel=1e-9)
    assert tooler["self_ms"] == pytest.approx(2012, rel=1e-9)
    assert tooler["max_ms"] == pytest.approx(2000, rel=1e-9)
    assert tooler["p99_ms"] == pytest.approx(2000, rel=0.02)  # the timeout shows
    assert tooler["p50_ms"] == pytest.approx(7, rel=0.02)
    assert [t["span_type"] for t in tooler["by_type"]] == ["tool_call"]

    alpha = groups["alpha"]
    assert (alpha["count"], alpha["errors"]) == (5, 0)
    # top-level: the two handlers only (its IO and LLM calls are inside its own handler)
    assert alpha["top_count"] == 2
    assert alpha["p50_ms"] == pytest.approx(50, rel=0.02)
    assert alpha["p99_ms"] == pytest.approx(100, rel=0.02)
    assert alpha["total_ms"] == pytest.approx(100 + 40 + 20 + 50 + 10, rel=1e-9)
    # self time: each handler minus its children, plus the children's own
    assert alpha["self_ms"] == pytest.approx((100 - 60) + 40 + 20 + (50 - 10) + 10, rel=1e-9)
    assert (alpha["input_tokens"], alpha["output_tokens"]) == (1100, 110)
    assert alpha["cost_usd"] == pytest.approx(cost("m-dear", 1000, 100)
                                              + cost("m-cheap", 100, 10), rel=1e-9)
    types = {t["span_type"]: t for t in alpha["by_type"]}
    assert {k: v["count"] for k, v in types.items()} == {"plugin_call": 2, "io_call": 1,
                                                         "llm_call": 2}
    assert types["llm_call"]["input_tokens"] == 1100
    assert types["io_call"]["total_ms"] == pytest.approx(40, rel=1e-9)
    # sorted by the plugin's own (self) time
    selfs = [g["self_ms"] for g in (await store.stats("plugin"))["groups"]]
    assert selfs == sorted(selfs, reverse=True)


async def test_plugin_stats_windows_and_filters_agree_with_the_spans(store):
    # the window holds traces 1 and 2 only (a part-minute: read from the spans)
    st = await store.stats("plugin", since_ns=T0 + 1_000 * MS, until_ns=T0 + 3_000 * MS)
    groups = by_key(st)
    assert groups["tooler"]["count"] == 2 and groups["alpha"]["count"] == 2
    assert groups["alpha"]["top_count"] == 1
    assert st["percentiles_from"] == {"traces": 2, "capped": False}
    # the user filter reads the spans of that user's traces: the same figures
    bob = by_key(await store.stats("plugin", filters={"user_id": "bob"}))
    assert {k: (g["count"], g["top_count"], g["errors"]) for k, g in bob.items()} == {
        k: (g["count"], g["top_count"], g["errors"]) for k, g in groups.items()}
    errors = by_key(await store.stats("plugin", filters={"status": "error"}))
    assert set(errors) == {"tooler"} and errors["tooler"]["count"] == 1


async def test_percentiles_come_from_the_newest_traces_when_there_are_many(store, monkeypatch):
    from botrace import query

    monkeypatch.setattr(query, "PLUGIN_SAMPLE_TRACES", 2)
    st = await store.stats("plugin")
    assert st["percentiles_from"] == {"traces": 2, "capped": True}
    groups = by_key(st)
    assert groups["tooler"]["count"] == 3  # the sums still count every span
    assert groups["tooler"]["top_count"] == 0 and groups["tooler"]["p50_ms"] is None
    assert groups["alpha"]["top_count"] == 1


@pytest.mark.parametrize("value", ["tooler", "Tool Only", "tool only", "TOOLER"])
async def test_the_plugin_filter_takes_the_display_name_too(store, value):
    page = await store.list_traces({"plugin": value})
    assert sorted(t["trace_id"] for t in page["traces"]) == [f"{i:032x}" for i in (0, 1)]
    st = by_key(await store.stats("tool", filters={"plugin": value}))
    assert st["lookup"]["count"] == 3
    assert (await store.list_traces({"plugin": "Tool"}))["total"] == 0  # no partial matches


async def test_spend_per_user_top_spenders_first(store):
    out = await store.spend("user")
    c_alice = cost("m-dear", 1000, 100) + cost("m-cheap", 500, 50)
    c_bob = cost("m-cheap", 300, 30) + cost("m-cheap", 100, 10)
    c_carol = cost("m-dear", 2000, 200)
    assert [(g["key"], g["cost_usd"]) for g in out["groups"]] == [
        ("carol", pytest.approx(c_carol)), ("alice", pytest.approx(c_alice)),
        ("bob", pytest.approx(c_bob))]
    assert out["total"] == 3
    assert out["totals"]["cost_usd"] == pytest.approx(c_alice + c_bob + c_carol)
    alice = out["groups"][1]
    assert alice["trace_count"] == 1 and alice["input_tokens"] == 1500
    assert alice["cost_share"] == pytest.approx(c_alice / (c_alice + c_bob + c_carol), rel=1e-5)
    # alpha's LLM call is alpha's share; the agent's own call is the host's ("")
    assert [(p["plugin"], p["input_tokens"]) for p in alice["plugins"]] == [("alpha", 1000),
                                                                            ("", 500)]
    assert alice["plugins"][0]["display_name"] == "Alpha Helper"
    assert out["plugin_shares_partial"] is False
    assert [g["key"] for g in (await store.spend("user", limit=1))["groups"]] == ["carol"]


async def test_spend_counts_what_each_plugins_hooks_added_to_llm_requests(tmp_path: Path):
    """A plugin whose ``on_llm_request`` hooks inject context makes no LLM call of its own,
    yet costs tokens: its share says how many its hooks added (``tokens_added_est``)."""
    memo = PluginRef("memo", "Memory", "third_party", "2.0")
    hook = {"tokens_added_est": 250, "changed": True}
    traces = [message(10 + i, "dave", "s-e", [
        ("hook", "stage", "memo.inject", "plugin_call", memo, 5, 2, "ok", hook),
        ("agent", "stage", "agent", "llm_call", None, 10, 10, "ok", llm("m-cheap", 400, 40))])
        for i in range(2)]
    settings = Settings.from_mapping({"trace_price_table": PRICES, "trace_retention_days": 0})
    async with fed_store(tmp_path / "ctx.db", settings, traces) as store:
        (dave,) = (await store.spend("user"))["groups"]
    shares = {p["plugin"]: p for p in dave["plugins"]}
    assert shares["memo"]["context_tokens_est"] == 500
    assert shares["memo"]["input_tokens"] == 0 and shares["memo"]["display_name"] == "Memory"
    assert shares[""]["input_tokens"] == 800 and shares[""]["context_tokens_est"] == 0


async def test_spend_per_conversation_and_windows(store):
    out = await store.spend("session", since_ns=T0 + 1_000 * MS, until_ns=T0 + 3_000 * MS)
    assert [g["key"] for g in out["groups"]] == ["s-b", "s-c"]  # 330 + 30 vs 100 + 10 tokens
    assert out["groups"][0]["user_ids"] == ["bob"] and out["totals"]["trace_count"] == 2
    assert (await store.spend("user", since_ns=T0 + 10_000 * MS))["groups"] == []


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"by": "planet"}, "by"), ({"limit": 0}, "limit"), ({"limit": 101}, "limit"),
    ({"since_ns": 5, "until_ns": 4}, "until_ns"), ({"since_ns": "soon"}, "since_ns")])
async def test_spend_rejects_bad_parameters_naming_them(store, kwargs, param):
    with pytest.raises(QueryError) as err:
        await store.spend(**kwargs)
    assert err.value.param == param


async def test_the_api_serves_spend_and_display_name_filters(store, aiohttp_client):
    from botrace import Tracer

    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    try:
        client = await aiohttp_client(create_app(tracer, store, None))
        resp = await client.get(f"{API_PREFIX}/spend", params={"by": "user"})
        assert resp.status == 200
        assert [g["key"] for g in (await resp.json())["groups"]] == ["carol", "alice", "bob"]
        resp = await client.get(f"{API_PREFIX}/spend", params={"by": "session", "since": "1h"})
        assert resp.status == 200 and (await resp.json())["groups"] == []  # all in 2023
        for params, name in (({"by": "team"}, "by"), ({"limit": "0"}, "limit"),
                             ({"since": "yesterday"}, "since"), ({"top": "3"}, "top")):
            resp = await client.get(f"{API_PREFIX}/spend", params=params)
            assert resp.status == 400, params
            assert (await resp.json())["param"] == name
        resp = await client.get(f"{API_PREFIX}/traces", params={"plugin": "Alpha helper"})
        assert [t["trace_id"] for t in (await resp.json())["traces"]] == [f"{i:032x}"
                                                                          for i in (2, 0)]
        st = await (await client.get(f"{API_PREFIX}/stats", params={"group_by": "plugin"})).json()
        assert {g["key"]: g["display_name"] for g in st["groups"]}["tooler"] == "Tool Only"
        assert by_key(st)["tooler"]["p99_ms"] > 1900
        st = await (await client.get(f"{API_PREFIX}/stats", params={
            "group_by": "plugin", "percentiles": "false"})).json()
        assert by_key(st)["tooler"]["p99_ms"] is None and by_key(st)["tooler"]["count"] == 3
        resp = await client.get(f"{API_PREFIX}/stats", params={"percentiles": "maybe"})
        assert resp.status == 400 and (await resp.json())["param"] == "percentiles"
    finally:
        await tracer.aclose()


async def test_the_demo_plugins_all_have_rows_and_the_flaky_tool_timeout_shows(tmp_path):
    from botrace.store import TraceStore
    from botrace_host_adapter.demo import chat_function
    from botrace_host_adapter.refhost.host import RefHost
    from botrace_host_adapter.refhost.testing import TEST_CONFIG
    from botrace_host_adapter.refhost.tracing import connect, disconnect

    host = RefHost.from_config_file(tmp_path / "refhost_config.json",
                                    **{**TEST_CONFIG, "flaky_timeout_rate": 1.0})
    await host.start()
    store = TraceStore(str(tmp_path / "botrace.db"))
    await store.open()
    tracer = await connect(host, store, install=False)
    chat = chat_function(host)
    try:
        for text in ("roll the dice for me", "remind me to stretch in 5 minutes",
                     "can you search for sqlite wal mode?", "/flaky"):
            await chat(text, "u1", "s1")
        await tracer.aflush()
        assert await store.flush(timeout=10)
        groups = by_key(await store.stats("plugin"))
    finally:
        await disconnect(host)
        await host.stop()
        await store.close()
    assert {"flaky", "reminder", "search"} <= set(groups)
    timeout_s = TEST_CONFIG["agent"]["tool_timeout_s"]
    flaky = groups["flaky"]
    types = {t["span_type"]: t for t in flaky["by_type"]}
    assert types["tool_call"]["errors"] == 1
    # before: only the /flaky handler's plugin_call, p99 well under a millisecond
    assert flaky["p99_ms"] >= timeout_s * 1000 * 0.95
    assert flaky["top_count"] == 2
    assert groups["search"]["display_name"] == "Search agent"
    assert {"subagent_call", "tool_call", "llm_call"} <= {
        t["span_type"] for t in groups["search"]["by_type"]}
    assert "tool_call" in {t["span_type"] for t in groups["reminder"]["by_type"]}


async def test_without_percentiles_no_span_is_read_and_the_sums_stay(store, monkeypatch):
    from botrace import query

    async def no_sample(*args):
        raise AssertionError("spans read")

    monkeypatch.setattr(query, "_sample_texts", no_sample)
    groups = by_key(await store.stats("plugin", percentiles=False))
    assert groups["tooler"]["count"] == 3 and groups["tooler"]["p99_ms"] is None
    assert groups["alpha"]["display_name"] == "Alpha Helper"
