"""Query benchmark over a store of ~1,000,000 spans (50,000 traces of 20 spans, 6 days).

Times what the web page asks: a list page of 50 with each filter (and its
total), one 500-span trace as a tree, statistics over every span, sessions and
users. Figures are p50/p95 of repeated calls with varied parameters, next to
the targets; the store is built through the store's own write path.

    /work/venv/bin/python bench/bench_query.py               # builds /tmp/bench_query.db once
    /work/venv/bin/python bench/bench_query.py --traces 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botrace.store import TraceStore
from botrace.store.synthetic import feed, synthetic_traces

DAY = 86_400 * 10**9


async def build(path: Path, n: int) -> tuple[int, str]:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = TraceStore(path)
    store.retention_days = 0
    await store.open()
    start = time.time_ns() - 6 * DAY
    step = 6 * DAY // n
    t0 = time.perf_counter()
    chunk = 2_000
    for i in range(0, n, chunk):
        traces = list(synthetic_traces(min(chunk, n - i), spans=20, start_ns=start + i * step,
                                       step_ns=step, seed=i, users=500, sessions=5_000))
        await asyncio.to_thread(lambda ts=traces: [feed(store, t) for t in ts])
        await store.flush()  # build at the writer's pace: the point here is the queries
    (big,) = synthetic_traces(1, spans=500, start_ns=start + n // 2 * step + 1, seed=99)
    feed(store, big)
    await store.close()
    h = store.health()
    print(f"store after build: written {h['written']:,} rows, dropped {h['dropped']:,}, "
          f"write errors {h['write_errors']}, last error {h['last_error']}")
    print(f"built {n} traces ({n * 20 + 500:,} spans) in {time.perf_counter() - t0:.0f}s, "
          f"{os.path.getsize(path) / 1e6:.0f} MB")
    return start, big.trace_id


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p * (len(values) - 1)))]


async def timed(fn, repeat: int) -> list[float]:
    out = []
    for i in range(repeat):
        t = time.perf_counter()
        await fn(i)
        out.append((time.perf_counter() - t) * 1e3)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=50_000)
    ap.add_argument("--db", default="/tmp/bench_query.db")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    path = Path(args.db)
    meta = path.with_suffix(".meta")
    if args.rebuild or not path.exists() or not meta.exists() or \
            int(meta.read_text().split()[0]) != args.traces:
        start, big = await build(path, args.traces)
        meta.write_text(f"{args.traces} {start} {big}")
    _, start, big = meta.read_text().split()
    start = int(start)
    conn = sqlite3.connect(path)
    n_spans = conn.execute("SELECT sum(span_count) FROM traces").fetchone()[0]
    n_traces = conn.execute("SELECT count(*) FROM traces").fetchone()[0]
    conn.close()
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, load "
          f"{os.getloadavg()[0]:.1f}; store: {n_traces:,} traces, {n_spans:,} spans, "
          f"{os.path.getsize(path) / 1e6:.0f} MB")

    store = TraceStore(path, read_only=True)
    await store.open()
    rnd = random.Random(5)
    R = args.repeat
    words = ["rain", "coffee", "meeting", "python", "joke"]
    list_cases = {
        "no filter": lambda i: {},
        "user_id": lambda i: {"user_id": f"u{rnd.randrange(500)}"},
        "session_id": lambda i: {"session_id": f"s{rnd.randrange(5000)}"},
        "umo": lambda i: {"umo": f"qq:GroupMessage:{rnd.randrange(5000)}"},
        "plugin": lambda i: {"plugin": rnd.choice(["weather", "search", "memory", "reminder"])},
        "status=error": lambda i: {"status": "error"},
        "span_type": lambda i: {"span_type": rnd.choice(["io_call", "tool_call", "llm_call"])},
        "model": lambda i: {"model": rnd.choice(["gpt-4o", "claude-sonnet-4", "deepseek-chat"])},
        "min_duration_ms": lambda i: {"min_duration_ms": rnd.choice([50, 150, 400])},
        "q (outline text)": lambda i: {"q": rnd.choice(words)},
        "time range (1 day)": lambda i: {"since_ns": start + (i % 5) * DAY,
                                         "until_ns": start + (i % 5 + 1) * DAY},
        "plugin+model+status": lambda i: {"plugin": "search", "model": "gpt-4o", "status": "ok"},
    }
    print(f"\nlist 50 with filters (+ total), {R} calls each:   target p95 <= 20 ms")
    every: list[float] = []
    for name, make in list_cases.items():
        ms = await timed(lambda i, make=make: store.list_traces(make(i), limit=50), R)
        every += ms
        page = await store.list_traces(make(0), limit=50)
        print(f"  {name:<22} p50 {statistics.median(ms):6.1f} ms  p95 {pct(ms, 0.95):6.1f} ms"
              f"   (total {page['total']:,})")
    first = await store.list_traces({}, limit=50)

    async def page2(i):
        await store.list_traces({}, limit=50, cursor=first["next_cursor"])

    ms = await timed(page2, R)
    every += ms
    print(f"  {'next page (cursor)':<22} p50 {statistics.median(ms):6.1f} ms  p95 {pct(ms, 0.95):6.1f} ms")
    print(f"  ALL list calls: p50 {statistics.median(every):.1f} ms, p95 {pct(every, 0.95):.1f} ms "
          f"-> {'meets' if pct(every, 0.95) <= 20 else 'MISSES'} the 20 ms target")

    # a sort other than newest first reads every matching trace and keeps the top of the
    # order (no index serves it): reported apart, it is not held to the 20 ms target
    print(f"\nsorted list 50 (sort=, every match read), {R} calls each:")
    sort_cases = {"no filter": list_cases["no filter"], "time range (1 day)": list_cases["time range (1 day)"],
                  "user_id": list_cases["user_id"]}
    for sort in ("-duration", "tokens", "-cost"):
        for name, make in sort_cases.items():
            ms = await timed(lambda i, make=make, sort=sort: store.list_traces(make(i), limit=50, sort=sort), R)
            print(f"  {sort:<10} {name:<19} p50 {statistics.median(ms):6.1f} ms  p95 {pct(ms, 0.95):6.1f} ms")
    for limit in (500, 2000):
        ms = await timed(lambda i, limit=limit: store.trace_points({}, limit=limit), R)
        print(f"  latency points, newest {limit:<5}   p50 {statistics.median(ms):6.1f} ms  p95 {pct(ms, 0.95):6.1f} ms")

    ms = await timed(lambda i: store.get_trace(big), R)
    doc = await store.get_trace(big)
    print(f"\none 500-span trace as a tree ({len(doc['spans'])} spans): p50 "
          f"{statistics.median(ms):.1f} ms, p95 {pct(ms, 0.95):.1f} ms   target <= 20 ms")

    print(f"\nstats over all {n_spans:,} spans (whole window), 5 calls each:   target <= 500 ms")
    for group in ("stage", "plugin", "tool", "model", "span_type", "name"):
        ms = await timed(lambda i, g=group: store.stats(g), 5)
        res = await store.stats(group)
        print(f"  by {group:<10} p50 {statistics.median(ms):6.0f} ms  max {max(ms):6.0f} ms  "
              f"({sum(g['count'] for g in res['groups']):,} spans in {len(res['groups'])} groups)")
    ms = await timed(lambda i: store.stats("tool", since_ns=start + 5 * DAY), 5)
    print(f"  by tool, last day     p50 {statistics.median(ms):6.0f} ms")
    # windows on no minute boundary: whole days/hours/minutes from the rollup, the
    # part-minutes at both edges from the spans
    ms = await timed(lambda i: store.stats(
        "model", since_ns=start + i * DAY // 3 + 12_345_678_901,
        until_ns=start + i * DAY // 3 + 12_345_678_901 + 36 * 3_600 * 10**9 + 17_000_000_007), 5)
    print(f"  by model, 36 h window off the minute grid   p50 {statistics.median(ms):6.0f} ms  "
          f"max {max(ms):6.0f} ms")
    ms = await timed(lambda i: store.stats("span_type", filters={"user_id": f"u{i * 37}"}), 5)
    print(f"  by span type, one user (the spans of its ~100 traces)   p50 "
          f"{statistics.median(ms):6.0f} ms")

    print("\nsessions / users, first page of 50:")
    for name, fn in (("sessions", lambda i: store.sessions(limit=50)),
                     ("users", lambda i: store.users(limit=50))):
        ms = await timed(fn, 5)
        print(f"  {name:<9} p50 {statistics.median(ms):6.0f} ms  max {max(ms):6.0f} ms")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
