"""Statistics from the rollup: exact whatever the window, per grain, after migration."""

from __future__ import annotations

import json
import math
import random
import sqlite3
from pathlib import Path

import pytest
from storeutil import fed_store

from botrace.config import Settings
from botrace.query import _cover
from botrace.schema import GRAINS, MIGRATIONS, SCHEMA_VERSION
from botrace.store import TraceStore
from botrace.store.synthetic import synthetic_traces

PRICES = {"gpt-4o": {"input": 2.5, "cached_input": 1.25, "output": 10.0}}
START = 1_700_000_000 * 10**9  # 2023-11-14 22:13:20 UTC: the traces cross midnight


@pytest.fixture(scope="module")
def generated() -> list:
    # 300 traces, one every 97 s: eight hours over a day boundary, so every grain is used
    return list(synthetic_traces(300, spans=20, start_ns=START, step_ns=97 * 10**9, seed=11,
                                 error_rate=0.2))


@pytest.fixture(scope="module", params=["process", "thread"])
def writer(request) -> str:
    return request.param


@pytest.fixture
async def store(tmp_path: Path, generated, writer):
    settings = Settings.from_mapping({"trace_price_table": PRICES, "trace_retention_days": 0,
                                      "trace_store_writer": writer})
    async with fed_store(tmp_path / "r.db", settings, generated) as s:
        yield s


def gkey(span) -> str | None:
    meta = span.meta or {}
    if span.span_type == "llm_call":
        return meta.get("model")
    if span.span_type == "tool_call":
        return meta.get("tool_name") or span.name
    if span.span_type == "plugin_call":
        return span.plugin.name if span.plugin else None
    return span.name


def plugin_of(span) -> str | None:
    return span.plugin.name if span.plugin else None


# (a plugin's row counts every span attributed to it, whatever its type)
KEY = {"stage": ("pipeline_stage", gkey), "tool": ("tool_call", gkey),
       "model": ("llm_call", gkey), "plugin": (None, plugin_of),
       "span_type": (None, lambda s: s.span_type), "name": (None, lambda s: s.name)}


def expected(generated, group, lo, hi, status=None, plugin=None) -> dict[str, list]:
    span_type, key = KEY[group]
    out: dict[str, list] = {}
    for t in generated:
        for s in t.spans:
            if s.end_ns is None or (lo is not None and s.start_ns < lo) or \
                    (hi is not None and s.start_ns >= hi):
                continue
            if span_type is not None and s.span_type != span_type:
                continue
            if status is not None and s.status != status:
                continue
            if plugin is not None and (s.plugin is None or s.plugin.name != plugin):
                continue
            k = key(s)
            if k is not None:
                out.setdefault(k, []).append(s)
    return out


def check(result, want) -> None:
    groups = {g["key"]: g for g in result["groups"]}
    assert set(groups) == set(want)
    for k, spans in want.items():
        g = groups[k]
        durations = sorted(s.end_ns - s.start_ns for s in spans)
        assert g["count"] == len(spans), k
        assert g["errors"] == sum(s.status == "error" for s in spans), k
        assert g["total_ms"] == pytest.approx(sum(durations) / 1e6, abs=1e-4), k  # rounded
        assert g["max_ms"] == pytest.approx(durations[-1] / 1e6, abs=1e-4), k
        assert g["output_tokens"] == sum((s.meta or {}).get("output_tokens", 0) for s in spans
                                         if s.span_type == "llm_call")
        if result["group_by"] == "plugin":
            # a plugin's percentiles are of its top-level spans (whose parent is not one of
            # its own), read from the newest traces of the window (all 300 here)
            assert not result["percentiles_from"]["capped"]
            own = {s.span_id for s in spans}
            spans = [s for s in spans if s.parent_id not in own]
            durations = sorted(s.end_ns - s.start_ns for s in spans)
            assert g["top_count"] == len(spans), k
        for name, p in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            exact = durations[max(1, math.ceil(p * len(durations))) - 1] / 1e6
            assert g[name] == pytest.approx(exact, rel=0.031), (k, name)


