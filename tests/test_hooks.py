"""One test per hook: what it receives, when, and what its result does."""

from __future__ import annotations

import argparse
import asyncio

from botrace import NULL_SPAN, PluginRef, SpanType, Tracer, hookimpl
from botrace.cli import build_parser, plugin_manager
from botrace.testing import InMemorySink


class Host:
    """A minimal host adapter."""

    def __init__(self, config=None):
        self.config = {"trace_enable": True, **(config or {})}
        self.saved = []

    @hookimpl
    def botrace_describe_event(self, event):
        if isinstance(event, dict) and "text" in event:
            return {"umo": event["umo"], "user_id": event["user"], "outline": event["text"]}
        return None

    @hookimpl
    def botrace_resolve_plugin(self, module_path):
        if module_path.startswith("data.plugins."):
            return PluginRef(module_path.split(".")[2])
        return None

    @hookimpl
    def botrace_load_settings(self):
        return self.config

    @hookimpl
    def botrace_settings_changed(self, settings, changes):
        self.saved.append(dict(changes))
        self.config.update(changes)


def make_tracer(host=None):
    host = host or Host()
    tracer = Tracer.from_host(host, load_entrypoints=False)
    sink = InMemorySink()
    tracer.register(sink, name="memory")
    return tracer, sink, host


EVENT = {"umo": "webchat:FriendMessage:s1", "user": "alice", "text": "weather in Paris?"}


def test_hook_trace_message():
    tracer, sink, _ = make_tracer()
    with tracer.hook.botrace_trace_message(event=EVENT, name=None, attributes={"agent_type": "main"}) as root:
        assert root.span_type == SpanType.MESSAGE
    tracer.flush()
    summary = sink.traces[0].to_dict()
    assert summary["umo"] == "webchat:FriendMessage:s1" and summary["outline"] == "weather in Paris?"
    assert summary["agent_type"] == "main" and summary["user_id"] == "alice"
    tracer.set_enabled(False)
    assert tracer.hook.botrace_trace_message(event=EVENT, name=None, attributes=None) is NULL_SPAN


def test_hook_trace_message_can_be_taken_over_by_a_tryfirst_plugin():
    tracer, _, _ = make_tracer()

    class Sampler:
        @hookimpl(tryfirst=True)
        def botrace_trace_message(self, event):
            return NULL_SPAN if event.get("user") == "bot" else None

    tracer.register(Sampler())
    assert tracer.hook.botrace_trace_message(event={**EVENT, "user": "bot"}, name=None, attributes=None) is NULL_SPAN
    root = tracer.hook.botrace_trace_message(event=EVENT, name=None, attributes=None)
    assert root
    root.end()


def test_hook_trace_stage():
    tracer, sink, _ = make_tracer()
    with tracer.hook.botrace_trace_message(event=EVENT, name=None, attributes=None) as root:
        with tracer.hook.botrace_trace_stage(stage="WakingCheck", event=EVENT) as stage:
            pass
    assert stage.parent_id == root.span_id
    assert (stage.name, stage.span_type) == ("WakingCheck", "pipeline_stage")
    assert tracer.hook.botrace_trace_stage(stage="x", event=None) is NULL_SPAN  # outside a trace


def test_hook_trace_handler():
    tracer, _, _ = make_tracer()
    with tracer.hook.botrace_trace_message(event=EVENT, name=None, attributes=None):
        with tracer.hook.botrace_trace_handler(handler_name="weather_cmd", module_path="data.plugins.weather.main",
                                               event_type="command", plugin=None) as handler:
            pass
        with tracer.hook.botrace_trace_handler(handler_name="x", module_path="data.plugins.weather.main",
                                               event_type="command", plugin=PluginRef("explicit")) as other:
            pass
    assert handler.span_type == "plugin_call" and handler.plugin.name == "weather"
    assert handler.meta["event_type"] == "command"
    assert other.plugin.name == "explicit"


def test_hook_trace_llm_call():
    tracer, sink, _ = make_tracer()
    with tracer.hook.botrace_trace_message(event=EVENT, name=None, attributes=None):
        with tracer.hook.botrace_trace_llm_call(model="gpt-x", provider="openai", purpose="planning",
                                                stream=True, messages=[{"role": "user", "content": "hi"}]) as llm:
            llm.set_usage(input_tokens=12, output_tokens=3, cached_tokens=4)
            llm.set_meta(ttft_ms=41.5)
    tracer.flush()
    assert llm.meta["model"] == "gpt-x" and llm.meta["purpose"] == "planning" and llm.meta["stream"] is True
    assert llm.input == {"messages": [{"role": "user", "content": "hi"}]}
    assert sink.traces[0].to_dict()["input_tokens"] == 12


def test_hook_trace_tool_call():
    tracer, _, _ = make_tracer()
    with tracer.hook.botrace_trace_message(event=EVENT, name=None, attributes=None):
        with tracer.hook.botrace_trace_tool_call(tool_name="get_weather", module_path="data.plugins.weather",
                                                 arguments={"city": "Paris"}, tool_call_id="call_1",
                                                 mcp_server=None) as tool:
            tool.set_output(result="sunny")
    assert tool.span_type == "tool_call" and tool.plugin.name == "weather"
    assert tool.input == {"city": "Paris"} and tool.meta["tool_call_id"] == "call_1"


