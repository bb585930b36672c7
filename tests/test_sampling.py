"""Tail-based sampling (botrace.sampling): which traces reach the sinks and the store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from botrace.config import Settings, SettingsError
from botrace.sampling import HeldTrace, SampleRule
from botrace.span import Trace
from botrace.store import TraceStore
from botrace.testing import InMemorySink
from botrace.tracer import Tracer


def make(**settings):
    tracer = Tracer({"trace_enable": True, **settings}, load_entrypoints=False)
    sink = InMemorySink()
    tracer.register(sink, name="mem")
    return tracer, sink


def message(tracer, user="u", session="s", *, error=False, slow_s=0.0, children=2):
    """One traced message; ``slow_s`` back-dates its start (no sleeping, no timing)."""
    with tracer.start_trace("message", {"user_id": user, "session_id": session,
                                        "umo": f"qq:{session}"}) as root:
        for i in range(children):
            with tracer.span(f"step{i}", "pipeline_stage") as step:
                if error and i == children - 1:
                    step.set_error("boom")
        if slow_s:
            root.start_ns -= int(slow_s * 1e9)
            root.trace.start_ns = root.start_ns
    return root


def seen(sink):
    return {t.trace_id for t in sink.traces}


def span_trace_ids(sink):
    return {s.trace_id for s in sink.finished_spans}


def test_the_rule_keeps_errors_slow_and_forced_traces_and_drops_the_rest_at_rate_0():
    tracer, sink = make(trace_sample_rate=0, trace_keep_slower_than_ms=1000,
                        trace_sample_keep_users=["vip"], trace_sample_keep_sessions=["room-7"])
    failed = message(tracer, error=True)
    slow = message(tracer, slow_s=2.0)
    vip = message(tracer, user="vip")
    room = message(tracer, session="room-7")
    plain = [message(tracer) for _ in range(20)]
    assert tracer.flush()
    kept = {failed.trace_id, slow.trace_id, vip.trace_id, room.trace_id}
    assert seen(sink) == kept
    # the sinks never saw a span, start or end, of a trace not kept
    assert span_trace_ids(sink) == kept
    dropped = {r.trace_id for r in plain}
    started = {e[1] for e in sink.events if e[0] == "trace_started"}
    assert started == kept and not dropped & started
    assert {r.trace.sample_reason for r in (failed, slow, vip, room)} == {"error", "slow", "forced"}
    assert (failed.trace.sample_reason, slow.trace.sample_reason) == ("error", "slow")
    assert all(r.trace.sampled is False for r in plain)
    sampling = tracer.health()["sampling"]
    assert sampling == {"rate": 0.0, "keep_slower_than_ms": 1000, "sampled_out": 20,
                        "kept_error": 1, "kept_slow": 1, "kept_forced": 2, "kept_rate": 0,
                        "dropped_full": 0, "pending": 0}
    tracer.close()


def test_an_exception_escaping_a_span_keeps_its_trace():
    tracer, sink = make(trace_sample_rate=0)
    with tracer.start_trace("message", {"user_id": "u"}) as root:
        try:
            with tracer.span("tool", "tool_call"):
                raise TimeoutError("the tool timed out")
        except TimeoutError:
            pass
    cancelled = tracer.start_trace("message", {"user_id": "u"})
    cancelled.start_child("step", "custom").end()
    cancelled.record_exception(__import__("asyncio").CancelledError())
    cancelled.end()
    assert tracer.flush()
    assert seen(sink) == {root.trace_id}  # a cancelled message is not an error
    assert root.trace.sample_reason == "error" and root.trace.failed
    tracer.close()


def test_the_rule_looks_at_the_spans_when_not_told_and_ids_not_hex_still_get_one_answer():
    tracer, _ = make()
    root = message(tracer)
    rule = SampleRule(0.0)
    assert rule.decide(root.trace) is None
    root.trace.spans[1].status = "error"
    assert rule.decide(root.trace) == "error"
    half = SampleRule(0.5)
    answers = {half.keeps_id(f"id-{i}") for i in range(64)}
    assert answers == {True, False} and half.keeps_id("id-7") == half.keeps_id("id-7")
    tracer.close()


def test_session_rule_matches_the_umo_too_and_users_are_case_sensitive():
    tracer, sink = make(trace_sample_rate=0, trace_sample_keep_sessions="qq:room-9",
                        trace_sample_keep_users="Alice")
    by_umo = message(tracer, session="room-9")
    other_case = message(tracer, user="alice")
    assert tracer.flush()
    assert seen(sink) == {by_umo.trace_id} and other_case.trace.sampled is False
    tracer.close()


def test_rate_1_keeps_every_trace_and_holds_nothing():
    tracer, sink = make()
    roots = [message(tracer) for _ in range(50)]
    assert tracer.flush()
    assert seen(sink) == {r.trace_id for r in roots}
    assert type(roots[0].trace) is Trace  # no held trace, no decision
    sampling = tracer.health()["sampling"]
    assert sampling["rate"] == 1.0 and sampling["sampled_out"] == 0 and sampling["kept_rate"] == 0
    tracer.close()


def test_the_share_kept_is_close_to_the_rate_and_reproducible_by_trace_id():
    tracer, sink = make(trace_sample_rate=0.25)
    roots = [message(tracer, children=0) for _ in range(4000)]
    assert tracer.flush()
    kept = seen(sink)
    # binomial: sd = sqrt(4000 * .25 * .75) = 27; 5 sd either side
    assert 1000 - 140 <= len(kept) <= 1000 + 140
    rule = SampleRule(0.25)
    assert {r.trace_id for r in roots if rule.keeps_id(r.trace_id)} == kept
    assert tracer.health()["sampling"]["kept_rate"] == len(kept)
    assert tracer.health()["sampling"]["sampled_out"] == 4000 - len(kept)
    # monotone in the rate: what 0.25 keeps, 0.5 keeps too
    assert all(SampleRule(0.5).keeps_id(t) for t in kept)
    tracer.close()


def test_a_kept_trace_reaches_the_sinks_in_order_with_its_span_starts():
    tracer, sink = make(trace_sample_rate=0, trace_sample_keep_users=["vip"])
    root = message(tracer, user="vip", children=2)
    assert tracer.flush()
    spans = sorted(root.trace.spans, key=lambda s: s._id)
    kinds = [e[0] for e in sink.events]
    assert kinds[0] == "trace_started" and kinds[-1] == "trace_finished"
    assert kinds.count("span_started") == 3 and kinds.count("span_finished") == 3
    # each span announced before it is finished; children finish before the root
    order = [e[1] for e in sink.events if e[0] == "span_finished"]
    assert order == [spans[1].span_id, spans[2].span_id, root.span_id]
    for span in spans:
        assert sink.events.index(("span_started", span.span_id)) < sink.events.index(
            ("span_finished", span.span_id))
    tracer.close()


def test_late_spans_follow_the_decision():
    tracer, sink = make(trace_sample_rate=0, trace_sample_keep_users=["vip"])
    kept = tracer.start_trace("message", {"user_id": "vip"})
    dropped = tracer.start_trace("message", {"user_id": "nobody"})
    kept_late = kept.start_child("background", "custom")
    dropped_late = dropped.start_child("background", "custom")
    kept.end()
    dropped.end()
    late_after = kept.start_child("after the root", "custom")
    kept_late.end()
    dropped_late.end()
    late_after.end()
    assert tracer.flush()
    assert seen(sink) == {kept.trace_id}
    names = {s.name for s in sink.finished_spans}
    assert names == {"message", "background", "after the root"}
    assert span_trace_ids(sink) == {kept.trace_id}
    tracer.close()


def test_a_trace_whose_root_has_not_ended_is_held_and_counted_pending():
    tracer, sink = make(trace_sample_rate=0.5)
    root = tracer.start_trace("message", {"user_id": "u"})
    with root:
        child = root.start_child("step", "custom")
        child.end()
        assert tracer.flush()
        assert sink.events == []  # nothing reaches a sink (the live view) before the decision
        assert isinstance(root.trace, HeldTrace) and root.trace.sampled is None
        assert tracer.health()["sampling"]["pending"] == 1
    assert tracer.health()["sampling"]["pending"] == 0
    tracer.close()


def test_switching_the_rate_live():
    tracer, sink = make()
    first = message(tracer)
    tracer.update_settings(trace_sample_rate=0)
    dropped = message(tracer)
    held = tracer.start_trace("message", {"user_id": "u"})  # held under rate 0 ...
    tracer.update_settings(trace_sample_rate=1.0)
    held.end()  # ... and ends under rate 1: kept
    after = message(tracer)
    assert tracer.flush()
    assert seen(sink) == {first.trace_id, held.trace_id, after.trace_id}
    assert dropped.trace.sampled is False and held.trace.sampled is True
    assert type(after.trace) is Trace
    tracer.close()


def test_a_kept_trace_that_finds_the_queue_full_is_dropped_and_counted():
    tracer, sink = make(trace_sample_rate=0, trace_sample_keep_users=["vip"], trace_queue_size=16)
    root = tracer.start_trace("message", {"user_id": "vip"})
    queue = tracer._dispatcher.queue
    tracer._dispatcher.stop(1)  # nothing drains the queue now
    queue.extend([(0, root.trace)] * 16)  # (never dispatched: the test clears it)
    root.end()
    queue.clear()
    sampling = tracer.health()["sampling"]
    assert sampling["dropped_full"] == 1 and sampling["kept_forced"] == 0
    assert tracer.health()["dropped_events"] == 1 and root.trace.sampled is False
    tracer.close()


async def test_the_store_holds_only_kept_traces(tmp_path: Path):
    db = tmp_path / "botrace.db"
    tracer = Tracer({"trace_enable": True, "trace_sample_rate": 0.0,
                     "trace_keep_slower_than_ms": 1000}, load_entrypoints=False)
    store = TraceStore(db, tracer.settings, flush_interval=0.01, writer="thread")
    tracer.register(store, name="store")
    await tracer.start()
    failed = message(tracer, error=True, children=3)
    slow = message(tracer, slow_s=5.0)
    for _ in range(10):
        message(tracer)
    await tracer.aflush()
    assert await store.flush()
    conn = sqlite3.connect(db)
    try:
        traces = dict(conn.execute("SELECT trace_id, span_count FROM traces").fetchall())
        span_traces = {r[0] for r in conn.execute("SELECT DISTINCT trace_id FROM spans")}
    finally:
        conn.close()
    assert traces == {failed.trace_id: 4, slow.trace_id: 3}
    assert span_traces == set(traces)
    await tracer.aclose()


@pytest.mark.parametrize(("key", "value"), [
    ("trace_sample_rate", 1.5), ("trace_sample_rate", -0.1), ("trace_sample_rate", "half"),
    ("trace_sample_rate", True), ("trace_sample_rate", float("nan")),
    ("trace_keep_slower_than_ms", -1), ("trace_keep_slower_than_ms", "soon"),
    ("trace_sample_keep_users", [1, 2]), ("trace_sample_keep_sessions", {"a": 1}),
])
def test_bad_sampling_settings_name_the_key(key, value):
    with pytest.raises(SettingsError, match=key):
        Settings.from_mapping({key: value})
    with pytest.raises(SettingsError, match=key):
        Settings().replace(**{key: value})


def test_sampling_settings_are_read_from_strings_and_shown():
    s = Settings.from_mapping({"trace_sample_rate": "0.1", "trace_keep_slower_than_ms": "2500",
                               "trace_sample_keep_users": " 42, Bob ,",
                               "trace_sample_keep_sessions": ["g1"]})
    assert (s.trace_sample_rate, s.trace_keep_slower_than_ms) == (0.1, 2500)
    assert s.trace_sample_keep_users == ("42", "Bob") and s.trace_sample_keep_sessions == ("g1",)
    shown = s.to_dict()
    assert shown["trace_sample_keep_users"] == ["42", "Bob"] and shown["trace_sample_rate"] == 0.1
    assert Settings().trace_sample_rate == 1.0 and SampleRule.from_settings(Settings()) is None


def test_a_hosts_message_hook_is_sampled_too():
    tracer, sink = make(trace_sample_rate=0, trace_sample_keep_sessions=["vip-room"])
    for session in ("vip-room", "other"):
        with tracer.hook.botrace_trace_message(event=None, name=None,
                                               attributes={"session_id": session}) as root:
            with tracer.hook.botrace_trace_stage(stage="ProcessStage", event=None):
                pass
    assert tracer.flush()
    assert [t.attributes["session_id"] for t in sink.traces] == ["vip-room"]
    assert {s.name for s in sink.finished_spans} == {"message", "ProcessStage"}
    assert root.trace.sampled is False
    tracer.close()
