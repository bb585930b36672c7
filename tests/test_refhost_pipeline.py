"""A full message run through the reference host: span kinds, parents and attribution."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap

import pytest

from botrace.span import Status
from botrace_host_adapter.refhost.pipeline import STAGES_ORDER
from botrace_host_adapter.refhost.testing import TracedHost, running_host

T = TracedHost


def names(spans):
    return [s.name for s in spans]


async def test_command_message_nests_stages_handler_and_plugin_io(tmp_path):
    async with running_host(tmp_path) as th:
        event, trace = await th.send("/weather Paris")
    assert event.replies and event.replies[0].startswith("Paris:")
    root = trace.root
    assert root.span_type == "message" and root.parent_id is None
    summary = trace.to_dict()
    assert summary["umo"] == "test:private:alice"
    assert summary["user_id"] == "alice" and summary["outline"] == "/weather Paris"
    assert summary["status"] == "ok"

    # The onion: stages before the first generator stage are the root's children,
    # the ones after it nest inside ContentSafetyCheck.
    assert names(root.children) == list(STAGES_ORDER[:5])
    safety = T.one(trace, name="ContentSafetyCheck")
    assert names(safety.children) == ["PreProcess", "Process"]
    star_request = T.one(trace, name="StarRequest")
    assert T.parent(trace, star_request).name == "Process"

    handler = T.one(trace, name="WeatherPlugin.weather")
    assert handler.span_type == "plugin_call"
    assert T.parent(trace, handler) is star_request
    assert (handler.plugin.name, handler.plugin.plugin_type, handler.plugin.version) == (
        "weather", "third_party", "1.2.0")
    assert handler.meta["event_type"] == "command"

    fetch = T.one(trace, name="plugin.weather.fetch")
    assert fetch.span_type == "io_call" and T.parent(trace, fetch) is handler
    assert fetch.input["city"] == "Paris" and fetch.plugin.name == "weather"
    http = T.one(trace, name="GET weather-api")
    assert T.parent(trace, http) is fetch and http.plugin.name == "weather"

    # Respond ran for the handler's result, but not inside the handler's span.
    respond = T.one(trace, name="Respond")
    assert handler not in T.ancestors(trace, respond)
    assert T.parent(trace, respond).name == "ResultDecorate"

    counter = T.one(trace, name="SessionController.count_messages")
    assert counter.plugin.plugin_type == "builtin" and counter.meta["event_type"] == "all_message"
    assert not T.spans(trace, span_type="llm_call")
    assert all(s.end_ns is not None and s.status == Status.OK for s in trace.spans)


async def test_chat_with_tool_calls_runs_tools_concurrently_as_siblings(tmp_path):
    async with running_host(tmp_path, example_io_latency_ms=30) as th:
        event, trace = await th.send("what's the weather in Paris and London?")
    assert "Paris" in event.replies[0] and "London" in event.replies[0]
    agent = T.one(trace, name="AgentRequest")
    tools = T.spans(trace, span_type="tool_call")
    assert names(tools) == ["get_weather", "get_weather"]
    assert {t.input["city"] for t in tools} == {"Paris", "London"}
    assert all(T.parent(trace, t) is agent for t in tools)
    assert all(t.plugin.name == "weather" for t in tools)
    first, second = tools
    assert second.start_ns < first.end_ns, "the two tool calls should overlap in time"
    for tool in tools:  # each tool's IO and hooks nest under its own tool call
        (fetch,) = [c for c in tool.children if c.name == "plugin.weather.fetch"]
        assert fetch.plugin.name == "weather"
        (hook,) = [c for c in tool.children if c.span_type == "plugin_call"]
        assert hook.name == "SessionController.count_tool_use"
        assert hook.meta["event_type"] == "OnUsingLLMToolEvent"
        assert hook.plugin.name == "session_controller"

    llms = T.spans(trace, span_type="llm_call")
    assert [s.meta["purpose"] for s in llms] == ["planning", "synthesis"]
    assert all(T.parent(trace, s) is agent and s.plugin is None for s in llms)
    assert all(s.meta["input_tokens"] > 0 and s.meta["output_tokens"] > 0 for s in llms)
    assert llms[0].start_ns < first.start_ns and llms[1].start_ns > max(t.end_ns for t in tools)
    hook = T.one(trace, name="SessionController.add_session_note")
    assert T.parent(trace, hook) is agent and hook.meta["event_type"] == "OnLLMRequestEvent"
    summary = trace.to_dict()
    assert summary["llm_calls"] == 2 and summary["tool_calls"] == 2
    assert summary["input_tokens"] == sum(s.meta["input_tokens"] for s in llms)
    assert set(summary["plugins"]) == {"session_controller", "weather"}


async def test_handoff_to_subagent_nests_its_own_llm_and_tool_spans(tmp_path):
    async with running_host(tmp_path) as th:
        event, trace = await th.send("can you search for sqlite wal mode?")
    assert event.replies[0].startswith("According to https://docs.example/sqlite-wal:")
    sub = T.one(trace, span_type="subagent_call")
    assert sub.meta["agent_name"] == "search" and sub.plugin.name == "search"
    assert T.parent(trace, sub).name == "AgentRequest"
    inside = [s for s in trace.spans if sub in T.ancestors(trace, s)]
    tools = [s for s in inside if s.span_type == "tool_call"]
    assert names(tools) == ["web_search", "fetch_page"]
    assert all(T.parent(trace, t) is sub and t.plugin.name == "search" for t in tools)
    assert tools[1].input["url"] == "https://docs.example/sqlite-wal"
    sub_llms = [s for s in inside if s.span_type == "llm_call"]
    assert len(sub_llms) == 3 and all(T.parent(trace, s) is sub for s in sub_llms)
    # The main agent never saw the subagent's tools.
    outside_tools = [s for s in T.spans(trace, span_type="tool_call") if s not in inside]
    assert outside_tools == []
    main_llms = [s for s in T.spans(trace, span_type="llm_call") if s not in inside]
    assert len(main_llms) == 2


async def test_failing_command_records_the_error_and_still_replies(tmp_path):
    async with running_host(tmp_path) as th:
        event, trace = await th.send("/flaky boom")
    assert event.replies == ["Plugin flaky failed: DiceJammed: the flaky command failed (on purpose)"]
    handler = T.one(trace, name="FlakyPlugin.flaky")
    assert handler.status == Status.ERROR and handler.plugin.name == "flaky"
    assert handler.error["type"] == "DiceJammed" and "on purpose" in handler.error["message"]
    assert T.one(trace, name="Respond").status == Status.OK
    assert trace.to_dict()["status"] == "error"


async def test_failing_tool_is_recorded_and_the_model_still_answers(tmp_path):
    async with running_host(tmp_path, flaky_failure_rate=1.0) as th:
        event, trace = await th.send("roll the dice for me")
    assert event.replies and "dice jammed" in event.replies[0]
    tool = T.one(trace, name="roll_dice")
    assert tool.status == Status.ERROR and tool.error["type"] == "DiceJammed"
    assert tool.plugin.name == "flaky"
    assert T.spans(trace, span_type="llm_call")[-1].status == Status.OK


@pytest.mark.parametrize("streaming", [False, True])
async def test_model_failure_is_recorded_and_the_user_still_gets_a_reply(tmp_path, streaming):
    async def broken(*args, **kwargs):
        raise ConnectionError("model server unreachable")

    async def broken_stream(*args, **kwargs):
        raise ConnectionError("model server unreachable")
        yield

    async with running_host(tmp_path, streaming_response=streaming) as th:
        th.host.provider.text_chat = broken
        th.host.provider.text_chat_stream = broken_stream
        event, trace = await th.send("hello there")
    assert event.replies == [
        "Sorry, the assistant could not answer: ConnectionError: model server unreachable"]
    (llm,) = T.spans(trace, span_type="llm_call")
    assert llm.status == Status.ERROR and llm.error["type"] == "ConnectionError"
    assert T.one(trace, name="Respond").status == Status.OK
    assert trace.to_dict()["status"] == "error"


async def test_disabled_session_in_the_config_file_is_ignored_live(tmp_path):
    async with running_host(tmp_path) as th:
        th.host.config.update(disabled_sessions=["test:private:mallory"])
        event, trace = await th.send("/status", user="mallory")
        assert event.replies == []
        assert names(trace.root.children)[-1] == "SessionStatusCheck"
        event, _ = await th.send("/status", user="alice")
        assert event.replies


async def test_tool_timeout_is_recorded_as_an_error(tmp_path):
    agent = {"max_steps": 6, "tool_timeout_s": 0.05, "history_messages": 12, "system_prompt": ""}
    async with running_host(tmp_path, flaky_timeout_rate=1.0, agent=agent) as th:
        event, trace = await th.send("roll the dice")
    tool = T.one(trace, name="roll_dice")
    assert tool.status == Status.ERROR and tool.error["type"] == "TimeoutError"
    assert "timed out" in event.replies[0]


@pytest.mark.slow
async def test_concurrent_messages_from_many_sessions_give_separate_complete_trees(tmp_path):
    texts = ["/weather Oslo", "what's the weather in Lima and Cairo?", "search for asyncio",
             "remind me to stretch in 5 minutes", "hello", "/status"]
    async with running_host(tmp_path, provider={"type": "scripted", "latency_ms": 3}) as th:
        jobs = []
        for i in range(60):
            text, group = texts[i % len(texts)], bool(i % 2)
            if group and not text.startswith("/"):
                text = "@bot " + text  # in a group the bot answers when addressed
            jobs.append(th.send(text, user=f"user{i % 10}", session=f"s{i % 10}", group=group))
        results = await asyncio.gather(*jobs)
    trace_ids = {t.trace_id for _, t in results}
    assert len(trace_ids) == 60
    for event, trace in results:
        assert trace.to_dict()["umo"] == event.umo and trace.root.parent_id is None
        ids = {s.span_id for s in trace.spans}
        assert all(s.parent_id in ids for s in trace.spans if s is not trace.root)
        assert all(s.trace is trace and s.end_ns is not None for s in trace.spans)
        assert trace.attributes["outline"] == event.raw_message
        assert event.replies
        assert trace.dropped_spans == 0


async def test_streaming_mode_runs_the_agent_inside_respond_and_records_ttft(tmp_path):
    provider = {"type": "scripted", "latency_ms": 20, "ttft_ms": 5}
    async with running_host(tmp_path, streaming_response=True, provider=provider) as th:
        event, trace = await th.send("what's the weather in Paris?")
    assert event.replies[0].startswith("Here is what I found: Paris")
    respond = T.one(trace, name="Respond")
    for llm in T.spans(trace, span_type="llm_call"):
        assert respond in T.ancestors(trace, llm)
        assert llm.meta["stream"] is True
    final = T.spans(trace, span_type="llm_call")[-1]
    assert final.meta["ttft_ms"] > 0
    assert T.one(trace, name="get_weather").plugin.name == "weather"


def _write_plugin(root, version: str, reply: str) -> None:
    pkg = root / "tmpplugs" / "echo"
    pkg.mkdir(parents=True, exist_ok=True)
    (root / "tmpplugs" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text(textwrap.dedent(f'''
        from botrace import span_record
        from botrace_host_adapter.refhost.api import Star, filter, register

        @span_record("echo.work", span_type="custom")
        def work(text):
            return text.upper()

        @register("echo", "tests", "echoes", "{version}", display_name="Echo {version}")
        class Echo(Star):
            @filter.command("echo")
            async def echo(self, event):
                yield event.plain_result("{reply} " + work(event.message_str))
    '''))


async def test_plugin_reload_and_unload_change_attribution(tmp_path, monkeypatch):
    _write_plugin(tmp_path, "1.0", "v1")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        async with running_host(tmp_path, plugins={"tmpplugs.echo.main": False}) as th:
            event, trace = await th.send("/echo hi")
            assert event.replies == ["v1 ECHO HI"]
            handler = T.one(trace, name="Echo.echo")
            assert (handler.plugin.version, handler.plugin.display_name) == ("1.0", "Echo 1.0")
            assert T.one(trace, name="echo.work").plugin.version == "1.0"

            _write_plugin(tmp_path, "2.0", "v2")
            await th.host.stars.reload("echo")
            event, trace = await th.send("/echo hi")
            assert event.replies == ["v2 ECHO HI"]
            assert T.one(trace, name="Echo.echo").plugin.version == "2.0"
            assert T.one(trace, name="echo.work").plugin.display_name == "Echo 2.0"

            await th.host.stars.unload("echo")
            assert th.tracer.plugins.resolve("tmpplugs.echo.main") is None
            event, trace = await th.send("/echo hi")
            assert not T.spans(trace, span_type="plugin_call")
    finally:
        for name in [n for n in sys.modules if n.startswith("tmpplugs")]:
            del sys.modules[name]


async def test_tracing_off_changes_nothing_for_the_host(tmp_path):
    async with running_host(tmp_path, trace_enable=False) as th:
        event, trace = await th.send("what's the weather in Paris and London?")
        await th.tracer.aflush()
        assert trace is None and th.sink.traces == []
    assert "Paris" in event.replies[0] and "London" in event.replies[0]


async def test_live_flip_is_written_to_the_host_config_and_file_edits_apply(tmp_path):
    async with running_host(tmp_path) as th:
        path = th.host.config.path
        th.tracer.set_enabled(False)
        assert json.loads(path.read_text())["trace_enable"] is False
        _, trace = await th.send("/status")
        assert trace is None

        data = json.loads(path.read_text())
        data["trace_enable"] = True
        path.write_text(json.dumps(data))
        th.host.config._mtime = None  # the same-second edit: force the re-read
        assert th.host.config.reload_if_changed() == {"trace_enable": True}
        assert th.tracer.enabled
        _, trace = await th.send("/status")
        assert trace is not None


async def test_group_chatter_without_wake_reaches_only_all_message_handlers(tmp_path):
    async with running_host(tmp_path) as th:
        event, trace = await th.send("lol", session="lounge", group=True)
        assert event.replies == []
        handlers = T.spans(trace, span_type="plugin_call")
        assert names(handlers) == ["SessionController.count_messages"]
        assert not T.spans(trace, name="AgentRequest")

        await th.host.stars.unload("session_controller")
        event, trace = await th.send("lol", session="lounge", group=True)
        assert names(trace.root.children) == ["WakingCheck"]  # nobody wanted it: stopped


async def test_a_handler_stopping_the_event_mid_iteration_closes_its_span_in_the_trace(
        tmp_path, monkeypatch):
    _write_plugin(tmp_path, "1.0", "v1")
    main = tmp_path / "tmpplugs" / "echo" / "main.py"
    main.write_text(main.read_text().replace(
        'yield event.plain_result("v1 " + work(event.message_str))',
        'yield event.plain_result("first")\n        event.stop_event()\n'
        '        yield event.plain_result("never sent")\n        raise AssertionError("resumed")'))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        async with running_host(tmp_path, plugins={"tmpplugs.echo.main": False}) as th:
            event, trace = await th.send("/echo hi")
    finally:
        for name in [n for n in sys.modules if n.startswith("tmpplugs")]:
            del sys.modules[name]
    assert event.replies == ["first"]
    handler = T.one(trace, name="Echo.echo")
    assert handler.end_ns is not None and handler.end_ns <= trace.root.end_ns
    assert handler.meta.get("closed_early") is True


async def test_regex_handler_answers_and_the_llm_is_not_asked(tmp_path):
    async with running_host(tmp_path) as th:
        event, trace = await th.send("thanks a lot!")
    assert event.replies == ["You're welcome, alice!"]
    thanks = T.one(trace, name="SessionController.thanks")
    assert thanks.meta["event_type"] == "regex" and thanks.plugin.plugin_type == "builtin"
    assert not T.spans(trace, name="AgentRequest")


async def test_blocked_message_is_answered_by_content_safety(tmp_path):
    async with running_host(tmp_path) as th:
        event, trace = await th.send("say forbidden-word please")
    assert "blocked" in event.replies[0]
    assert not T.spans(trace, name="Process")