def test_hook_trace_subagent():
    tracer, _, _ = make_tracer()
    with tracer.hook.botrace_trace_message(event=EVENT, name=None, attributes=None):
        with tracer.hook.botrace_trace_subagent(agent_name="searcher", module_path=None, task="find x") as sub:
            with tracer.hook.botrace_trace_llm_call(model="m", provider=None, purpose="synthesis",
                                                    stream=False, messages=None) as llm:
                pass
    assert sub.span_type == "subagent_call" and sub.meta["agent_name"] == "searcher"
    assert llm.parent_id == sub.span_id


def test_hook_resolve_plugin():
    tracer, _, _ = make_tracer()
    assert tracer.plugins.resolve("data.plugins.reminder.main").name == "reminder"
    assert tracer.plugins.resolve("astrbot.core.pipeline") is None


def test_hook_describe_event():
    tracer, sink, _ = make_tracer()
    with tracer.hook.botrace_trace_message(event=object(), name="unknown event", attributes=None):
        pass
    tracer.flush()
    assert sink.traces[0].to_dict()["umo"] is None  # nobody described it; still traced


def test_hook_load_settings():
    tracer, _, _ = make_tracer(Host({"trace_enable": False, "trace_max_spans": 7}))
    assert not tracer.enabled and tracer.settings.trace_max_spans == 7


def test_hook_settings_changed():
    tracer, _, host = make_tracer()
    tracer.set_enabled(False)
    assert host.saved == [{"trace_enable": False}] and host.config["trace_enable"] is False


async def test_hook_startup():
    started = []

    class Sink:
        @hookimpl
        def botrace_startup(self, tracer):
            async def open_():
                await asyncio.sleep(0)
                started.append(tracer)
            return open_()

    tracer, _, _ = make_tracer()
    tracer.register(Sink())
    await tracer.start()
    assert started == [tracer]
    await tracer.aclose()


def test_hook_trace_started():
    tracer, sink, _ = make_tracer()
    with tracer.start_trace("m"):
        pass
    tracer.flush()
    assert sink.events[0][0] == "trace_started"


def test_hook_span_started():
    tracer, sink, _ = make_tracer()
    seen = []

    class Live:
        @hookimpl
        def botrace_span_started(self, span):
            seen.append((span.name, span.status))

    tracer.register(Live())
    with tracer.start_trace("m"), tracer.span("child"):
        pass
    tracer.flush()
    assert [name for name, _ in seen] == ["m", "child"]


def test_hook_span_finished():
    tracer, sink, _ = make_tracer()
    with tracer.start_trace("m"), tracer.span("child"):
        pass
    tracer.flush()
    assert [s.name for s in sink.finished_spans] == ["child", "m"]
    assert all(s.end_ns for s in sink.finished_spans)


def test_hook_trace_finished():
    tracer, sink, _ = make_tracer()
    with tracer.start_trace("m"):
        pass
    tracer.flush()
    assert sink.events[-1][0] == "trace_finished" and sink.traces[0].end_ns


async def test_hook_shutdown():
    closed = []

    class Sink:
        @hookimpl
        async def botrace_shutdown(self, tracer):
            closed.append(tracer.health()["queue_depth"])

    tracer, _, _ = make_tracer()
    tracer.register(Sink())
    with tracer.start_trace("m"):
        pass
    await tracer.aclose()
    assert closed == [0]  # every queued event was dispatched first


def test_hook_health():
    class Sink:
        @hookimpl
        def botrace_health(self):
            return {"name": "mine", "written": 3}

    tracer, _, _ = make_tracer()
    tracer.register(Sink())
    health = tracer.health()
    assert {"name": "mine", "written": 3} in health["sinks"]
    assert health["enabled"] is True and "queue_depth" in health


def test_hook_register_commands(capsys):
    class Extra:
        @hookimpl
        def botrace_register_commands(self, subparsers: argparse._SubParsersAction):
            p = subparsers.add_parser("hello", help="say hello")
            p.add_argument("--name", default="world")
            p.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)

    pm = plugin_manager()
    pm.register(Extra())
    parser = build_parser(pm)
    args = parser.parse_args(["hello", "--name", "bot"])
    assert args.func(args) == 0
    assert capsys.readouterr().out == "hello bot\n"


def test_span_hooks_take_pluggys_full_path_once_another_plugin_implements_them():
    tracer, _, _ = make_tracer()
    seen = []
    undo = tracer.pm.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append(name),
                                             lambda outcome, name, impls, kwargs: None)
    with tracer.hook.botrace_trace_message(event=EVENT, name=None, attributes=None):
        pass
    assert "botrace_trace_message" not in seen  # the core alone: called directly

    class Observer:
        @hookimpl
        def botrace_trace_message(self, event):
            return None

    tracer.register(Observer())
    with tracer.hook.botrace_trace_message(event=EVENT, name=None, attributes=None) as root:
        assert root
    assert "botrace_trace_message" in seen
    undo()


def test_dispatcher_follows_the_hosts_settings():
    tracer, _, _ = make_tracer(Host({"trace_queue_size": 64, "trace_dispatch_interval_ms": 5}))
    health = tracer.health()
    assert health["queue_capacity"] == 64
    tracer.update_settings(trace_queue_size=128)
    assert tracer.health()["queue_capacity"] == 128
