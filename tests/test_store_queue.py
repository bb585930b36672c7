"""What the store's span hook queues: the finished span itself, folded as its record is."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from botrace import PluginRef, Tracer
from botrace.pricing import PriceTable
from botrace.store import TraceStore
from botrace.store.chunks import decode
from botrace.store.folding import SpanFolder, span_record
from botrace.store.jsontext import encode_value

PRICES = {"gpt-4o": {"input": 2.5, "cached_input": 1.25, "output": 10.0}}


def finished_spans() -> list:
    """Spans of a real trace with every field a record carries: plugin, values, usage,
    an event, an error, truncation; in the order they finished."""
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    weather = PluginRef("weather", "Weather", "third_party", "1.0")
    ended = []
    with tracer.start_trace("message", {"user_id": "u1"}) as root:
        with tracer.span("Process", "pipeline_stage") as stage:
            with tracer.span("Weather.on_message", "plugin_call", plugin=weather) as handler:
                with tracer.span("chat", "llm_call") as llm:
                    llm.set_meta(model="gpt-4o")
                    llm.set_usage(input_tokens=1200, output_tokens=80, cached_tokens=200)
                    llm.set_output(text="Sunny")
                ended.append(llm)
                with tracer.span("get_weather", "tool_call") as tool:
                    tool.set_meta(tool_name="get_weather")
                    tool.set_input(city="Paris", note="x" * 100_000)  # cut: truncated
                    tool.add_event("cache_miss", key="Paris")
                ended.append(tool)
                try:
                    with tracer.span("parse", "custom") as bad:
                        raise ValueError("no forecast")
                except ValueError:
                    pass
                ended.append(bad)
            ended.append(handler)
        ended.append(stage)
    ended.append(root)
    assert tool.truncated and bad.status == "error" and llm.plugin is weather
    return ended


def test_a_queued_span_folds_exactly_as_its_record() -> None:
    spans = finished_spans()
    from_spans = SpanFolder(PriceTable(PRICES), encode_value).fold(list(spans))
    from_records = SpanFolder(PriceTable(PRICES), encode_value).fold([span_record(s) for s in spans])
    assert from_spans == from_records
    others, chunks, parts, minutes, lost, error = from_spans
    assert others == [] and lost == 0 and error is None
    ((tstart, tid, text, n),) = chunks  # one trace: one chunk of its six spans
    assert (tstart, tid, n) == (spans[0].trace.start_ns, spans[0].trace.trace_id, 6)
    entries = decode(text)
    assert [e[0] for e in entries] == [s.span_id for s in spans]
    assert [e[4] for e in entries[:4]] == ["weather"] * 4  # attributed, by name
    (part,) = parts.values()
    assert part[:4] == [6, 1, 1, 1]  # spans, LLM calls, tool calls, errors
    assert part[4:7] == [1200, 80, 200]


def test_the_span_hook_allocates_nothing_the_garbage_collector_tracks(tmp_path: Path) -> None:
    """A tuple per span drove the host's collector (~100k young objects a second at
    5,000 traces/s); the hook now appends the span itself, which already exists."""
    spans = finished_spans()
    store = TraceStore(tmp_path / "unused.db")  # not opened: its hooks only gather
    store._accepting = True
    store.botrace_span_finished(span=spans[0])  # the first append wakes the feeder
    calls = 5_000
    gc.disable()
    try:
        before = gc.get_count()[0]
        for i in range(calls):
            store.botrace_span_finished(span=spans[i % len(spans)])
        grown = gc.get_count()[0] - before
    finally:
        gc.enable()
    # (ahead of the spans, the plugin's description, queued once)
    assert store._buf[0] == ("P", "weather", "Weather", "third_party", "1.0")
    assert len(store._buf) == calls + 2 and store.accepted == calls + 2
    assert grown < 10, f"{grown} GC-tracked objects for {calls} spans"


def test_a_spilled_span_is_written_as_its_record(tmp_path: Path) -> None:
    """Spill files hold records (the writer process folds them): a span overflowing the
    queue is turned into its record before it is pickled."""
    from botrace.store.spill import read_spill

    spans = finished_spans()
    store = TraceStore(tmp_path / "s.db", queue_max=3, block_timeout=0.0)
    store._accepting = True
    for span in spans:
        store.botrace_span_finished(span=span)
    assert store.spilled == len(spans) - 2 and store.dropped == 0
    store._intake.spill_file.close()
    assert read_spill(store._spill_path) == [span_record(s) for s in spans[2:]]
    assert store._buf == [("P", "weather", "Weather", "third_party", "1.0"), *spans[:2]]


async def test_an_object_that_is_not_a_span_is_counted_and_the_store_goes_on(
        tmp_path: Path) -> None:
    """The hook no longer reads every field, so a host's odd object reaches the feeder:
    it is dropped and counted there, and the spans around it are written."""
    import sqlite3
    from types import SimpleNamespace

    from botrace.store.synthetic import feed, synthetic_traces

    traces = list(synthetic_traces(3, spans=4, seed=9))
    async with TraceStore(tmp_path / "odd.db", writer="thread") as store:
        feed(store, traces[0])
        store.botrace_span_finished(span=SimpleNamespace(plugin=None, name="not a span"))
        for trace in traces[1:]:
            feed(store, trace)
        assert await store.flush(timeout=30)
        health = store.health()
    assert health["dropped"] == 1 and "could not be read" in health["last_error"]
    assert "AttributeError" in health["last_error"]
    stored = sqlite3.connect(tmp_path / "odd.db").execute(
        "SELECT count(*) FROM spans").fetchone()[0]
    assert stored == 12


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_a_failing_feeder_stops_the_store_without_hanging_the_host(
        tmp_path: Path, writer: str) -> None:
    """A bug in the feeder must not leave flush() and close() waiting forever."""
    import asyncio
    import logging

    from botrace.store.synthetic import feed, synthetic_traces

    store = TraceStore(tmp_path / "f.db", writer=writer)
    await store.open()

    def broken(batch):
        raise RuntimeError("a bug")

    store._folder.fold = broken
    logging.getLogger("botrace.store").disabled = True  # (the traceback is expected)
    try:
        for trace in synthetic_traces(2, spans=3, seed=1):
            feed(store, trace)
        assert await store.flush(timeout=20) is False
        health = store.health()
        assert health["state"] == "degraded"
        assert "feeder thread failed: RuntimeError: a bug" in health["last_error"]
        assert health["dropped"] >= 8  # what was queued (2 traces: 2 starts, 6 spans, 2 ends)
        await asyncio.wait_for(store.close(), 20)
    finally:
        logging.getLogger("botrace.store").disabled = False
    assert store.health()["state"] == "closed"


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no text for this")


def test_a_value_no_encoder_can_write_drops_its_span_only() -> None:
    """A trace's spans are encoded together; a value that cannot be written at all (a
    duck-typed host's object whose repr raises) costs its own span, not its chunk."""
    from botrace.store.synthetic import synthetic_traces

    (trace,) = synthetic_traces(1, spans=5, seed=4)
    trace.spans[2].meta = {"odd": _Unprintable()}
    others, chunks, parts, minutes, lost, error = SpanFolder(PriceTable(PRICES), encode_value).fold(
        list(trace.spans))
    assert lost == 1 and isinstance(error, RuntimeError)
    ((tstart, tid, text, n),) = chunks
    assert n == 4 and [e[0] for e in decode(text)] == [
        s.span_id for i, s in enumerate(trace.spans) if i != 2]


