"""The SQLite store: what reaches disk, recovery, migration, retention, bad files."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from storeutil import rows

from botrace import PluginRef, Tracer
from botrace.schema import APPLICATION_ID, SCHEMA_V1, SCHEMA_VERSION
from botrace.store import StoreError, TraceStore
from botrace.store.rollup import _FROM_SPANS, decode_hist, fold, minute_aggs
from botrace.store.synthetic import feed, synthetic_traces

ROOT = Path(__file__).resolve().parent.parent
DAY_NS = 86_400 * 10**9


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "botrace.db"


async def test_tracer_spans_reach_sqlite_with_totals_and_tree(db: Path) -> None:
    tracer = Tracer({"trace_enable": True,
                     "trace_price_table": {"gpt-4o": {"input": 2.5, "output": 10}}},
                    load_entrypoints=False)
    store = TraceStore(db, tracer.settings, flush_interval=0.01)
    tracer.register(store, name="store")
    await tracer.start()
    weather = PluginRef("weather", "Weather", "third_party", "1.0")
    with tracer.start_trace("message", {"user_id": "u1", "session_id": "s1", "umo": "qq:1",
                                        "outline": "weather in Paris?"}) as root:
        with tracer.span("Process", "pipeline_stage"):
            with tracer.span("WeatherPlugin.on_message", "plugin_call", plugin=weather):
                with tracer.span("llm", "llm_call") as llm:
                    llm.set_meta(model="gpt-4o", provider="openai")
                    llm.set_usage(input_tokens=1000, output_tokens=100, cached_tokens=0)
                with tracer.span("get_weather", "tool_call") as tool:
                    tool.set_meta(tool_name="get_weather")
                    tool.set_input(city="Paris")
    await tracer.aflush()
    await store.flush()

    (row,) = rows(db, "SELECT trace_id, status, user_id, span_count, input_tokens, output_tokens, "
                      "cost_usd FROM traces")
    assert row[0] == root.trace_id
    assert row[1:6] == ("ok", "u1", 5, 1000, 100)
    assert row[6] == pytest.approx(0.0035)
    assert rows(db, "SELECT count(*) FROM spans WHERE trace_id = ?", (root.trace_id,)) == [(5,)]
    tags = set(rows(db, "SELECT v.kind, v.value FROM trace_tags g JOIN tag_values v USING (tag)"))
    assert {("plugin", "weather"), ("model", "gpt-4o"), ("tool", "get_weather"),
            ("span_type", "llm_call")} <= tags

    doc = await store.get_trace(root.trace_id)
    (top,) = doc["tree"]
    assert top["span_type"] == "message"
    handler = top["children"][0]["children"][0]
    assert handler["plugin"]["name"] == "weather"
    assert [c["span_type"] for c in handler["children"]] == ["llm_call", "tool_call"]
    assert handler["children"][1]["input"] == {"city": "Paris"}
    # self time excludes the children (one after the other: exactly their sum)
    assert handler["self_ns"] == handler["duration_ns"] - sum(
        c["duration_ns"] for c in handler["children"])
    health = tracer.health()
    (store_health,) = [s for s in health["sinks"] if s.get("name") == "store"]
    assert store_health["written"] >= 5 and store_health["dropped"] == 0
    await tracer.aclose()
    assert store.health()["state"] == "closed"



@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_spans_still_running_are_stored_running_then_replaced(db: Path, writer) -> None:
    """The store has no span-started hook: the feeder finds running spans in the open
    trace's span list, writes them as "running" once, and their finished rows replace them."""
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    store = TraceStore(db, tracer.settings, flush_interval=0.01, writer=writer)
    tracer.register(store, name="store")
    await tracer.start()
    assert not hasattr(store, "botrace_span_started")
    statuses = "SELECT name, status FROM spans ORDER BY start_ns"
    with tracer.start_trace("message", {"user_id": "u1"}) as root:
        with tracer.span("Process", "pipeline_stage"):
            with tracer.span("first", "custom"):
                pass
            await tracer.aflush()
            await store.flush()
            assert rows(db, statuses) == [("message", "running"), ("Process", "running"),
                                          ("first", "ok")]
            assert rows(db, "SELECT status FROM traces") == [("running",)]
            with tracer.span("second", "custom"):
                await tracer.aflush()
                await store.flush()
                assert rows(db, statuses)[-1] == ("second", "running")
            await tracer.aflush()
            await store.flush()
            # nothing new was started: the running rows are not written again
            assert len(rows(db, statuses)) == 4
    await tracer.aflush()
    await store.flush()
    assert rows(db, statuses) == [("message", "ok"), ("Process", "ok"), ("first", "ok"),
                                  ("second", "ok")]
    assert rows(db, "SELECT trace_id, status, span_count FROM traces") == [
        (root.trace_id, "ok", 4)]
    # each running version was a chunk of its own, replaced by a later one
    assert rows(db, "SELECT count(*) FROM span_chunks")[0][0] >= 3
    doc = await store.get_trace(root.trace_id)
    assert [(s["name"], s["status"]) for s in doc["spans"]] == [
        ("message", "ok"), ("Process", "ok"), ("first", "ok"), ("second", "ok")]
    assert store._intake.open == {}
    assert store.dropped == 0
    await tracer.aclose()

