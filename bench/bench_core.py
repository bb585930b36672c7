"""Core overhead benchmarks (not tests): ratios against a baseline measured in the same run.

    python bench/bench_core.py            # all
    python bench/bench_core.py --quick    # fewer repeats

Prints, for each figure, botrace's number, the baseline's and the ratio:
1. tracing off: ``@span_record`` on a trivial function vs the bare call;
2. tracing on: child span + 2 attributes + finish vs the OpenTelemetry SDK's
   ``start_as_current_span`` with a SimpleSpanProcessor and a no-op exporter;
3. finishing a 50-span trace on the caller's path (root end + hand-off), and
   what the dispatcher thread then spends per trace off that path;
4. memory of a finished 50-span trace, vs the same trace as plain dicts.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable

from botrace import Tracer, hookimpl, span_context, span_record
from botrace.context import current_span_var


def best_ns(fn: Callable[[], None], number: int, repeat: int) -> float:
    """Best per-call time in ns over ``repeat`` rounds of ``number`` calls (min is least noisy)."""
    times = []
    for _ in range(repeat):
        gc.disable()
        start = time.perf_counter_ns()
        fn_loop(fn, number)
        times.append((time.perf_counter_ns() - start) / number)
        gc.enable()
    return min(times)


def fn_loop(fn: Callable[[], None], number: int) -> None:
    for _ in range(number):
        fn()


def bench_off(repeat: int) -> dict[str, float]:
    def bare(x):
        return x

    traced = span_record("trivial")(bare)
    n = 200_000
    loop_only = bare_ns = traced_ns = float("inf")
    for _ in range(3 * repeat):  # alternating rounds, best of each (see bench_on)
        loop_only = min(loop_only, best_ns(lambda: None, n, 1))
        bare_ns = min(bare_ns, best_ns(lambda: bare(1), n, 1))
        traced_ns = min(traced_ns, best_ns(lambda: traced(1), n, 1))
    bare_ns -= loop_only
    traced_ns -= loop_only
    return {"bare_ns": bare_ns, "traced_ns": traced_ns, "overhead_ns": traced_ns - bare_ns}


def bench_on(repeat: int) -> dict[str, float]:
    """Both sides record messages of 1 root + 49 children (2 attributes each), root cost included.

    OpenTelemetry: ``start_as_current_span`` with a SimpleSpanProcessor and a
    no-op exporter. botrace: ``span_context`` with a no-op sink registered and
    its dispatcher thread running, as in a host.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class NoopExporter(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    class NoopSink:
        @hookimpl
        def botrace_span_finished(self, span):
            pass

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(NoopExporter()))
    otel = provider.get_tracer("bench")

    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    tracer.register(NoopSink())

    def ours():
        with tracer.start_trace("message"):
            for _ in range(49):
                with span_context("child", "io_call") as s:
                    s.set_meta(a=1, b="two")

    def theirs():
        with otel.start_as_current_span("message"):
            for _ in range(49):
                with otel.start_as_current_span("child") as s:
                    s.set_attribute("a", 1)
                    s.set_attribute("b", "two")

    # Rounds alternate between the two, so a burst of load from elsewhere on
    # this shared machine hits both sides alike; the best round of each counts.
    n = 200  # messages per round
    theirs_ns = ours_ns = float("inf")
    for _ in range(2 * repeat):
        theirs_ns = min(theirs_ns, best_ns(theirs, n, 1) / 50)
        ours_ns = min(ours_ns, best_ns(ours, n, 1) / 50)
    tracer.close()
    provider.shutdown()
    return {"botrace_ns": ours_ns, "otel_ns": theirs_ns, "speedup": theirs_ns / ours_ns}


def _fifty_span_trace(tracer: Tracer):
    root = tracer.start_trace("message", {"umo": "bench:FriendMessage:s1", "user_id": "u1",
                                          "outline": "what is the weather in Paris"})
    with root:
        for stage in range(9):
            with span_context(f"stage{stage}", "pipeline_stage") as st:
                st.set_meta(stage=f"stage{stage}")
                for i in range(4):
                    with span_context(f"child{i}", "tool_call") as c:
                        c.set_input(city="Paris", n=i)
                        c.set_output(temp=21.5)
                        c.set_meta(model="m", input_tokens=100, output_tokens=20)
        # 1 root + 9 + 36 = 46; 4 more to reach 50
        for i in range(4):
            with span_context(f"extra{i}", "custom"):
                pass
    return root