def test_a_span_running_in_one_batch_and_finished_in_the_next_of_one_transaction(
        tmp_path: Path) -> None:
    """A busy writer puts several batches in one transaction: a span's "running" entry
    (batch 1) must land before its finished one (batch 2), so the finished one is the
    latest version the tree and the ``spans`` view read."""
    import sqlite3

    from botrace.store.chunks import latest_spans
    from botrace.store.synthetic import synthetic_traces
    from botrace.store.writer import Writer, prepare_database

    (trace,) = synthetic_traces(1, spans=3, seed=5)
    root, *children = sorted(trace.spans, key=lambda s: s.start_ns)
    folder = SpanFolder(PriceTable(PRICES), encode_value)
    first = folder.fold([
        ("T", trace.trace_id, trace.start_ns, trace.name, trace.attributes),
        *children,
        ("R", trace.trace_id, trace.start_ns, root.span_id, None, root.name, root.span_type,
         None, root.start_ns)])
    second = folder.fold([
        root, ("F", trace.trace_id, trace.start_ns, trace.name, trace.attributes, "ok",
               trace.end_ns, 0, False)])
    db = tmp_path / "coalesced.db"
    prepare_database(db)
    writer = Writer({"path": str(db)}, lambda msg: None)
    writer.connect()
    assert writer.write(writer.process([first, second]))
    conn = sqlite3.connect(db)
    texts = [r[0] for r in conn.execute("SELECT spans FROM span_chunks ORDER BY rowid")]
    assert len(texts) == 2  # the children with the root running, then the root finished
    spans = {e[0]: e for e in latest_spans(texts)}
    assert spans[root.span_id][8] == root.status != "running"
    assert conn.execute("SELECT status FROM spans WHERE span_id = ?",
                        (root.span_id,)).fetchall() == [(root.status,)]
    assert conn.execute("SELECT status, span_count FROM traces").fetchall() == [("ok", 3)]
