"""Sinks are isolated from the host: raising, blocking, full queues."""

from __future__ import annotations

import logging
import threading
import time

from botrace import Tracer, hookimpl, span_context, span_record
from botrace.testing import InMemorySink


class RaisingSink:
    @hookimpl
    def botrace_span_finished(self, span):
        raise OSError("disk full")


class BlockingSink:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    @hookimpl
    def botrace_span_finished(self, span):
        self.entered.set()
        self.release.wait(10)


@span_record("work")
def work(x):
    return x * 2


def test_a_raising_sink_never_reaches_the_traced_code_and_others_still_receive(caplog):
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    memory = InMemorySink()
    tracer.register(RaisingSink(), name="raising")
    tracer.register(memory, name="memory")
    with caplog.at_level(logging.WARNING, logger="botrace"):
        for _ in range(3):
            with tracer.start_trace("message"):
                assert work(2) == 4
        tracer.flush()
    assert len(memory.traces) == 3
    health = tracer.health()
    assert health["sink_errors"]["raising"] == 6
    # rate-limited: the fault is logged once, not once per event
    assert caplog.text.count("sink raising failed") == 1
    tracer.close()


def test_a_blocking_sink_does_not_delay_the_traced_function():
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    blocking = BlockingSink()
    tracer.register(blocking, name="blocking")
    results = []
    with tracer.start_trace("first"):
        results.append(work(1))
    assert blocking.entered.wait(5)  # the dispatcher is now stuck in the sink
    # The host keeps tracing and answering while the sink is stuck.
    for i in range(100):
        with tracer.start_trace("message"):
            results.append(work(i))
    assert results == [2] + [i * 2 for i in range(100)]
    assert tracer.health()["queue_depth"] > 0
    blocking.release.set()
    assert tracer.flush(timeout=10)
    assert tracer.health()["queue_depth"] == 0
    tracer.close()


def test_a_full_queue_drops_new_spans_and_counts_them():
    tracer = Tracer({"trace_enable": True, "trace_queue_size": 16}, load_entrypoints=False)
    blocking = BlockingSink()
    tracer.register(blocking, name="blocking")
    with tracer.start_trace("first"):
        pass
    assert blocking.entered.wait(5)
    with tracer.start_trace("message") as root:
        for _ in range(50):
            with span_context("c"):
                assert work(1) == 2
    assert root.trace.dropped_spans > 0
    assert tracer.health()["dropped_events"] > 0
    blocking.release.set()
    tracer.close()


def test_sink_registered_after_start_receives_events():
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    with tracer.start_trace("before"):
        pass
    tracer.flush()
    late = InMemorySink()
    tracer.pm.register(late)  # straight on the PluginManager
    with tracer.start_trace("after"):
        pass
    tracer.flush()
    assert [t.name for t in late.traces] == ["after"]
    tracer.close()


def test_events_arrive_in_order_per_trace(tracer, sink):
    with tracer.start_trace("message"), span_context("a"), span_context("b"):
        pass
    tracer.flush()
    kinds = [k for k, _ in sink.events]
    assert kinds[0] == "trace_started" and kinds[-1] == "trace_finished"
    assert kinds.count("span_started") == kinds.count("span_finished") == 3


def test_flush_waits_for_the_dispatcher_thread(tracer, sink):
    with tracer.start_trace("message"):
        pass
    start = time.monotonic()
    assert tracer.flush(timeout=5)
    assert len(sink.traces) == 1
    assert time.monotonic() - start < 5


class FinishOnly:
    def __init__(self) -> None:
        self.names: list[str] = []

    @hookimpl
    def botrace_span_finished(self, span):
        self.names.append(span.name)


class StartOnly:
    def __init__(self) -> None:
        self.names: list[str] = []

    @hookimpl
    def botrace_span_started(self, span):
        self.names.append(span.name)


def test_starts_are_derived_only_while_a_sink_listens_for_them():
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    finishes = FinishOnly()
    tracer.register(finishes, name="finishes")
    with tracer.start_trace("quiet"), span_context("a"):
        pass
    tracer.flush()
    assert finishes.names == ["a", "quiet"]
    assert not tracer._dispatcher._running  # nothing tracked for starts nobody wants

    starts = StartOnly()
    tracer.register(starts, name="starts")
    root = tracer.start_trace("listened")
    with root, span_context("b"):
        with span_context("c"):
            tracer.flush()
            # a running trace's open spans are announced while it runs
            assert starts.names == ["listened", "b", "c"]
    tracer.flush()
    assert starts.names == ["listened", "b", "c"]
    assert finishes.names == ["a", "quiet", "c", "b", "listened"]
    tracer.close()