async def test_whole_window_per_group_matches_the_spans(store, generated) -> None:
    for group in KEY:
        check(await store.stats(group), expected(generated, group, None, None))


async def test_unaligned_windows_are_exact(store, generated) -> None:
    rnd = random.Random(3)
    end = generated[-1].end_ns
    for _ in range(12):
        lo = rnd.randrange(START - 10**9, end)
        hi = rnd.choice([None, rnd.randrange(lo, end + 10**9)])
        lo = rnd.choice([lo, None]) if hi is not None else lo
        group = rnd.choice(list(KEY))
        check(await store.stats(group, since_ns=lo, until_ns=hi),
              expected(generated, group, lo, hi))


async def test_status_and_plugin_filters_come_from_the_rollup_too(store, generated) -> None:
    lo, hi = START + 3_600 * 10**9 + 7, START + 5 * 3_600 * 10**9 - 11
    check(await store.stats("tool", lo, hi, {"status": "error"}),
          expected(generated, "tool", lo, hi, status="error"))
    check(await store.stats("model", lo, hi, {"plugin": "weather"}),
          expected(generated, "model", lo, hi, plugin="weather"))


async def test_user_filter_reads_the_spans_of_those_traces(store, generated) -> None:
    user = generated[0].attributes["user_id"]
    mine = [t for t in generated if t.attributes["user_id"] == user]
    check(await store.stats("span_type", filters={"user_id": user}),
          expected(mine, "span_type", None, None))


def test_cover_splits_a_window_into_whole_buckets_and_edges() -> None:
    day, hour, minute = GRAINS
    lo = 5 * day + 3 * hour + 7 * minute + 11
    hi = 9 * day + 2 * hour + 5
    pieces = _cover(lo, hi, GRAINS)
    assert (day, 6 * day, 9 * day) in pieces
    assert (hour, 5 * day + 4 * hour, 6 * day) in pieces
    assert (minute, 5 * day + 3 * hour + 8 * minute, 5 * day + 4 * hour) in pieces
    assert (None, lo, 5 * day + 3 * hour + 8 * minute) in pieces
    assert (hour, 9 * day, 9 * day + 2 * hour) in pieces
    assert (None, 9 * day + 2 * hour, hi) in pieces
    covered = sorted((a, b) for _, a, b in pieces)
    assert covered[0][0] == lo and covered[-1][1] == hi
    assert all(covered[i][1] == covered[i + 1][0] for i in range(len(covered) - 1))
    assert _cover(None, None, GRAINS) == [(day, None, None)]


async def test_a_version_2_database_gets_its_rollup_at_open(tmp_path: Path) -> None:
    from test_store import make_v1_database

    db = tmp_path / "v2.db"
    make_v1_database(db)
    conn = sqlite3.connect(db, isolation_level=None)  # take it to version 2 only
    script, step = MIGRATIONS[1]
    conn.execute("BEGIN")
    for stmt in (s for s in script.split(";") if s.strip()):
        conn.execute(stmt)
    step(conn)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("COMMIT")
    assert "spans_stats" in {r[1] for r in conn.execute("PRAGMA index_list(spans)")}
    conn.close()
    async with TraceStore(db) as store:
        st = await store.stats("model")
        assert [(g["key"], g["count"]) for g in st["groups"]] == [("gpt-4o", 1)]
        assert st["groups"][0]["p50_ms"] == pytest.approx(3.0, rel=0.03)
        names = await store.stats("span_type")
        assert {g["key"]: g["count"] for g in names["groups"]} == {"message": 1, "llm_call": 1}
        assert (await store.list_traces({"model": "gpt-4o"}))["total"] == 1
    conn = sqlite3.connect(db)
    assert "spans_stats" not in {r[1] for r in conn.execute("PRAGMA index_list(spans)")}
    # one row per grain for each of the two spans
    assert conn.execute("SELECT count(*) FROM stats_rollup").fetchone()[0] == 2 * len(GRAINS)
    conn.close()


