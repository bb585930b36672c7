"""Cost of tracing in the reference host, and completeness under concurrency.

    python bench/bench_host.py                 # both parts
    python bench/bench_host.py --rounds 9 --messages 300 --store

Part 1 — per-message cost: the reference host with the example plugins and
the scripted provider at zero simulated latency handles a fixed mix of
messages (~30 spans each) with tracing off and on, in alternating rounds in
the same process; the ratio of the medians is printed (target ≤ 1.05).
"tracing off" is the host as shipped with tracing disabled (hooks still
called, every one returning the null span). "on" records every span and
hands it to the sinks: an in-memory counter, plus the SQLite store with
``--store``.

Part 2 — 200 concurrent conversations: every message must come back with a
complete trace (one root, every span ended, every parent in the same trace,
nothing dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from botrace.hookspecs import hookimpl
from botrace_host_adapter.refhost.event import MessageEvent
from botrace_host_adapter.refhost.host import RefHost
from botrace_host_adapter.refhost.testing import TEST_CONFIG
from botrace_host_adapter.refhost.tracing import connect, disconnect

MIX = (  # ~29 spans a message on average
    "what's the weather in Paris, London, Tokyo and Oslo?",
    "can you search for asyncio context variables?",
    "what's the weather in Lima, Cairo, Austin and Berlin?",
    "search for sqlite wal mode",
)


class Counter:
    def __init__(self) -> None:
        self.traces = 0
        self.spans = 0
        self.finished: list = []
        self.keep = False

    @hookimpl
    def botrace_span_finished(self, span) -> None:
        self.spans += 1

    @hookimpl
    def botrace_trace_finished(self, trace) -> None:
        self.traces += 1
        if self.keep:
            self.finished.append(trace)


async def make_host(data_dir: Path, store: bool):
    host = RefHost.from_config_file(data_dir / "refhost_config.json", **{
        **TEST_CONFIG, "trace_db_path": str(data_dir / "botrace.db")})
    await host.start()
    counter = Counter()
    sinks: list = [counter]
    trace_store = None
    if store:
        from botrace.store import TraceStore

        trace_store = TraceStore(str(data_dir / "botrace.db"))
        await trace_store.open()
        sinks.append(trace_store)
    tracer = await connect(host, *sinks, install=False)
    return host, tracer, counter, trace_store


async def run_batch(host: RefHost, n: int) -> float:
    events = [MessageEvent.create(MIX[i % len(MIX)], user_id=f"u{i % 7}", platform="bench")
              for i in range(n)]
    start = time.perf_counter()
    for ev in events:
        await host.handle_event(ev)
    return time.perf_counter() - start


async def settle(tracer, trace_store) -> None:
    await tracer.aflush()
    if trace_store is not None:
        await trace_store.flush()


async def part1(rounds: int, messages: int, store: bool, latency_ms: float = 0.0) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        host, tracer, counter, trace_store = await make_host(Path(tmp), store)
        host.provider.latency_ms = latency_ms
        host.provider.ttft_ms = latency_ms / 3
        tracer.set_enabled(True)
        await run_batch(host, 60)  # warm up imports, caches, SQLite
        await tracer.aflush()
        spans_before, traces_before = counter.spans, counter.traces
        await run_batch(host, 60)
        await tracer.aflush()
        per_msg = (counter.spans - spans_before) / (counter.traces - traces_before)
        times: dict[bool, list[float]] = {False: [], True: []}
        gc.collect()
        for r in range(rounds):
            for on in ((False, True) if r % 2 == 0 else (True, False)):
                tracer.set_enabled(on)
                times[on].append(await run_batch(host, messages))
                await settle(tracer, trace_store)  # sinks catch up outside the timed part...
        # ...and the time the sinks need is charged too: flushing while timed once more.
        tracer.set_enabled(True)
        t0 = time.perf_counter()
        await run_batch(host, messages)
        await settle(tracer, trace_store)
        with_flush = time.perf_counter() - t0
        await disconnect(host)
        if trace_store is not None:
            await trace_store.close()
        await host.stop()
    off, on = statistics.median(times[False]), statistics.median(times[True])
    us = 1e6 / messages
    print(f"part 1: {messages} messages x {rounds} rounds, {per_msg:.1f} spans/message, "
          f"provider latency {latency_ms:g} ms/call, "
          f"sinks: counter{' + SQLite store' if store else ''}")
    print(f"  tracing off: {off * us:8.1f} us/message (median)")
    print(f"  tracing on : {on * us:8.1f} us/message (median)")
    print(f"  on incl. flushing the sinks: {with_flush * us:8.1f} us/message (one batch)")
    print(f"  tracing costs {(on - off) * us:.1f} us/message = "
          f"{(on - off) * us / per_msg:.2f} us/span, all in (caller + dispatcher thread)")
    print(f"  ratio on/off = {on / off:.3f}" + ("  (target <= 1.05)" if not latency_ms else ""))
    best_off, best_on = min(times[False]), min(times[True])
    print(f"  best rounds: off {best_off * us:.1f} us, on {best_on * us:.1f} us/message, "
          f"ratio {best_on / best_off:.3f} (least disturbed by other load on the machine)")
    return on / off


async def part2(conversations: int, store: bool) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        host, tracer, counter, trace_store = await make_host(Path(tmp), store)
        counter.keep = True
        host.provider.latency_ms = 20  # so the conversations really overlap
        host.provider.ttft_ms = 5
        events = [MessageEvent.create(MIX[i % len(MIX)], user_id=f"user{i}", session_id=f"s{i}",
                                      platform="bench") for i in range(conversations)]
        t0 = time.perf_counter()
        await asyncio.gather(*(host.handle_event(e) for e in events))
        elapsed = time.perf_counter() - t0
        await tracer.aflush()
        by_id = {t.trace_id: t for t in counter.finished}
        complete = 0
        for ev in events:
            trace = by_id.get(ev.extras.get("trace_id"))
            if trace is None or not ev.replies:
                continue
            ids = {s.span_id for s in trace.spans}
            if (trace.dropped_spans == 0 and trace.to_dict()["umo"] == ev.umo
                    and all(s.end_ns is not None for s in trace.spans)
                    and all(s.parent_id in ids for s in trace.spans if s is not trace.root)):
                complete += 1
        spans = sum(len(t.spans) for t in counter.finished)
        await disconnect(host)
        if trace_store is not None:
            await trace_store.close()
        await host.stop()
    print(f"part 2: {conversations} concurrent conversations in {elapsed * 1000:.0f} ms: "
          f"{complete}/{conversations} complete traces, {spans} spans")
    return complete == conversations


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--conversations", type=int, default=200)
    p.add_argument("--store", action="store_true", help="also write every trace to SQLite")
    p.add_argument("--latency-ms", type=float, default=2.0,
                   help="also measure with this scripted latency per LLM call (0: skip)")
    args = p.parse_args()
    ratio = asyncio.run(part1(args.rounds, args.messages, args.store))
    if args.latency_ms:
        asyncio.run(part1(args.rounds, max(args.messages // 5, 20), args.store, args.latency_ms))
    ok = asyncio.run(part2(args.conversations, args.store))
    return 0 if ok and ratio <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
