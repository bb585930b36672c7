"""The AstrBot adapter against a stand-in for AstrBot's modules (AstrBot is not installed).

The stand-in keeps only what the adapter touches, with AstrBot 4.14.6's names and
shapes: the onion scheduler over ``registered_stages``, ``call_handler`` imported
by name into ``star_request``, ``call_event_hook``, ``ToolLoopAgentRunner
._iter_llm_responses`` and the classmethod async generator ``FunctionToolExecutor.execute``.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import types
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import pytest

from botrace import Tracer
from botrace.testing import InMemorySink


def _module(monkeypatch, name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, mod)
    return mod


@dataclass
class Event:
    message_str: str
    unified_msg_origin: str = "aiocqhttp:GroupMessage:42"
    session_id: str = "42"
    replies: list = field(default_factory=list)
    _stopped: bool = False

    def get_sender_name(self):
        return "Ann"

    def get_sender_id(self):
        return "u1"

    def get_platform_name(self):
        return "aiocqhttp"

    def is_stopped(self):
        return self._stopped


@dataclass
class Usage:
    input_other: int
    input_cached: int
    output: int

    @property
    def input(self):
        return self.input_other + self.input_cached


@dataclass
class Resp:
    completion_text: str = ""
    tools_call_name: list = field(default_factory=list)
    usage: Usage | None = None
    is_chunk: bool = False


@dataclass
class Meta:
    name: str
    display_name: str
    version: str
    reserved: bool = False


@pytest.fixture
def fake_astrbot(monkeypatch):
    """Build the stand-in modules; returns the scheduler to run events through."""
    star_map = {
        "data.plugins.weather.main": Meta("weather", "Weather", "1.0"),
        "astrbot.builtin_stars.session.main": Meta("session", "Session", "4.14.6", reserved=True),
    }
    _module(monkeypatch, "astrbot.core.star.star", star_map=star_map)

    async def call_handler(event, handler, *args, **kwargs):
        ret = handler(event, *args, **kwargs)
        if hasattr(ret, "__anext__"):
            async for item in ret:
                event.result = item
                yield
        else:
            await ret
            yield

    hooks_called = []

    async def call_event_hook(event, hook_type, *args, **kwargs):
        hooks_called.append(hook_type.name)
        return False

    context_utils = _module(monkeypatch, "astrbot.core.pipeline.context_utils",
                            call_handler=call_handler, call_event_hook=call_event_hook)

    # plugin code, living in the plugins' modules
    async def weather(self, event):
        yield f"{event.message_str}: sunny"

    weather.__module__ = "data.plugins.weather.main"
    weather.__qualname__ = "Weather.weather"

    async def get_weather(city):
        return f"{city}: sunny"

    class FunctionTool:
        def __init__(self, name, handler, module):
            self.name, self.handler, self.handler_module_path = name, handler, module

    class HandoffTool:
        def __init__(self, agent_name):
            self.name = f"transfer_to_{agent_name}"
            self.agent = types.SimpleNamespace(name=agent_name)

    class FunctionToolExecutor:
        @classmethod
        async def execute(cls, tool, run_context, **tool_args) -> AsyncGenerator:
            if isinstance(tool, HandoffTool):
                runner = ToolLoopAgentRunner(tools=[FunctionTool(
                    "get_weather", get_weather, "data.plugins.weather")])
                yield await runner.run(tool_args["input"])
                return
            yield await tool.handler(**tool_args)

    class ToolLoopAgentRunner:
        def __init__(self, tools, streaming=False):
            self.tools = tools
            self.streaming = streaming
            self.req = types.SimpleNamespace(model=None)
            self.provider = types.SimpleNamespace(provider_config={"id": "openai_1"},
                                                  get_model=lambda: "gpt-x")
            self.step_no = 0

        async def _iter_llm_responses(self, *, include_model=True):
            self.step_no += 1
            if self.streaming:
                yield Resp("Par", is_chunk=True)
            await asyncio.sleep(0)
            if self.step_no == 1 and self.tools:
                yield Resp(tools_call_name=[t.name for t in self.tools],
                           usage=Usage(90, 10, 5))
            else:
                yield Resp("done", usage=Usage(150, 100, 7))

        async def last(self):
            return [r async for r in self._iter_llm_responses()][-1]

        async def run(self, text):
            resp = await self.last()
            if resp.tools_call_name:
                results = await asyncio.gather(*(
                    _drain(FunctionToolExecutor.execute(t, None, **(
                        {"input": text} if isinstance(t, HandoffTool) else {"city": text})))
                    for t in self.tools))
                resp = await self.last()
                return f"{resp.completion_text}: {results}"
            return resp.completion_text

    async def _drain(agen):
        return [item async for item in agen]

    _module(monkeypatch, "astrbot.core.agent.runners.tool_loop_agent_runner",
            ToolLoopAgentRunner=ToolLoopAgentRunner)
    _module(monkeypatch, "astrbot.core.astr_agent_tool_exec",
            FunctionToolExecutor=FunctionToolExecutor)

    star_request = _module(monkeypatch, "astrbot.core.pipeline.process_stage.method.star_request",
                           call_handler=call_handler)

    class WakingCheckStage:
        async def process(self, event):
            pass

    class ProcessStage:
        async def process(self, event):
            if event.message_str.startswith("/"):
                handler = functools.partial(weather, object())
                # looked up by name in star_request's globals, as AstrBot's code does
                async for _ in star_request.call_handler(event, handler):
                    yield
                return
            await context_utils.call_event_hook(event, types.SimpleNamespace(name="OnLLMRequestEvent"))
            tools = [FunctionTool("get_weather", get_weather, "data.plugins.weather"),
                     HandoffTool("scout")]
            event.result = await ToolLoopAgentRunner(tools).run(event.message_str)
            yield

    class RespondStage:
        async def process(self, event):
            event.replies.append(event.result)

    stages = [WakingCheckStage(), ProcessStage(), RespondStage()]
    _module(monkeypatch, "astrbot.core.pipeline.stage", registered_stages=stages)

    class PipelineScheduler:
        async def _process_stages(self, event, from_stage=0):
            for i in range(from_stage, len(stages)):
                coro = stages[i].process(event)
                if hasattr(coro, "__anext__"):
                    async for _ in coro:
                        await self._process_stages(event, i + 1)
                    break
                await coro

        async def execute(self, event):
            await self._process_stages(event)

    _module(monkeypatch, "astrbot.core.pipeline.scheduler", PipelineScheduler=PipelineScheduler)
    return types.SimpleNamespace(scheduler=PipelineScheduler(), hooks_called=hooks_called,
                                 stages=stages)


class Config(dict):
    saved = 0

    def save_config(self):
        self.saved += 1


@pytest.fixture
def traced(fake_astrbot):
    from botrace_host_adapter.astrbot import AstrBotAdapter

    config = Config(trace_enable=True, trace_log_enable=False, platform_settings={})
    adapter = AstrBotAdapter(config=config)
    tracer = Tracer.from_host(adapter, load_entrypoints=False)
    sink = InMemorySink()
    tracer.register(sink)
    undo = adapter.install(tracer)
    yield types.SimpleNamespace(tracer=tracer, sink=sink, config=config, undo=undo,
                                **vars(fake_astrbot))
    undo()
    tracer.close()


def tree(trace):
    by_id = {s.span_id: s for s in trace.spans}
    return {s.name: (by_id[s.parent_id].name if s.parent_id else None) for s in trace.spans}


def test_importing_the_adapter_does_not_import_astrbot():
    code = ("import sys, botrace_host_adapter.astrbot; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'astrbot'], 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_command_message_gets_root_stages_and_handler_with_attribution(traced):
    event = Event("/weather Paris")
    await traced.scheduler.execute(event)
    traced.tracer.flush()
    (trace,) = traced.sink.traces
    assert tree(trace) == {"message": None, "WakingCheck": "message", "Process": "message",
                           "Weather.weather": "Process", "Respond": "Process"}
    handler = next(s for s in trace.spans if s.name == "Weather.weather")
    assert handler.plugin.name == "weather" and handler.plugin.plugin_type == "third_party"
    summary = trace.to_dict()
    assert summary["umo"] == "aiocqhttp:GroupMessage:42" and summary["sender"] == "Ann"
    assert summary["outline"] == "/weather Paris"
    assert event.replies == ["/weather Paris: sunny"]


async def test_agent_llm_calls_tools_and_handoff_nest_with_usage(traced):
    event = Event("Paris")
    await traced.scheduler.execute(event)
    traced.tracer.flush()
    (trace,) = traced.sink.traces
    spans = trace.spans
    parent = {s.span_id: s for s in spans}
    llms = [s for s in spans if s.span_type == "llm_call"]
    assert len(llms) == 4  # main agent 2, subagent 2
    assert llms[0].meta["model"] == "gpt-x" and llms[0].meta["provider"] == "openai_1"
    assert (llms[0].meta["input_tokens"], llms[0].meta["cached_tokens"]) == (100, 10)
    (hook,) = [s for s in spans if s.span_type == "plugin_call"]
    assert hook.name == "hooks OnLLMRequestEvent" and traced.hooks_called == ["OnLLMRequestEvent"]
    (sub,) = [s for s in spans if s.span_type == "subagent_call"]
    assert sub.meta["agent_name"] == "scout" and parent[sub.parent_id].name == "Process"
    tools = [s for s in spans if s.span_type == "tool_call"]
    main_tool = next(t for t in tools if t.parent_id != sub.span_id)
    sub_tool = next(t for t in tools if t.parent_id == sub.span_id)
    assert main_tool.plugin.name == sub_tool.plugin.name == "weather"
    assert parent[main_tool.parent_id].name == "Process"
    assert sum(1 for s in spans if s.parent_id == sub.span_id and s.span_type == "llm_call") == 2
    assert trace.to_dict()["status"] == "ok"


async def test_flip_is_saved_to_astrbots_config_and_uninstall_restores(traced, fake_astrbot):
    traced.tracer.set_enabled(False)
    assert traced.config["trace_enable"] is False and traced.config.saved == 1
    traced.undo()
    sched_mod = sys.modules["astrbot.core.pipeline.scheduler"]
    assert sched_mod.PipelineScheduler.execute.__name__ == "execute"
    assert not hasattr(sched_mod.PipelineScheduler.execute, "__wrapped__")
    assert "process" not in vars(traced.stages[0])  # instance override removed
