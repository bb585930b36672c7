"""The span model: ids, parents, status, errors, budgets, summaries."""

from __future__ import annotations

import re

import pytest

from botrace import NULL_SPAN, Span, SpanType, Status, Tracer, span_context
from botrace.testing import capture_spans


def test_ids_have_w3c_sizes_and_children_link_to_parents(tracer):
    with tracer.start_trace("message") as root, span_context("child") as child:
        pass
    assert re.fullmatch(r"[0-9a-f]{32}", root.trace_id)
    assert re.fullmatch(r"[0-9a-f]{16}", root.span_id)
    assert root.parent_id is None
    assert child.parent_id == root.span_id
    assert child.trace_id == root.trace_id
    assert root.children == [child]


def test_trace_ids_start_with_their_second_and_end_random(tracer, monkeypatch):
    import botrace.span as span_module

    ids = []
    for second in (1_700_000_000, 1_700_000_000, 1_700_000_001):
        monkeypatch.setattr(span_module, "time_ns", lambda s=second: s * 10**9 + 5)
        ids.append(span_module._new_trace_id())
    assert [i[:8] for i in ids] == ["6553f100", "6553f100", "6553f101"]
    assert ids[0] < ids[2] and ids[1] < ids[2]  # later seconds sort after
    assert len({i[8:] for i in ids}) == 3  # the 96 random bits differ


def test_span_ids_are_unique_within_a_trace(tracer):
    with tracer.start_trace("message") as root:
        for _ in range(500):
            with span_context("c"):
                pass
    ids = [s.span_id for s in root.trace.spans]
    assert len(set(ids)) == len(ids) == 501
    assert all(i != "0" * 16 for i in ids)


def test_to_dict_is_json_ready_and_complete(tracer):
    with tracer.start_trace("message", {"umo": "qq:FriendMessage:42", "user_id": "42"}) as root:
        with span_context("fetch", SpanType.IO_CALL) as s:
            s.set_input(city="Paris").set_output(temp=21).set_meta(cache="miss")
            s.add_event("retry", attempt=2)
    d = s.to_dict()
    assert d["parent_id"] == root.span_id
    assert d["span_type"] == "io_call"
    assert d["status"] == "ok"
    assert d["input"] == {"city": "Paris"}
    assert d["output"] == {"temp": 21}
    assert d["meta"] == {"cache": "miss"}
    assert d["events"][0]["name"] == "retry" and d["events"][0]["attributes"] == {"attempt": 2}
    assert d["duration_ns"] == d["end_ns"] - d["start_ns"] >= 0
    summary = root.trace.to_dict()
    assert summary["umo"] == "qq:FriendMessage:42" and summary["user_id"] == "42"
    assert summary["span_count"] == 2 and summary["status"] == "ok"


def test_exception_is_recorded_and_reraised_unchanged(tracer):
    error = ValueError("bad city")
    with pytest.raises(ValueError) as caught, tracer.start_trace("message"), span_context("x") as s:
        raise error
    assert caught.value is error
    assert s.status == Status.ERROR
    assert s.error["type"] == "ValueError"
    assert s.error["message"] == "bad city"
    assert "raise error" in s.error["traceback"]


def test_trace_status_is_error_when_any_span_failed(tracer):
    with tracer.start_trace("message") as root:
        try:
            with span_context("flaky"):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
    assert root.status == Status.OK
    assert root.trace.to_dict()["status"] == "error"


def test_trace_totals_add_up_llm_tokens_and_plugins(tracer):
    from botrace import PluginRef

    with tracer.start_trace("message") as root:
        for i in range(2):
            with span_context("llm", SpanType.LLM_CALL, plugin=PluginRef("agent")) as s:
                s.set_usage(input_tokens=100 + i, output_tokens=10, cached_tokens=5)
        with span_context("tool", SpanType.TOOL_CALL, plugin=PluginRef("weather")):
            pass
    summary = root.trace.to_dict()
    assert (summary["input_tokens"], summary["output_tokens"], summary["cached_tokens"]) == (201, 20, 10)
    assert summary["llm_calls"] == 2 and summary["tool_calls"] == 1
    assert summary["plugins"] == ["agent", "weather"]


def test_span_budget_drops_and_counts_what_goes_over():
    with capture_spans(settings={"trace_max_spans": 5}) as cap:
        for _ in range(10):
            with span_context("c") as s:
                s.set_meta(x=1)
    trace = cap.traces[0]
    assert len(trace.spans) == 5  # root + 4
    assert trace.dropped_spans == 6
    assert trace.truncated and trace.to_dict()["dropped_spans"] == 6


def test_byte_budget_replaces_values_and_marks_truncated():
    with capture_spans(settings={"trace_max_bytes": 2048}) as cap:
        for i in range(20):
            with span_context(f"c{i}") as s:
                s.set_output(text="x" * 500)
    spans = cap.spans
    kept = [s for s in spans if s.output["text"].startswith("x")]
    cut = [s for s in spans if not s.output["text"].startswith("x")]
    assert kept and cut
    assert all(s.truncated for s in cut)
    assert cap.traces[0].truncated


