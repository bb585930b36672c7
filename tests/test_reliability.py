"""Hardening (issue 17): what the store and the dispatcher do not deliver, they count.

Each test here failed on the code before the hardening (see docs/RELIABILITY.md):
a killed writer process stopped the store for good and later records vanished
uncounted; a full disk piled records up in memory with nothing counted until close; a
slow sink made shutdown unbounded; spans that outlived their message were left out of
the stored totals; a span the store could not encode left its trace saying
``dropped_spans 0``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from storeutil import count, feed_all, locked_by_another_process, rows, wait_for

from botrace import Tracer, hookimpl
from botrace.store import TraceStore
from botrace.store.synthetic import feed, synthetic_traces
from botrace.testing import InMemorySink


def kill_writer(store: TraceStore) -> None:
    os.kill(store.writer_pid, signal.SIGKILL)


def assert_whole(db: Path, n: int, spans: int = 20) -> None:
    """``n`` finished traces, each with its ``spans`` spans stored once and its totals
    those of its stored spans."""
    assert count(db, "SELECT count(*) FROM traces WHERE status != 'running'") == n
    assert count(db, f"SELECT count(*) FROM traces WHERE span_count = {spans}") == n
    assert count(db, "SELECT count(*) FROM spans") == n * spans
    assert count(db, "SELECT count(*) FROM traces t WHERE input_tokens + output_tokens != "
                     "(SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM spans s "
                     " WHERE s.trace_id = t.trace_id)") == 0
    assert count(db, "SELECT sum(n) FROM stats_rollup WHERE grain = 60000000000") == n * spans


# ---------------------------------------------------------------------------- 1. writer killed

async def test_a_killed_writer_process_is_restarted_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    store = TraceStore(db, flush_interval=0.05)
    store.retention_days = 0  # (the synthetic traces are from 2023)
    await store.open()
    traces = list(synthetic_traces(250, seed=1))
    feed_all(store, traces[:50])
    assert await store.flush(timeout=10)
    feed_all(store, traces[50:150])  # some written, some on their way
    kill_writer(store)
    await wait_for(lambda: store.health()["state"] == "degraded")  # noticed at once
    reason = store.health()["reason"]
    feed_all(store, traces[150:])  # the messages after the kill
    assert await store.flush(timeout=30)
    health = store.health()
    assert health["dropped"] == 0
    assert "SIGKILL" in reason
    assert health["writer_restarts"] == 1 and health["writer"] == "process"
    assert health["state"] == "degraded" and "restarted" in health["reason"]  # for a while
    await store.close()
    assert_whole(db, 250)



async def test_batches_a_killed_writer_had_not_written_go_to_the_next_one(tmp_path: Path) -> None:
    db = tmp_path / "inflight.db"
    store = TraceStore(db, busy_timeout_ms=50, max_backoff=0.1, flush_interval=0.0)
    store.retention_days = 0
    await store.open()
    with locked_by_another_process(db):
        feed_all(store, synthetic_traces(30, seed=2))
        await wait_for(lambda: store.write_errors > 0)  # the writer holds them, retrying
        kill_writer(store)
        await wait_for(lambda: store.health()["writer_restarts"] == 1)
    assert await store.flush(timeout=30)
    assert store.dropped == 0
    await store.close()
    assert_whole(db, 30)


async def test_a_batch_written_but_not_confirmed_by_a_dead_writer_is_not_written_twice(
        tmp_path: Path) -> None:
    """The writer commits, then confirms; one that dies in between leaves batches
    written and unconfirmed. The supervisor finds them in the database."""
    db = tmp_path / "unconfirmed.db"
    store = TraceStore(db, writer="thread", flush_interval=0.0)
    store.retention_days = 0
    await store.open()
    feeder = store._feeder
    on_ack = feeder.on_ack
    feeder.on_ack = lambda *a: None  # confirmations lost on the way
    feed_all(store, synthetic_traces(10, seed=3))
    await wait_for(lambda: store._supervisor.stats.get("written", 0) >= 10 * 21)
    assert len(feeder.unacked) > 0
    feeder.on_ack = on_ack
    store._supervisor.link.send(("batch",))  # a message the writer thread dies of
    await wait_for(lambda: store.health()["writer_restarts"] == 1)
    assert "found written" in store.health()["last_error"]
    assert await store.flush(timeout=20)
    await store.close()
    assert_whole(db, 10)


async def test_a_writer_process_that_keeps_dying_is_replaced_by_a_thread(tmp_path: Path) -> None:
    db = tmp_path / "fallback.db"
    store = TraceStore(db, flush_interval=0.05, max_writer_deaths=2)
    store.retention_days = 0
    await store.open()
    traces = list(synthetic_traces(60, seed=4))
    for i in range(2):
        feed_all(store, traces[i * 20:(i + 1) * 20])
        kill_writer(store)
        await wait_for(lambda i=i: store.health()["writer_restarts"] == i + 1)
    assert store.health()["writer"] == "thread" and store.writer_pid is None
    feed_all(store, traces[40:])
    assert await store.flush(timeout=30)
    assert store.dropped == 0
    await store.close()
    assert_whole(db, 60)


async def test_a_store_whose_writer_keeps_dying_stops_and_counts_every_later_record(
        tmp_path: Path) -> None:
    db = tmp_path / "stopped.db"
    store = TraceStore(db, writer="thread", max_writer_deaths=2)
    store.retention_days = 0
    await store.open()
    feed_all(store, synthetic_traces(5, seed=5))
    assert await store.flush(timeout=10)
    store._supervisor.link.send(("batch",))  # a message the writer thread dies of
    await wait_for(lambda: store.health()["writer_restarts"] == 1)
    store._supervisor.link.send(("batch",))  # and again: the second death in a row
    await wait_for(lambda: store._supervisor.stopped is not None)
    health = store.health()
    assert health["state"] == "degraded" and health["reason"].startswith("store stopped")
    before = store.dropped
    feed_all(store, synthetic_traces(3, spans=20, seed=6))
    assert store.dropped == before + 3 * 22  # nothing vanishes uncounted
    assert not await store.flush(timeout=1)
    await asyncio.wait_for(store.close(), 20)
    assert count(db, "SELECT count(*) FROM traces") == 5


# ---------------------------------------------------------------------------- 2. full disk

async def test_while_writes_fail_the_backlog_in_memory_is_bounded_and_the_rest_spills(
        tmp_path: Path) -> None:
    """A fault that stops every write (here: SQLite's page limit) must not pile records
    up in memory for as long as it lasts: past ``fault_queue_max`` they go to the spill
    file (on another disk than a full one, nothing is lost)."""
    db = tmp_path / "fault.db"
    store = TraceStore(db, fault_queue_max=2_000, max_backoff=0.1, flush_interval=0.0)
    store.retention_days = 0
    await store.open()
    feed_all(store, synthetic_traces(5, seed=1))
    assert await store.flush(timeout=10)
    ((pages,),) = await store._writer_exec("PRAGMA page_count")
    await store._writer_exec(f"PRAGMA max_page_count = {pages + 2}")
    traces = list(synthetic_traces(600, seed=2))
    at_fault = deepest = None
    for i in range(0, 600, 10):  # a steady stream, as messages come
        await asyncio.to_thread(feed_all, store, traces[i:i + 10])
        health = store.health()
        if at_fault is None and health["write_errors"]:  # the writer's first failure
            at_fault = deepest = health["queue_depth"]
        elif at_fault is not None:
            deepest = max(deepest, health["queue_depth"])
        await asyncio.sleep(0.03)
    assert at_fault is not None and i > 0, "the fault was not seen before the stream ended"
    # from the moment the fault is known, what waits in memory does not grow past the
    # bound (what was already on its way to the writer aside)
    assert deepest <= max(at_fault, 2_000 * 1.25) + 220, (at_fault, deepest)
    health = store.health()
    assert health["spilled"] > 5_000 and health["dropped"] == 0
    assert health["state"] == "degraded" and "full" in health["reason"], health
    await store._writer_exec("PRAGMA max_page_count = 1073741823")  # space is back
    assert await store.flush(timeout=30)
    assert store.health()["dropped"] == 0
    await store.close()
    assert_whole(db, 605)


@contextmanager
def small_filesystem(path: Path, size: str):
    """A tmpfs of ``size`` at ``path`` (root only); ``grow(size)`` makes it bigger."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")

    def grow(new_size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={new_size}", str(path)], check=True)

    try:
        yield grow
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="mounting a small filesystem needs root")
async def test_a_full_disk_bounds_the_backlog_and_counts_losses_as_they_happen(
        tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk", "2m") as grow:
        db = tmp_path / "disk" / "full.db"
        store = TraceStore(db, max_backoff=0.2, flush_interval=0.05)
        store.retention_days = 0
        await store.open()
        traces = list(synthetic_traces(3_000, seed=7))
        at_fault = deepest = dropped_while_full = None
        for i in range(0, 3_000, 50):  # ~1,000 span records every 50 ms
            await asyncio.to_thread(feed_all, store, traces[i:i + 50])
            health = store.health()
            if at_fault is None and health["write_errors"]:  # the writer's first failure
                at_fault = deepest = health["queue_depth"]
            elif at_fault is not None:
                deepest = max(deepest, health["queue_depth"])
                if health["dropped"] and dropped_while_full is None:
                    dropped_while_full = health["dropped"]
            await asyncio.sleep(0.05)
        health = store.health()
        # while the disk is full: losses counted as they happen, and go on being counted
        assert at_fault is not None and dropped_while_full, health
        assert health["dropped"] > dropped_while_full
        # what waits in memory does not grow past the bound (what was already on its way
        # to the writer aside)
        assert deepest <= max(at_fault, 10_000 * 1.25) + 1_100, (at_fault, deepest)
        assert health["state"] == "degraded" and "full" in health["reason"], health
        grow("256m")  # space returns
        assert await store.flush(timeout=60)
        more = list(synthetic_traces(10, seed=8, start_ns=2_000_000_000_000_000_000))
        feed_all(store, more)
        assert await store.flush(timeout=30)
        dropped = store.dropped
        await store.close()
        # everything after space returned is there; whatever is missing is counted
        assert count(db, "SELECT count(*) FROM traces WHERE start_ns >= "
                         "2000000000000000000 AND span_count = 20") == 10
        stored = count(db, "SELECT count(*) FROM spans")
        assert stored + dropped >= 3_010 * 20
        assert stored > 0


# ---------------------------------------------------------------------------- 3. slow sink

class SlowSink:
    """Two seconds a trace (by default)."""

    def __init__(self, seconds: float = 2.0) -> None:
        self.seconds = seconds
        self.received = 0

    @hookimpl
    def botrace_trace_finished(self, trace) -> None:
        time.sleep(self.seconds)
        self.received += 1


def ten_messages(tracer: Tracer, n: int = 10) -> None:
    for i in range(n):
        with tracer.start_trace("message", {"user_id": f"u{i}"}):
            with tracer.span("Process", "pipeline_stage"):
                pass


async def test_aclose_returns_within_its_timeout_and_counts_what_a_slow_sink_missed() -> None:
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    slow, fast = SlowSink(), InMemorySink()
    tracer.register(slow, name="slow")
    tracer.register(fast, name="fast")
    await tracer.start()
    ten_messages(tracer)
    started = time.monotonic()
    await tracer.aclose(timeout=3.0)
    assert time.monotonic() - started < 3.0 + 0.5
    # the call the slow sink is in finishes; everything after it is counted, per sink
    def undelivered(name: str) -> int:
        return tracer.health()["sink_undelivered"].get(name, 0)

    await wait_for(lambda: slow.received + undelivered("slow") == 10, timeout=5)
    assert undelivered("slow") >= 8
    # the other sink: each of its events handed over or counted (trace started and
    # finished, two span starts and two span ends a message)
    assert len(fast.events) + undelivered("fast") == 10 * 6


def test_a_sink_that_proved_slow_no_longer_holds_the_others_back() -> None:
    """After its first slow batch a slow sink gets a thread of its own: the other sinks
    (the store among them) keep receiving at the dispatcher's pace."""
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    slow, fast = SlowSink(0.6), InMemorySink()
    tracer.register(slow, name="slow")
    tracer.register(fast, name="fast")
    ten_messages(tracer, 1)
    deadline = time.monotonic() + 20
    while "slow" not in tracer.health()["sink_slow_calls"] or not fast.traces:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    ten_messages(tracer)
    while len(fast.traces) < 11:
        assert time.monotonic() - started < 1.0, "the fast sink waited for the slow one"
        time.sleep(0.01)
    assert slow.received < 11
    assert tracer.health()["sink_lanes"]["slow"] > 0
    tracer.close(timeout=1.0)
    undelivered = tracer.health()["sink_undelivered"]
    deadline = time.monotonic() + 5
    while slow.received + tracer.health()["sink_undelivered"].get("slow", 0) < 11:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "fast" not in undelivered


class StuckSink:
    """Holds the thread that calls it until released; records what it was given."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.seen: list[str] = []

    @hookimpl
    def botrace_trace_finished(self, trace) -> None:
        self.entered.set()
        self.release.wait(30)
        self.seen.append(trace.trace_id)


def test_a_sink_stuck_in_one_call_is_left_its_thread_and_the_others_go_on() -> None:
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    stuck, fast = StuckSink(), InMemorySink()
    tracer.register(stuck, name="stuck")
    tracer.register(fast, name="fast")
    ten_messages(tracer, 1)
    assert stuck.entered.wait(5)
    started = time.monotonic()
    ten_messages(tracer)
    while len(fast.traces) < 11:  # the watchdog hands the others to a new thread
        assert time.monotonic() - started < 2.0, "the other sinks waited for the stuck one"
        time.sleep(0.01)
    assert "stuck" in tracer.health()["sink_slow_calls"] and not stuck.seen
    stuck.release.set()
    assert tracer.flush(timeout=10)
    # the stuck sink got everything, in order, on its own thread
    assert stuck.seen == [t.trace_id for t in fast.traces]
    tracer.close(timeout=2.0)
    assert tracer.health()["sink_undelivered"] == {}


def test_close_is_bounded_too() -> None:
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    slow = SlowSink()
    tracer.register(slow, name="slow")
    ten_messages(tracer)
    started = time.monotonic()
    tracer.close(timeout=2.0)
    assert time.monotonic() - started < 2.0 + 0.5
    deadline = time.monotonic() + 5  # (the call the sink is in ends, the rest is counted)
    while slow.received + tracer.health()["sink_undelivered"].get("slow", 0) < 10:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert tracer.health()["sink_undelivered"]["slow"] >= 8


# ---------------------------------------------------------------------------- 4. late spans

@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_spans_that_outlive_their_message_are_in_the_stored_totals(
        tmp_path: Path, writer: str) -> None:
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    store = TraceStore(tmp_path / "late.db", tracer.settings, writer=writer)
    tracer.register(store, name="store")
    await tracer.start()
    release = asyncio.Event()

    async def outliving_task() -> None:  # started by the message, ends after it
        await release.wait()
        for i in range(3):
            with tracer.span(f"summarise {i}", "llm_call") as llm:
                llm.set_meta(model="gpt-4o-mini")
                llm.set_usage(input_tokens=100, output_tokens=10)

    with tracer.start_trace("message", {"user_id": "u1"}) as root:
        with tracer.span("Process", "pipeline_stage"):
            task = asyncio.create_task(outliving_task())
    assert await tracer.aflush() and await store.flush(timeout=10)  # its end is written
    release.set()
    await task
    assert await tracer.aflush() and await store.flush(timeout=10)
    (summary,) = (await store.list_traces())["traces"]
    in_memory = root.trace.to_dict()
    assert (summary["span_count"], summary["llm_calls"], summary["input_tokens"]) == (5, 3, 300)
    for key in ("span_count", "llm_calls", "tool_calls", "input_tokens", "output_tokens",
                "cached_tokens", "plugins", "status", "dropped_spans"):
        assert summary[key] == in_memory[key], key
    assert summary["models"] == ["gpt-4o-mini"]
    assert (await store.list_traces({"model": "gpt-4o-mini"}))["total"] == 1  # tagged too
    assert store.health()["late_spans"] == 3
    await tracer.aclose()


async def test_late_spans_are_counted_on_the_trace_where_the_schema_has_the_column(
        tmp_path: Path) -> None:
    """(A ``traces.late_spans`` column is for a later schema: the writer fills it
    wherever it exists.)"""
    db = tmp_path / "column.db"
    async with TraceStore(db):
        pass
    rows(db, "ALTER TABLE traces ADD COLUMN late_spans INTEGER NOT NULL DEFAULT 0")
    (trace,) = synthetic_traces(1, spans=6, seed=9)
    early, late = trace.spans[:4], trace.spans[4:]
    store = TraceStore(db, flush_interval=0.0)
    store.retention_days = 0
    async with store:
        store.botrace_trace_started(trace=trace)
        for span in early:
            store.botrace_span_finished(span=span)
        store.botrace_trace_finished(trace=trace)
        assert await store.flush(timeout=10)
        for span in late:
            store.botrace_span_finished(span=span)
        assert await store.flush(timeout=10)
    assert rows(db, "SELECT span_count, late_spans FROM traces") == [(6, 2)]


async def test_a_trace_that_began_before_the_store_opened_gets_its_totals(
        tmp_path: Path) -> None:
    """(As a trace that began before a restarted writer: the store saw its spans and
    its end, not its start.)"""
    db = tmp_path / "before.db"
    (trace,) = synthetic_traces(1, spans=20, seed=10)
    store = TraceStore(db, flush_interval=0.0)
    store.retention_days = 0
    async with store:
        for span in sorted(trace.spans, key=lambda s: s.end_ns):
            store.botrace_span_finished(span=span)
        store.botrace_trace_finished(trace=trace)
        assert await store.flush(timeout=10)
    assert_whole(db, 1)


# ---------------------------------------------------------------------------- 5. encoding

class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no text for this")


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_a_span_the_store_cannot_encode_is_counted_on_its_trace_and_in_health(
        tmp_path: Path, writer: str) -> None:
    db = tmp_path / "odd.db"
    (trace,) = synthetic_traces(1, spans=5, seed=11)
    trace.spans[2].meta = {"odd": _Unprintable()}
    store = TraceStore(db, flush_interval=0.0, writer=writer)
    store.retention_days = 0
    async with store:
        feed(store, trace)
        assert await store.flush(timeout=10)
        health = store.health()
        (summary,) = (await store.list_traces())["traces"]
    assert health["dropped"] == 1 and "could not be read or encoded" in health["last_error"]
    assert summary["dropped_spans"] == 1 and summary["span_count"] == 4
    assert count(db, "SELECT count(*) FROM spans") == 4


async def test_spans_dropped_for_want_of_room_are_counted_on_their_trace(tmp_path: Path) -> None:
    db = tmp_path / "room.db"
    store = TraceStore(db, queue_max=40, spill_max_mb=0, block_timeout=0.0, flush_interval=30)
    store.retention_days = 0
    async with store:
        (trace,) = synthetic_traces(1, spans=100, seed=12)
        feed(store, trace)  # the queue holds 40 records: the start, plugins, spans
        dropped = store.health()["dropped"]
        assert dropped > 50
        assert await store.flush(timeout=10)
        (summary,) = (await store.list_traces())["traces"]
    assert summary["dropped_spans"] == dropped
    assert summary["span_count"] + summary["dropped_spans"] == 100


def test_every_thread_the_store_started_ends_with_it(tmp_path: Path) -> None:
    """(Restarts start threads: none may outlive the store.)"""
    before = {t.ident for t in threading.enumerate()}

    async def run() -> None:
        store = TraceStore(tmp_path / "threads.db", flush_interval=0.05)
        store.retention_days = 0
        await store.open()
        feed_all(store, synthetic_traces(5, seed=13))
        kill_writer(store)
        await wait_for(lambda: store.health()["writer_restarts"] == 1)
        assert await store.flush(timeout=20)
        await store.close()

    asyncio.run(run())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [t for t in threading.enumerate()
                if t.ident not in before and t.name.startswith("botrace")]
        if not left:
            return
        time.sleep(0.05)
    raise AssertionError(f"threads left: {[t.name for t in left]}")