async def test_a_version_3_database_gets_numbered_tags_at_open(tmp_path: Path) -> None:
    """Schema 4 numbers the (kind, value) tags; the list filters find the same traces."""
    from test_store import make_v1_database

    db = tmp_path / "v3.db"
    tid = make_v1_database(db)
    conn = sqlite3.connect(db, isolation_level=None)  # take it to version 3 only
    for version in (1, 2):
        script, step = MIGRATIONS[version]
        conn.execute("BEGIN")
        for stmt in (s for s in script.split(";") if s.strip()):
            conn.execute(stmt)
        step(conn)
        conn.execute(f"PRAGMA user_version = {version + 1}")
        conn.execute("COMMIT")
    old_tags = set(conn.execute("SELECT kind, value, start_ns, trace_id FROM trace_tags"))
    assert ("plugin", "weather") in {t[:2] for t in old_tags}
    conn.close()
    async with TraceStore(db) as store:
        assert store.health()["schema_version"] == SCHEMA_VERSION
        for flt in ({"plugin": "weather"}, {"model": "gpt-4o"}, {"span_type": "llm_call"},
                    {"plugin": "weather", "span_type": "message"}):
            assert [t["trace_id"] for t in (await store.list_traces(flt))["traces"]] == [tid]
        assert (await store.list_traces({"plugin": "nobody"}))["total"] == 0
    conn = sqlite3.connect(db)
    new_tags = set(conn.execute("SELECT v.kind, v.value, g.start_ns, g.trace_id "
                                "FROM trace_tags g JOIN tag_values v USING (tag)"))
    assert new_tags == old_tags
    conn.close()


async def test_a_version_5_database_gets_its_span_rows_as_chunks_at_open(tmp_path: Path) -> None:
    """Schema 6 keeps a trace's spans as JSON chunks: each version-5 span row arrives, with
    its values, self time and cost, and the ``spans`` view gives back the same rows."""
    from test_store import make_v1_database

    db = tmp_path / "v5.db"
    tid = make_v1_database(db)
    conn = sqlite3.connect(db, isolation_level=None)  # take it to version 5 only
    for version in (1, 2, 3, 4):
        script, step = MIGRATIONS[version]
        conn.execute("BEGIN")
        for stmt in (s for s in script.split(";") if s.strip()):
            conn.execute(stmt)
        if step is not None:
            step(conn)
        conn.execute(f"PRAGMA user_version = {version + 1}")
        conn.execute("COMMIT")
    start = conn.execute("SELECT start_ns FROM traces").fetchone()[0]
    conn.execute(  # a span whose values hold quotes, a newline and non-ASCII text
        "INSERT INTO spans (trace_start_ns, trace_id, span_id, parent_id, name, span_type, "
        "plugin, gkey, start_ns, end_ns, status, input_tokens, output_tokens, cached_tokens, "
        "self_ns, dur_bucket, cost_usd, data) VALUES (?, ?, ?, ?, 'get_weather', 'tool_call', "
        "'weather', 'get_weather', 40, 1000040, 'error', 0, 0, 0, 1000000, 468, 0.25, ?)",
        (start, tid, "3" * 16, "1" * 16,
         '{"input": {"city": "Zürich \\"old\\"\\n"}, "error": {"type": "Boom"}}'))
    old = conn.execute("SELECT span_id, parent_id, name, span_type, plugin, gkey, start_ns, "
                       "end_ns, status, self_ns, cost_usd, data FROM spans "
                       "ORDER BY start_ns").fetchall()
    conn.close()
    async with TraceStore(db) as store:
        assert store.health()["schema_version"] == SCHEMA_VERSION
        doc = await store.get_trace(tid)
        got = {s["span_id"]: s for s in doc["spans"]}
        assert [s["span_id"] for s in doc["spans"]] == ["1" * 16, "2" * 16, "3" * 16]
        tool = got["3" * 16]
        assert (tool["parent_id"], tool["status"], tool["self_ns"], tool["cost_usd"]) == (
            "1" * 16, "error", 1_000_000, 0.25)
        assert tool["input"] == {"city": 'Zürich "old"\n'} and tool["error"] == {"type": "Boom"}
        assert got["2" * 16]["meta"] == {"model": "gpt-4o"}
        assert [c["span_id"] for c in doc["tree"][0]["children"]] == ["2" * 16, "3" * 16]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM span_chunks").fetchone()[0] == 1
    assert conn.execute("SELECT type FROM sqlite_master WHERE name = 'spans'").fetchone() == (
        "view",)
    view = conn.execute("SELECT span_id, parent_id, name, span_type, plugin, gkey, start_ns, "
                        "end_ns, status, self_ns, cost_usd, data FROM spans "
                        "ORDER BY start_ns").fetchall()
    conn.close()
    assert [r[:11] for r in view] == [r[:11] for r in old]
    assert [None if r[11] is None else json.loads(r[11]) for r in view] == [
        None if r[11] is None else json.loads(r[11]) for r in old]