CRASH_SCRIPT = textwrap.dedent("""
    import asyncio, os, sys
    from botrace.store import TraceStore
    from botrace.store.synthetic import synthetic_traces

    async def main():
        store = TraceStore(sys.argv[1], flush_interval=0.0)
        store.retention_days = 0
        await store.open()
        trace = next(synthetic_traces(1, spans=20))
        # the leaves finish, the root and the stages never do
        done = [s for s in trace.spans if s.span_type not in ("message", "pipeline_stage")]
        for span in trace.spans:
            if span not in done:
                span.end_ns, span.status = None, "running"
        trace.end_ns = None
        store.botrace_trace_started(trace=trace)
        for span in done:
            store.botrace_span_finished(span=span)
        await store.flush()
        print(trace.trace_id, len(done), len(trace.spans), store.writer_pid, flush=True)
        os._exit(1)   # killed mid-message: no close, no trace_finished

    asyncio.run(main())
""")


async def test_trace_running_when_process_dies_is_interrupted_after_restart(db: Path) -> None:
    out = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(db)], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    trace_id, finished, total, writer_pid = out.stdout.split()
    # its writer process saw the host go and ended (no writer left behind)
    deadline = time.monotonic() + 20
    while _alive(int(writer_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(int(writer_pid))
    store = TraceStore(db)
    store.retention_days = 0  # the synthetic trace is from 2023: keep it
    async with store:
        assert store.health()["recovered_traces"] == 1
        page = await store.list_traces({"status": "interrupted"})
        assert [t["trace_id"] for t in page["traces"]] == [trace_id]
        summary = page["traces"][0]
        assert summary["span_count"] == int(total)
        doc = await store.get_trace(trace_id)
        statuses = [s["status"] for s in doc["spans"]]
        assert statuses.count("ok") + statuses.count("error") == int(finished)
        assert statuses.count("interrupted") == int(total) - int(finished)
        assert len(doc["tree"]) == 1 and doc["tree"][0]["status"] == "interrupted"
        # its totals and tags were rebuilt from the spans kept, so filters find it
        spans = doc["spans"]
        llm = [s for s in spans if s["span_type"] == "llm_call"]
        tools = [s for s in spans if s["span_type"] == "tool_call"]
        plugins = {s["plugin"]["name"] for s in spans if s["plugin"]}
        models = {s["meta"]["model"] for s in llm}
        assert llm and tools and plugins
        assert (summary["llm_calls"], summary["tool_calls"]) == (len(llm), len(tools))
        assert summary["input_tokens"] == sum(s["meta"]["input_tokens"] for s in llm)
        assert summary["error_count"] == statuses.count("error")
        assert set(summary["plugins"]) == plugins and set(summary["models"]) == models
        for key, values in (("span_type", {s["span_type"] for s in spans}),
                            ("plugin", plugins), ("model", models),
                            ("tool", {s["meta"]["tool_name"] for s in tools})):
            for value in values:
                assert (await store.list_traces({key: value, "status": "interrupted"})
                        )["total"] == 1, (key, value)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def make_v1_database(path: Path) -> str:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(SCHEMA_V1)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    tid = "ab" * 16
    conn.execute("INSERT INTO traces (trace_id, name, start_ns, end_ns, duration_ns, status, "
                 "user_id, span_count) VALUES (?, 'message', ?, ?, 5000000, 'ok', 'old-user', 2)",
                 (tid, time.time_ns() - 10**9, time.time_ns()))
    conn.executemany(
        "INSERT INTO spans (trace_id, span_id, parent_id, name, span_type, plugin, model, "
        "start_ns, end_ns, duration_ns, status, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ok', ?)",
        [(tid, "1" * 16, None, "message", "message", None, None, 10, 5_000_010, 5_000_000, None),
         (tid, "2" * 16, "1" * 16, "llm", "llm_call", "weather", "gpt-4o", 20, 3_000_020,
          3_000_000, '{"meta": {"model": "gpt-4o"}}')])
    conn.close()
    return tid


async def test_opens_and_migrates_a_version_1_database(db: Path) -> None:
    tid = make_v1_database(db)
    async with TraceStore(db) as store:
        assert store.health()["schema_version"] == SCHEMA_VERSION
        assert store.health()["commit_interval_ms"] == 500  # an idle writer: the shortest
        page = await store.list_traces({"plugin": "weather", "model": "gpt-4o"})
        assert [t["trace_id"] for t in page["traces"]] == [tid]
        doc = await store.get_trace(tid)
        assert [s["span_type"] for s in doc["tree"][0]["children"]] == ["llm_call"]
        stats = await store.stats("model")
        assert stats["groups"][0]["key"] == "gpt-4o"
        assert stats["groups"][0]["p50_ms"] == pytest.approx(3.0, rel=0.05)
    assert rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("content", [b"this is not a database at all\n" * 200,
                                     b"SQLite format 3\x00" + os.urandom(4096)])
async def test_corrupt_file_raises_a_clear_error_and_is_left_untouched(db: Path, content) -> None:
    db.write_bytes(content)
    before = digest(db)
    with pytest.raises(StoreError, match=r"left untouched|cannot open"):
        await TraceStore(db).open()
    assert digest(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]


async def test_foreign_sqlite_database_is_refused_and_left_untouched(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (9.5)")
    conn.commit()
    conn.close()
    before = digest(db)
    with pytest.raises(StoreError, match="another application"):
        await TraceStore(db).open()
    with pytest.raises(StoreError):
        await TraceStore(db, read_only=True).open()
    assert digest(db) == before


async def test_newer_schema_version_is_refused(db: Path) -> None:
    async with TraceStore(db):
        pass
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        await TraceStore(db).open()


async def test_retention_deletes_whole_old_traces_and_leaves_no_orphans(db: Path) -> None:
    now = time.time_ns()
    store = TraceStore(db, prune_batch=7)
    store.retention_days = 0  # fill first, prune on the next open
    await store.open()
    old = list(synthetic_traces(30, start_ns=now - 10 * DAY_NS, step_ns=10**9, seed=1))
    new = list(synthetic_traces(20, start_ns=now - DAY_NS, step_ns=10**9, seed=2))
    for trace in old + new:
        feed(store, trace)
    await store.close()
    assert rows(db, "SELECT count(*) FROM traces") == [(50,)]

    store = TraceStore(db, prune_batch=7)  # default 7 days; prunes at start, 7 at a time
    await store.open()
    for _ in range(500):
        if store.pruned_traces >= 30:
            break
        await store.flush()
        await asyncio_sleep(0.01)
    await store.close()
    kept = {r[0] for r in rows(db, "SELECT trace_id FROM traces")}
    assert kept == {t.trace_id for t in new}
    assert store.pruned_traces == 30
    assert rows(db, "SELECT count(*) FROM spans WHERE trace_id NOT IN "
                    "(SELECT trace_id FROM traces)") == [(0,)]
    assert rows(db, "SELECT count(*) FROM trace_tags WHERE trace_id NOT IN "
                    "(SELECT trace_id FROM traces)") == [(0,)]
    # every kept trace still has all of its spans
    assert rows(db, "SELECT count(*) FROM spans") == [(20 * 20,)]
    # and the statistics rollup lost exactly the deleted spans
    assert_rollup_matches_spans(db)


def assert_rollup_matches_spans(path: Path) -> None:
    """The rollup table holds exactly what a rebuild from the spans would (the longest
    duration may only be an upper bound where retention removed part of a bucket)."""
    conn = sqlite3.connect(path)
    try:
        want = fold(minute_aggs(conn.execute(_FROM_SPANS.format(where=""))))
        have = {tuple(r[:7]): [*r[7:16], decode_hist(r[16])]
                for r in conn.execute("SELECT * FROM stats_rollup")}
    finally:
        conn.close()
    assert set(have) == set(want)
    for key, agg in want.items():
        row = have[key]
        assert row[:3] == agg[:3] and row[4:7] == agg[4:7], key
        assert row[7] == pytest.approx(agg[7]) and row[9] == agg[9], key
        assert row[3] >= agg[3]


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_size_cap_prunes_oldest_traces_first(db: Path) -> None:
    store = TraceStore(db, prune_batch=50)
    store.retention_days = 0
    await store.open()
    traces = list(synthetic_traces(600, start_ns=time.time_ns() - 3600 * 10**9, spans=20))
    for trace in traces:
        feed(store, trace)
    await store.flush()
    used = await store._used_bytes()
    cap_mb = max(1, used // (2 * 1024 * 1024))
    deleted = await store.prune(retention_days=0, max_mb=cap_mb)
    assert deleted > 0
    assert await store._used_bytes() <= cap_mb * 1024 * 1024
    kept = [r[0] for r in rows(db, "SELECT trace_id FROM traces ORDER BY start_ns")]
    assert kept == [t.trace_id for t in traces[-len(kept):]]  # the newest survive
    await store.close()


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_close_writes_everything_accepted(db: Path, writer) -> None:
    store = TraceStore(db, flush_interval=0.5, writer=writer)
    await store.open()
    traces = list(synthetic_traces(300, spans=20))
    for trace in traces:
        feed(store, trace)
    await store.close()  # no flush before: close must write it all
    assert rows(db, "SELECT count(*) FROM traces WHERE status != 'running'") == [(300,)]
    assert rows(db, "SELECT count(*) FROM spans WHERE status != 'running'") == [(6000,)]
    assert store.dropped == 0


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_every_span_and_tag_row_is_stored_as_fed(db: Path, writer) -> None:
    """Rows go in many to a statement; counts that are not a multiple of the statement's
    size (73 traces x 13 spans here) must still store each row once, exactly as fed."""
    traces = list(synthetic_traces(73, spans=13, seed=5))
    store = TraceStore(db, flush_interval=10.0, writer=writer)
    await store.open()
    for trace in traces:
        feed(store, trace)
    assert await store.flush(timeout=30)  # one batch, one transaction
    await store.close()
    fed = {(s.trace_id, s.span_id, s.parent_id, s.name, s.span_type, s.start_ns, s.end_ns,
            s.status) for t in traces for s in t.spans}
    stored = set(rows(db, "SELECT trace_id, span_id, parent_id, name, span_type, start_ns, "
                          "end_ns, status FROM spans"))
    assert len(fed) == 73 * 13 and stored == fed
    assert rows(db, "SELECT count(*) FROM spans") == [(len(fed),)]
    tags = set(rows(db, "SELECT v.kind, v.value, g.trace_id FROM trace_tags g "
                        "JOIN tag_values v USING (tag)"))
    want = set()
    for t in traces:
        for s in t.spans:
            want.add(("span_type", s.span_type, t.trace_id))
            if s.plugin is not None:
                want.add(("plugin", s.plugin.name, t.trace_id))
            if s.span_type == "llm_call":
                want.add(("model", s.meta["model"], t.trace_id))
            if s.span_type == "tool_call":
                want.add(("tool", s.meta["tool_name"], t.trace_id))
    assert tags == want
    assert rows(db, "SELECT count(*) FROM traces WHERE status != 'running'") == [(73,)]


async def test_read_only_store_serves_queries_and_ignores_hooks(db: Path) -> None:
    async with TraceStore(db) as store:
        for trace in synthetic_traces(5):
            feed(store, trace)
    ro = TraceStore(db, read_only=True)
    await ro.open()
    assert (await ro.list_traces())["total"] == 5
    feed(ro, next(synthetic_traces(1, seed=9)))  # ignored, never written
    assert ro.health()["state"] == "read_only"
    await ro.close()
    assert rows(db, "SELECT count(*) FROM traces") == [(5,)]
    with pytest.raises(StoreError, match="does not exist"):
        await TraceStore(db.parent / "missing.db", read_only=True).open()
