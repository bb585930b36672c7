"""The AstrBot adapter's parts that need no AstrBot: version tolerance and what spans record.

Everything the adapter does inside AstrBot is proven against the real package in
tests/astrbot/ (marked ``astrbot``). These tests are the fast ones: a stand-in
for an AstrBot release where some wrapped functions are missing or changed, and
the pure functions that read AstrBot's objects.
"""

from __future__ import annotations

import subprocess
import sys
import types
from dataclasses import dataclass, field

import pytest

from botrace import Tracer
from botrace.testing import InMemorySink
from botrace_host_adapter.astrbot import TARGETS, AstrBotAdapter, recording
from botrace_host_adapter.astrbot.adapter import resolve_star, stage_name


def _module(monkeypatch, name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, mod)
    return mod


def test_importing_the_adapter_does_not_import_astrbot():
    code = ("import sys, botrace_host_adapter.astrbot.plugin, botrace_host_adapter.astrbot.package; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'astrbot'], 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.fixture
def old_astrbot(monkeypatch):
    """An AstrBot whose scheduler is as today, but whose agent runner and tool executor
    changed shape, and which has no star_handler, context or stage modules at all."""
    class PipelineScheduler:
        async def execute(self, event):
            event.handled = True

    _module(monkeypatch, "astrbot", __path__=[])
    _module(monkeypatch, "astrbot.core", __path__=[])
    _module(monkeypatch, "astrbot.core.pipeline", __path__=[])
    _module(monkeypatch, "astrbot.core.pipeline.scheduler", PipelineScheduler=PipelineScheduler)

    class ToolLoopAgentRunner:
        async def _iter_llm_responses(self):  # a coroutine now, not an async generator
            return []

    class FunctionToolExecutor:
        @staticmethod
        async def execute(tool, run_context, **args):
            return None

    _module(monkeypatch, "astrbot.core.agent", __path__=[])
    _module(monkeypatch, "astrbot.core.agent.runners", __path__=[])
    _module(monkeypatch, "astrbot.core.agent.runners.tool_loop_agent_runner",
            ToolLoopAgentRunner=ToolLoopAgentRunner)
    _module(monkeypatch, "astrbot.core.astr_agent_tool_exec", FunctionToolExecutor=FunctionToolExecutor)
    return types.SimpleNamespace(scheduler=PipelineScheduler, runner=ToolLoopAgentRunner,
                                 executor=FunctionToolExecutor)


async def test_an_astrbot_of_another_shape_traces_what_it_can_and_reports_the_rest(old_astrbot):
    config = {"trace_enable": True}
    adapter = AstrBotAdapter(config=config)
    tracer = Tracer.from_host(adapter, load_entrypoints=False)
    sink = InMemorySink()
    tracer.register(sink)
    original_llm = old_astrbot.runner._iter_llm_responses
    undo = adapter.install(tracer)
    try:
        assert adapter.installed == ["message"]
        assert set(adapter.unavailable) == set(TARGETS) - {"message"}
        assert "changed shape" in adapter.unavailable["llm"]
        assert "no longer a classmethod" in adapter.unavailable["tools"]
        health = next(s for s in tracer.health()["sinks"] if s["name"] == "astrbot adapter")
        assert health["wrapped"] == ["message"] and health["state"] == "degraded"
        assert "llm_call (agent)" in health["unavailable"]

        event = types.SimpleNamespace(unified_msg_origin="webchat:FriendMessage:u1",
                                      message_str="hi", trace=types.SimpleNamespace(span_id="abc"))
        await old_astrbot.scheduler().execute(event)
        tracer.flush()
        assert event.handled
        (trace,) = sink.traces
        assert [s.name for s in trace.spans] == ["message"]
        summary = trace.to_dict()
        assert summary["umo"] == "webchat:FriendMessage:u1"
        assert summary["attributes"]["astrbot_span_id"] == "abc"
        assert old_astrbot.runner._iter_llm_responses is original_llm
    finally:
        undo()
        tracer.close()
    assert adapter.patched == 0
    assert not hasattr(old_astrbot.scheduler.execute, "__wrapped__")


async def test_astrbots_switch_is_followed_and_a_flip_on_the_page_is_saved_to_astrbot(old_astrbot):
    class Config(dict):
        saved = 0

        def save_config(self):
            self.saved += 1

    config = Config(trace_enable=False, trace_log_enable=True, trace_log_path="logs/astrbot.log")
    adapter = AstrBotAdapter(config=config, settings={"trace_retention_days": 3})
    tracer = Tracer.from_host(adapter, load_entrypoints=False)
    # AstrBot's own trace_log_* keys (its flat trace log) never become botrace's
    assert not tracer.settings.trace_log_enable and tracer.settings.trace_retention_days == 3
    adapter.install(tracer)
    try:
        assert not tracer.enabled
        config["trace_enable"] = True          # AstrBot's dashboard switch
        assert adapter.follow_switch() and tracer.enabled
        assert config.saved == 0               # already AstrBot's value: not written again
        tracer.set_enabled(False)              # botrace's page switch
        assert config["trace_enable"] is False and config.saved == 1
    finally:
        adapter.uninstall()
        tracer.close()


def test_stage_names_drop_the_stage_suffixes():
    names = [stage_name(type(n, (), {})) for n in
             ("ProcessStage", "InternalAgentSubStage", "RateLimitStage", "Stage", "Odd")]
    assert names == ["Process", "InternalAgent", "RateLimit", "Stage", "Odd"]


@dataclass
class Meta:
    name: str
    display_name: str = ""
    version: str = "1.0"
    reserved: bool = False


def test_plugins_resolve_from_star_map_by_longest_prefix_with_or_without_main(monkeypatch):
    star_map = {"data.plugins.probe.main": Meta("probe", "Probe"),
                "data.plugins.probe_extra.main": Meta("probe_extra"),
                "astrbot.builtin_stars.astrbot.main": Meta("astrbot", reserved=True)}
    _module(monkeypatch, "astrbot.core.star.star", star_map=star_map)
    assert resolve_star("data.plugins.probe.main").name == "probe"
    assert resolve_star("data.plugins.probe").name == "probe"  # a tool's handler_module_path
    assert resolve_star("data.plugins.probe_extra.tools").name == "probe_extra"
    assert resolve_star("astrbot.builtin_stars.astrbot.main").plugin_type == "builtin"
    assert resolve_star("data.plugins.probe").plugin_type == "third_party"
    assert resolve_star("data.plugins.other.main") is None


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
    tools_call_args: list = field(default_factory=list)
    tools_call_ids: list = field(default_factory=list)
    usage: Usage | None = None


def test_llm_usage_and_output_read_astrbots_token_usage_and_tool_calls():
    resp = Resp(tools_call_name=["get_weather"], tools_call_args=[{"city": "Paris"}],
                tools_call_ids=["call_1"], usage=Usage(90, 10, 5))
    assert recording.llm_usage(resp) == {"input_tokens": 100, "output_tokens": 5,
                                         "cached_tokens": 10, "cache_hit": True}
    assert recording.llm_output(resp) == {"tool_calls": [
        {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]}
    assert recording.llm_usage(Resp("hi")) == {}


def test_hook_state_sees_a_changed_request_and_a_stopped_event():
    req = types.SimpleNamespace(prompt="hi", system_prompt="be nice", contexts=[], image_urls=[],
                                func_tool=None, model=None)
    event = types.SimpleNamespace(stopped=False, is_stopped=lambda: event.stopped,
                                  get_result=lambda: None)
    before = recording.hook_state(event, (req,))
    req.system_prompt += " [probe]"
    event.stopped = True
    after = recording.hook_state(event, (req,))
    assert recording.state_changes(before, after) == ["system_prompt"]
    assert after["stopped"] and not before["stopped"]
    assert recording.hook_kind(types.SimpleNamespace(name="OnLLMRequestEvent")) == "on_llm_request"


def test_text_change_says_what_a_hook_added():
    assert recording.text_change("be nice", "be nice\n[x]") == {"appended": "\n[x]", "chars_added": 4}
    assert recording.text_change("be nice", "[x] be nice") == {"prepended": "[x] ", "chars_added": 4}
    assert recording.text_change("be nice", "be kind") == {"replaced_with": "be kind",
                                                           "chars_added": 0}
    assert recording.text_change(None, "hi") == {"replaced_with": "hi", "chars_added": 2}