def bench_finish(repeat: int) -> dict[str, float]:
    """Time of root.end() (the caller's share of finishing a 50-span trace)."""
    tracer = Tracer({"trace_enable": True, "trace_queue_size": 10_000_000}, load_entrypoints=False)
    tracer._dispatcher.start = lambda: None  # measure the hand-off alone; dispatch is timed below
    end_times = []
    traces = []
    for _ in range(repeat * 200):
        root = tracer.start_trace("message")
        token = current_span_var.set(root)
        for stage in range(49):
            with span_context(f"s{stage}", "pipeline_stage") as s:
                s.set_meta(stage=stage)
        current_span_var.reset(token)
        start = time.perf_counter_ns()
        root.end()
        end_times.append(time.perf_counter_ns() - start)
        traces.append(root.trace)
    assert len(traces[0].spans) == 50
    # Off the caller's path: what the dispatcher thread spends per trace with the
    # log exporter's serialisation (to_dict of every span and the summary).
    from botrace.exporters.logfile import LogExporter

    sink = LogExporter("/dev/null", summary=False)
    tracer.register(sink)
    start = time.perf_counter_ns()
    tracer._dispatcher.drain()
    dispatch_per_trace = (time.perf_counter_ns() - start) / len(traces)
    return {"finish_p50_ns": statistics.median(end_times),
            "finish_min_ns": min(end_times),
            "dispatch_per_trace_ns": dispatch_per_trace}


def bench_memory() -> dict[str, float]:
    tracer = Tracer({"trace_enable": True, "trace_queue_size": 10_000_000}, load_entrypoints=False)
    tracer._dispatcher.start = lambda: None
    _fifty_span_trace(tracer)  # warm caches (ids, interned names)
    tracer._dispatcher.queue.clear()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    root = _fifty_span_trace(tracer)
    tracer._dispatcher.queue.clear()  # the events only reference the trace
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert len(root.trace.spans) == 50, len(root.trace.spans)
    as_dicts = [s.to_dict() for s in root.trace.spans]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    copies = [{**d, "input": dict(d["input"]), "meta": dict(d["meta"])} for d in as_dicts]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    dict_size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    del copies
    return {"trace_bytes": size, "plain_dicts_bytes": dict_size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7
    print(f"python {sys.version.split()[0]}, best of {repeat}")

    off = bench_off(repeat)
    print(f"1. tracing off, @span_record trivial fn: bare {off['bare_ns']:.0f} ns, "
          f"wrapped {off['traced_ns']:.0f} ns -> overhead {off['overhead_ns']:.0f} ns "
          f"({off['traced_ns'] / off['bare_ns']:.2f}x the bare call)   [target <= 60 ns]")

    on = bench_on(repeat)
    print(f"2. tracing on, per span (child + 2 attrs + finish, in 50-span messages): botrace {on['botrace_ns']:.0f} ns, "
          f"OpenTelemetry SDK {on['otel_ns']:.0f} ns -> botrace is {on['speedup']:.1f}x faster   [target >= 10x]")

    fin = bench_finish(repeat)
    print(f"3. finishing a 50-span trace on the caller's path: p50 {fin['finish_p50_ns'] / 1000:.1f} us "
          f"(min {fin['finish_min_ns'] / 1000:.1f} us)   [target <= 30 us]; "
          f"dispatcher thread then spends {fin['dispatch_per_trace_ns'] / 1000:.0f} us/trace serialising "
          f"({fin['dispatch_per_trace_ns'] / max(fin['finish_p50_ns'], 1):.0f}x the caller's share)")

    mem = bench_memory()
    print(f"4. a finished 50-span trace in memory: {mem['trace_bytes'] / 1024:.1f} KB "
          f"(its spans as plain dicts: {mem['plain_dicts_bytes'] / 1024:.1f} KB, "
          f"ratio {mem['trace_bytes'] / mem['plain_dicts_bytes']:.2f})   [target <= 60 KB]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