def test_ended_span_is_frozen(tracer):
    with tracer.start_trace("message"), span_context("x") as s:
        s.set_output(a=1)
    s.set_output(b=2)
    s.set_error("late")
    s.record_exception(RuntimeError("late"))  # (sinks such as the store read it later)
    s.add_event("late")
    assert s.output == {"a": 1} and s.status == Status.OK
    assert s.error is None and s.events is None


def test_null_span_does_nothing_and_is_falsy():
    assert span_context("outside a trace") is NULL_SPAN
    with NULL_SPAN as s:
        s.set_input(a=1).set_output(b=2).set_meta(c=3).set_usage(input_tokens=1).add_event("e")
        s.set_error("x")
    assert not NULL_SPAN
    assert NULL_SPAN.input is None and NULL_SPAN.to_dict() == {}


def test_end_is_idempotent(tracer):
    with tracer.start_trace("message"):
        s = tracer.span("x")
        assert isinstance(s, Span)
        s.end()
        first = s.end_ns
        s.end(RuntimeError("later"))
    assert s.end_ns == first and s.status == Status.OK


def test_disabled_tracer_starts_no_trace():
    t = Tracer({"trace_enable": False}, load_entrypoints=False)
    assert t.start_trace("message") is NULL_SPAN
    assert t.hook.botrace_trace_message(event=None, name=None, attributes=None) is NULL_SPAN


# -- token counts (issue 17, item 5) -----------------------------------------------

def test_token_counts_out_of_range_are_rejected_visibly(tracer):
    with tracer.start_trace("message") as root, span_context("llm", SpanType.LLM_CALL) as s:
        s.set_usage(input_tokens=2**70, output_tokens=64, cached_tokens=-1)
    assert s.meta == {"output_tokens": 64,
                      "usage_rejected": {"input_tokens": "1180591620717411303424", "cached_tokens": -1}}
    assert s.truncated and root.trace.truncated
    summary = root.trace.to_dict()
    assert (summary["input_tokens"], summary["output_tokens"], summary["cached_tokens"]) == (0, 64, 0)


@pytest.mark.parametrize("bad", [-5, 2**63, 1.5, "12", True, [1]])
def test_a_token_count_must_be_an_int_from_0_to_2_63(tracer, bad):
    with tracer.start_trace("message"), span_context("llm", SpanType.LLM_CALL) as s:
        s.set_usage(input_tokens=bad)
    assert "input_tokens" not in s.meta and list(s.meta["usage_rejected"]) == ["input_tokens"]
    assert s.truncated


def test_token_counts_given_as_meta_on_an_llm_call_are_checked_too(tracer):
    with tracer.start_trace("message"):
        with span_context("llm", SpanType.LLM_CALL) as llm:
            llm.set_meta({"input_tokens": -3, "output_tokens": 2**63 - 1, "model": "m"})
        with span_context("tool", SpanType.TOOL_CALL) as tool:
            tool.set_meta(input_tokens=-3)  # not an LLM call: not counted anywhere, kept as given
    assert llm.meta == {"output_tokens": 2**63 - 1, "model": "m", "usage_rejected": {"input_tokens": -3}}
    assert llm.truncated and tool.meta == {"input_tokens": -3} and not tool.truncated


def test_valid_usage_is_kept_as_given(tracer):
    with tracer.start_trace("message"), span_context("llm", SpanType.LLM_CALL) as s:
        s.set_usage(input_tokens=0, output_tokens=2**63 - 1, cached_tokens=None, cache_hit=False)
    assert s.meta == {"input_tokens": 0, "output_tokens": 2**63 - 1, "cache_hit": False}
    assert not s.truncated


# -- errors and events are redacted as values are (issue 17, item 8) ---------------

def test_error_messages_and_tracebacks_are_redacted(tracer):
    def login(user):
        raise PermissionError(f"login failed for {user} with password=hunter2 api_key=sk-abcdefghijklmnopqrst")

    with pytest.raises(PermissionError), tracer.start_trace("message"), span_context("x") as s:
        s.set_input(text="login failed for bob with password=hunter2")
        login("bob")
    assert s.input == {"text": "login failed for bob with password=[redacted]"}
    assert s.error["message"] == "login failed for bob with password=[redacted] api_key=[redacted]"
    assert "raise PermissionError" in s.error["traceback"]
    assert "hunter2" not in s.error["traceback"] and "sk-abc" not in s.error["traceback"]


def test_set_error_with_a_message_is_redacted(tracer):
    with tracer.start_trace("message"), span_context("x") as s:
        s.set_error("upstream said: Authorization: Bearer abcdefghijklmnop rejected")
    assert s.error == {"type": "Error", "message": "upstream said: Authorization: Bearer [redacted] rejected",
                       "traceback": ""}


def test_event_names_and_attributes_are_redacted(tracer):
    with tracer.start_trace("message"), span_context("x") as s:
        s.add_event("retry with token=abc123", url="https://api.example.com/?api_key=abc123", api_key="k")
    event = s.events[0]
    assert event["name"] == "retry with token=[redacted]"
    assert event["attributes"] == {"url": "https://api.example.com/?api_key=[redacted]", "api_key": "[redacted]"}
