"""The plugin author's test helper."""

from __future__ import annotations

from botrace import PluginRef, Tracer, span_context, span_record
from botrace.testing import capture_spans


@span_record("parse", span_type="custom")
def parse(text):
    with span_context("tokenize"):
        return text.split()


def test_capture_spans_gives_spans_tree_and_rendering():
    with capture_spans(plugins={__name__: PluginRef("parser")}) as cap:
        parse("a b")
    assert cap.names() == ["parse", "tokenize"]
    assert cap.render() == "test [message]\n  parse [custom] (parser)\n    tokenize [custom] (parser)"
    (root,) = cap.tree()
    assert root["children"][0]["children"][0]["name"] == "tokenize"


def test_capture_spans_from_an_existing_tracer_sees_its_traces():
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    with capture_spans(tracer=tracer) as cap, tracer.start_trace("message"):
        parse("x")
    assert [t.name for t in cap.traces] == ["message"]
    assert cap.find("parse").parent_id == cap.traces[0].root.span_id
    tracer.close()


def test_nothing_is_captured_outside_the_block():
    with capture_spans() as cap:
        pass
    parse("after")
    assert cap.spans == []