def _folded_batches(traces: list, per: int) -> list[tuple]:
    """The traces' records as the feeder folds them, ``per`` traces a batch."""
    from botrace.pricing import PriceTable
    from botrace.store.folding import SpanFolder
    from botrace.store.jsontext import encode_value
    from botrace.store.synthetic import feed

    capture = TraceStore(Path("unused.db"))  # not opened: its hooks only gather records
    capture._accepting = True
    folder = SpanFolder(PriceTable(PRICES), encode_value)
    out = []
    for i in range(0, len(traces), per):
        for trace in traces[i:i + per]:
            feed(capture, trace)
        out.append(folder.fold(capture._buf)[:4])
        capture._buf = []
    return out


def _lagging_writer(db: Path, generated: list):
    """A writer that wrote every batch with hour and day rows held back (its rollup
    interval is an hour), as if it died before writing them."""
    from botrace.store.writer import Writer, prepare_database

    prepare_database(db)
    w = Writer({"path": str(db), "prices": PRICES, "rollup_interval": 3600.0}, lambda m: None)
    w.connect()
    w.rollup_due = float("inf")
    for folded in _folded_batches(generated, 25):
        assert w.write(w.process([folded]))
    return w


def test_hour_and_day_rows_lag_the_minute_rows_until_written(tmp_path: Path, generated) -> None:
    from test_store import assert_rollup_matches_spans

    db = tmp_path / "lag.db"
    w = _lagging_writer(db, generated)
    conn = sqlite3.connect(db)
    minutes, hours = (conn.execute("SELECT coalesce(sum(n), 0) FROM stats_rollup WHERE grain = ?",
                                   (g,)).fetchone()[0] for g in (GRAINS[2], GRAINS[1]))
    dirty = [r[0] for r in conn.execute("SELECT t0 FROM rollup_dirty")]
    conn.close()
    assert minutes == 300 * 20 and hours == 0  # minute rows at once, hours held back
    assert len(dirty) == 9 and all(t % GRAINS[1] == 0 for t in dirty)  # 8 h over 9 hours
    assert w.write(w.process([]), flush_rollup=True)
    w.conn.close()
    assert_rollup_matches_spans(db)
    assert sqlite3.connect(db).execute("SELECT count(*) FROM rollup_dirty").fetchone()[0] == 0


async def test_hour_rows_a_dead_writer_left_behind_are_rebuilt_at_open(tmp_path: Path,
                                                                       generated) -> None:
    from test_store import assert_rollup_matches_spans

    db = tmp_path / "dead.db"
    _lagging_writer(db, generated).conn.close()  # dies: no flush, no close
    async with TraceStore(db) as store:
        groups = {g["key"]: g["count"] for g in (await store.stats("span_type"))["groups"]}
    assert sum(groups.values()) == 300 * 20  # a whole-store window reads the day rows
    assert_rollup_matches_spans(db)
    assert sqlite3.connect(db).execute("SELECT count(*) FROM rollup_dirty").fetchone()[0] == 0
