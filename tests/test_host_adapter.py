"""The reusable host-adapter parts: the span emitter, config file and host hooks."""

from __future__ import annotations

import json
import logging

from botrace import NULL_SPAN, PluginRef, Tracer, span_context
from botrace.context import get_current_span
from botrace.testing import InMemorySink, capture_spans
from botrace_host_adapter import (
    HostHooks,
    JsonConfigFile,
    PluginAttribution,
    SpanEmitter,
    iterate_in_span,
)
from botrace_host_adapter.refhost.event import MessageEvent
from botrace_host_adapter.refhost.tracing import describe_event


def test_emitter_without_a_tracer_hands_out_the_null_span():
    emit = SpanEmitter(None)
    assert not emit.active
    with emit.message(object()) as root, emit.stage("WakingCheck") as stage:
        assert root is NULL_SPAN and stage is NULL_SPAN
        assert emit.tool_call("t") is NULL_SPAN and emit.llm_call("m") is NULL_SPAN


def test_emitter_outside_a_trace_does_not_open_spans():
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    emit = SpanEmitter(tracer)
    assert emit.stage("Respond") is NULL_SPAN  # no message span is current
    tracer.close()


async def test_emitter_opens_each_kind_through_the_hooks():
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    tracer.plugins.register("plugs.weather", PluginRef("weather"))
    sink = InMemorySink()
    tracer.register(sink)
    emit = SpanEmitter(tracer)
    with emit.message(None, attributes={"umo": "x:private:y"}) as root, emit.stage("Process"):
        with emit.handler("W.cmd", module_path="plugs.weather.main", event_type="command"):
            pass
        with emit.llm_call("m1", provider="p", purpose="planning", stream=True):
            pass
        with emit.tool_call("get_weather", module_path="plugs.weather", arguments={"c": 1}):
            pass
        with emit.subagent("search", task="find"):
            pass
    tracer.flush()
    kinds = {s.name: (s.span_type, s.plugin.name if s.plugin else None) for s in root.trace.spans}
    assert kinds == {
        "message": ("message", None), "Process": ("pipeline_stage", None),
        "W.cmd": ("plugin_call", "weather"), "llm m1": ("llm_call", None),
        "get_weather": ("tool_call", "weather"), "subagent search": ("subagent_call", None),
    }
    assert sink.traces[0].to_dict()["umo"] == "x:private:y"
    tracer.close()


async def test_handler_generator_spans_nest_inside_but_do_not_leak_between_items():
    async def handler():
        async with span_context("inside-1"):
            pass
        yield 1
        async with span_context("inside-2"):
            pass
        yield 2

    async with capture_spans() as cap:
        outer = get_current_span()
        span = cap.tracer.span("handler", "plugin_call")
        seen = []
        async for item in iterate_in_span(span, handler()):
            seen.append(item)
            assert get_current_span() is outer  # the consumer's span between items
            async with span_context(f"consumer-{item}"):
                pass
    assert seen == [1, 2]
    h = cap.find("handler")
    assert [c.name for c in h.children] == ["inside-1", "inside-2"]
    assert cap.find("consumer-1").parent_id == cap.root.span_id
    assert h.status == "ok" and h.end_ns is not None


async def test_handler_generator_error_is_recorded_and_raised():
    async def handler():
        yield 1
        raise KeyError("nope")

    async with capture_spans() as cap:
        span = cap.tracer.span("handler", "plugin_call")
        got = []
        try:
            async for item in iterate_in_span(span, handler()):
                got.append(item)
        except KeyError:
            got.append("raised")
    assert got == [1, "raised"]
    assert cap.find("handler").error["type"] == "KeyError"


async def test_consumer_stopping_early_closes_the_handler_and_its_span():
    closed = []

    async def handler():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async with capture_spans() as cap:
        span = cap.tracer.span("handler", "plugin_call")
        agen = iterate_in_span(span, handler())
        async for _ in agen:
            break
        await agen.aclose()
    assert closed == [True]
    assert cap.find("handler").status == "ok"


def test_config_file_defaults_updates_and_atomic_writes(tmp_path):
    path = tmp_path / "cfg.json"
    cfg = JsonConfigFile(path, defaults={"trace_enable": False, "wake_prefix": ["/"]})
    assert json.loads(path.read_text()) == {"trace_enable": False, "wake_prefix": ["/"]}
    changes = []
    cfg.watch(changes.append)
    assert cfg.update(trace_enable=True) == {"trace_enable": True}
    assert cfg.update(trace_enable=True) == {}  # no change, no write, no notice
    assert changes == [{"trace_enable": True}]
    assert json.loads(path.read_text())["trace_enable"] is True
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def test_config_file_keeps_last_good_values_when_the_file_is_broken(tmp_path, caplog):
    path = tmp_path / "cfg.json"
    cfg = JsonConfigFile(path, defaults={"trace_enable": True})
    path.write_text("{ not json")
    cfg._mtime = None
    with caplog.at_level(logging.WARNING):
        assert cfg.reload_if_changed() == {}
    assert cfg["trace_enable"] is True
    assert "unreadable" in caplog.text


def test_host_hooks_persist_only_trace_settings_and_follow_file_edits(tmp_path):
    cfg = JsonConfigFile(tmp_path / "cfg.json", defaults={"trace_enable": True, "other": 1})
    hooks = HostHooks(config=cfg)
    tracer = Tracer.from_host(hooks, load_entrypoints=False)
    assert tracer.enabled
    hooks.follow_config(tracer)
    tracer.update_settings(trace_enable=False, trace_retention_days=3)
    saved = json.loads((tmp_path / "cfg.json").read_text())
    assert saved == {"trace_enable": False, "trace_retention_days": 3, "other": 1}
    cfg.update(trace_enable=True)
    assert tracer.enabled
    cfg.update(trace_retention_days="soon")  # a bad edit is logged, the old value stays
    assert tracer.settings.trace_retention_days == 3
    tracer.close()


def test_plugin_attribution_follows_load_and_unload():
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    attribution = PluginAttribution(tracer)
    ref = attribution.loaded("data.plugins.w", "w", builtin=True, version="1")
    assert tracer.plugins.resolve("data.plugins.w.main") is ref and ref.plugin_type == "builtin"
    attribution.unloaded("w")
    assert tracer.plugins.resolve("data.plugins.w.main") is None
    tracer.close()


def test_describe_event_gives_root_attributes_and_ignores_foreign_events():
    ev = MessageEvent.create("/w Oslo", user_id="u1", session_id="g1", message_type="group",
                             platform="qq", sender_name="Una")
    attrs = describe_event(ev)
    assert attrs["umo"] == "qq:group:g1" and attrs["sender"] == "Una"
    assert attrs["user_id"] == "u1" and attrs["session_id"] == "g1"
    assert attrs["outline"] == "/w Oslo"
    assert describe_event({"text": "hi"}) is None
