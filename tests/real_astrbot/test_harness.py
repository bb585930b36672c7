"""Smoke tests of the AstrBot harness itself: the real AstrBot, the fake model, the probe plugin.

No botrace here: these prove that the harness drives AstrBot the way a user would (a
command, a tool-using chat turn, streaming, a subagent handoff, a hook that vetoes the LLM
call, the dashboard's Trace switch, plugin reload/off/on), so that later tests can lean on
it. Each AstrBot start costs ~10 s of imports, so a scenario batches several messages and
several tests read its results (module-scoped fixtures).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from astrbot_envs import AstrBotEnv
from astrbot_runner import PROBE_PLUGIN, free_port, run_scenario
from fake_openai import FakeOpenAI, RecordedRequest, Rule, ToolCall

pytestmark = [pytest.mark.astrbot, pytest.mark.slow]

# what the probe plugin does (tests/real_astrbot/plugins/astrbot_plugin_probe/main.py)
PROBE = "astrbot_plugin_probe"
SYSTEM_MARKER = "[probe-system-marker]"
DECORATION = " [probe-decorated]"


def weather(city: str) -> str:
    return f"Weather in {city}: sunny, 21 C (probe)"


SUBAGENT = "weather_agent"
SUBAGENT_PROMPT = "You are WEATHER-SUBAGENT. Use get_weather, then answer in one line."


def rules() -> list[Rule]:
    """The fake model's script: a direct tool turn (Paris) and a handoff turn (Tokyo)."""
    return [
        # the subagent's own tool loop (its system prompt is the subagent's)
        Rule("sub-tool", system_contains="WEATHER-SUBAGENT", has_tool_result=False,
             tool_calls=[ToolCall("get_weather", {"city": "Tokyo"})]),
        Rule("sub-answer", system_contains="WEATHER-SUBAGENT", has_tool_result=True,
             text="Subagent: {tool_result}"),
        # the main agent, routing to the subagent when it is offered
        Rule("handoff", user_contains="weather agent", has_tool_result=False,
             tool_offered=f"transfer_to_{SUBAGENT}",
             tool_calls=[ToolCall(f"transfer_to_{SUBAGENT}", {"input": "What is the weather in Tokyo?"})]),
        Rule("handoff-answer", user_contains="weather agent", has_tool_result=True,
             text="Main agent relays: {tool_result}"),
        # the main agent using the probe's tool itself
        Rule("tool", user_contains="weather in Paris", has_tool_result=False,
             tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
        Rule("answer", user_contains="weather in Paris", has_tool_result=True,
             text="Forecast: {tool_result}"),
        Rule("slow", user_contains="slow question", delay_s=1.0, text="slow answer"),
    ]


@dataclass
class Run:
    """One scenario's results, with the fake model's recordings and the probe's hook log."""

    results: dict
    fake: FakeOpenAI
    root: Path

    def step(self, name: str) -> dict:
        return next(s for s in self.results["steps"] if s["name"] == name)

    def requests(self, text: str) -> list[RecordedRequest]:
        """The model requests of the turn whose user message contains ``text``."""
        return self.fake.requests_matching(text)

    def hooks(self, hook: str | None = None) -> list[dict]:
        path = self.root / "data" / "plugin_data" / PROBE / "hooks.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        return [h for h in lines if hook is None or h["hook"] == hook]

    def served_for(self, requests: list[RecordedRequest]) -> list:
        by_index = {s.request_index: s for s in self.fake.served}
        return [by_index[r.index] for r in requests]


def run(env: AstrBotEnv, root: Path, scenario: dict) -> Run:
    with FakeOpenAI(rules()) as fake:
        results = run_scenario(env, root, {"plugins": [str(PROBE_PLUGIN)], **scenario}, llm=fake)
    assert results["ok"], results
    return Run(results, fake, root)


def chat_scenario(streaming: bool) -> dict:
    """A command, a tool turn, a vetoed turn, the Trace switch, then a handoff turn.

    The subagent is configured from the start but the main agent becomes a router only at
    the ``set_config`` step, which takes effect at the next message: in 4.14.6 a router sees
    the ``transfer_to_*`` tools instead of the plugins' tools, and the Paris turn needs
    ``get_weather``.
    """
    return {
        "streaming": streaming,
        "subagents": [{"name": SUBAGENT, "system_prompt": SUBAGENT_PROMPT,
                       "public_description": "Knows the weather anywhere.",
                       "tools": ["get_weather"]}],
        "subagent_main_enable": False,
        "steps": [
            {"op": "message", "name": "probe", "text": "/probe hi"},
            {"op": "message", "name": "paris", "text": "What is the weather in Paris?"},
            {"op": "message", "name": "veto", "text": "please veto this one"},
            {"op": "trace_settings", "name": "trace-on", "trace_enable": True},
            {"op": "set_config", "key": "subagent_orchestrator.main_enable", "value": True},
            {"op": "message", "name": "handoff", "text": "Ask the weather agent about Tokyo"},
        ],
    }


@pytest.fixture(scope="module")
def chat(astrbot_env: AstrBotEnv, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run(astrbot_env, tmp_path_factory.mktemp("astrbot-chat"), chat_scenario(False))


@pytest.fixture(scope="module")
def streamed(astrbot_env: AstrBotEnv, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Streaming, the dashboard on a free port, and the plugin manager's off/on/reload."""
    scenario = {
        "streaming": True,
        "dashboard": {"port": free_port()},
        "steps": [
            {"op": "message", "name": "paris", "text": "What is the weather in Paris?"},
            {"op": "trace_settings", "name": "trace-on", "trace_enable": True},
            {"op": "plugin", "name": "off", "action": "turn_off", "plugin": PROBE},
            {"op": "message", "name": "probe-off", "text": "/probe while off"},
            {"op": "plugin", "name": "on", "action": "turn_on", "plugin": PROBE},
            {"op": "message", "name": "probe-on", "text": "/probe back on"},
            {"op": "plugin", "name": "reload", "action": "reload", "plugin": PROBE},
            {"op": "message", "name": "probe-reloaded", "text": "/probe reloaded"},
            {"op": "exec", "name": "host", "code": "result = config['dashboard']['host']"},
            # the Trace switch flipped while a (1 s) model call is in flight
            {"op": "message", "name": "slow", "text": "a slow question", "background": True},
            {"op": "sleep", "seconds": 0.3},
            {"op": "trace_settings", "name": "trace-off", "trace_enable": False},
            {"op": "join", "steps": ["slow"]},
        ],
    }
    return run(astrbot_env, tmp_path_factory.mktemp("astrbot-stream"), scenario)


# --------------------------------------------------------------------------------------------
# AstrBot 4.14.6, not streaming


def test_probe_command_reaches_the_plugin(chat: Run) -> None:
    assert chat.step("probe")["reply"] == "probe says: hi" + DECORATION
    assert chat.requests("probe") == [], "a command must not reach the model"
    assert [h["text"] for h in chat.hooks("command")] == ["hi"]


def test_agent_calls_the_plugin_tool_then_answers(chat: Run) -> None:
    first, second = chat.requests("weather in Paris")
    assert not first.stream and not second.stream
    assert "get_weather" in first.tools and not first.has_tool_result
    assert second.tool_results == [weather("Paris")]
    call = next(m for m in second.messages if m.get("tool_calls"))
    assert call["tool_calls"][0]["id"] == chat.served_for([first])[0].tool_calls[0]["id"]
    assert SYSTEM_MARKER in first.system and SYSTEM_MARKER in second.system  # on_llm_request
    assert chat.step("paris")["reply"] == "Forecast: " + weather("Paris") + DECORATION
    assert [h["city"] for h in chat.hooks("get_weather")] == ["Paris", "Tokyo"]  # Tokyo: handoff


def assert_usage_reaches_astrbot(run: Run, step: str, text: str) -> None:
    """AstrBot's own per-message stats (sent to the webchat) add up the served usages."""
    served = run.served_for(run.requests(text))
    stats = [json.loads(i["data"]) for i in run.step(step)["items"]
             if i.get("chain_type") == "agent_stats"]
    tokens = stats[-1]["token_usage"]  # cumulative over the message's model calls
    cached = sum(s.usage["prompt_tokens_details"]["cached_tokens"] for s in served)
    assert tokens["input_cached"] == cached
    assert tokens["input_other"] == sum(s.usage["prompt_tokens"] for s in served) - cached
    assert tokens["output"] == sum(s.usage["completion_tokens"] for s in served)


def test_usage_numbers_are_distinct_and_reach_astrbot(chat: Run) -> None:
    usages = [s.usage for s in chat.fake.served]
    assert len({json.dumps(u, sort_keys=True) for u in usages}) == len(usages)
    assert_usage_reaches_astrbot(chat, "paris", "weather in Paris")


def test_veto_hook_stops_the_event_before_the_model(chat: Run) -> None:
    assert chat.step("veto")["reply"] == ""
    assert chat.requests("veto") == []
    assert [h["message"] for h in chat.hooks("veto")] == ["please veto this one"]


def test_trace_switch_handler_writes_the_config(chat: Run) -> None:
    step = chat.step("trace-on")
    assert step["via"] == "LogRoute"  # 4.14.6's Quart route, called in-process
    assert step["get"]["data"] == {"trace_enable": True}
    saved = json.loads((chat.root / "data" / "cmd_config.json").read_text(encoding="utf-8-sig"))
    assert saved["trace_enable"] is True


def test_handoff_runs_the_subagent_with_its_own_tool_loop(chat: Run) -> None:
    reqs = [r for r in chat.fake.requests if "Tokyo" in r.last_user]
    assert [r.rule for r in reqs] == ["handoff", "sub-tool", "sub-answer", "handoff-answer"]
    main, sub, sub2, main2 = reqs
    # 4.14.6: a router sees the handoff tools instead of the plugins' tools (4.29.3: beside)
    assert f"transfer_to_{SUBAGENT}" in main.tools and "get_weather" not in main.tools
    assert sub.tools == ["get_weather"] and SUBAGENT_PROMPT in sub.system
    assert sub2.tool_results == [weather("Tokyo")]
    assert main2.tool_results == ["Subagent: " + weather("Tokyo")]
    # plugins' on_llm_request hooks run for the main agent's calls only
    assert SYSTEM_MARKER in main.system and SYSTEM_MARKER not in sub.system
    expected = "Main agent relays: Subagent: " + weather("Tokyo") + DECORATION
    assert chat.step("handoff")["reply"] == expected


def test_results_carry_timings_and_logs(chat: Run) -> None:
    r = chat.results
    assert r["astrbot_version"] == "4.14.6" and r["stopped_cleanly"]
    assert r["startup_s"] > 0
    for step in r["steps"]:
        assert step["wall_s"] >= 0 and step["cpu_s"] >= 0
    assert r["replies"][0] == chat.step("probe")["reply"]
    assert (chat.root / "astrbot.log").read_text()


# --------------------------------------------------------------------------------------------
# AstrBot 4.14.6, streaming, with the dashboard


def test_streaming_tool_turn(streamed: Run) -> None:
    first, second = streamed.requests("weather in Paris")
    assert first.stream and second.stream
    assert second.tool_results == [weather("Paris")]
    step = streamed.step("paris")
    pieces = [i for i in step["items"] if i.get("streaming") and i["type"] == "plain"]
    assert len(pieces) > 1, "the answer should arrive in several chunks"
    # AstrBot runs on_decorating_result after a stream, but what it adds is never sent
    assert step["reply"] == "Forecast: " + weather("Paris")
    assert [h["message"] for h in streamed.hooks("on_decorating_result")][:1] == [
        "What is the weather in Paris?"]
    # 4.14.6 never asks for stream_options.include_usage; the final usage chunk still counts
    assert first.stream_options is None
    assert_usage_reaches_astrbot(streamed, "paris", "weather in Paris")


def test_dashboard_trace_switch_over_http(streamed: Run) -> None:
    dash = streamed.results["dashboard"]
    assert dash["url"].startswith("http://127.0.0.1:") and dash["token"]
    assert streamed.step("host")["result"] == "127.0.0.1"
    step = streamed.step("trace-on")
    assert step["via"] == "http"
    assert step["post"]["http_status"] == 200 and step["post"]["status"] == "ok"
    assert step["get"]["data"] == {"trace_enable": True}


def test_background_message_overlaps_later_steps(streamed: Run) -> None:
    slow, flip = streamed.step("slow"), streamed.step("trace-off")
    assert slow["reply"] == "slow answer"
    assert slow["started_at"] < flip["started_at"] < slow["started_at"] + slow["wall_s"]
    assert flip["get"]["data"] == {"trace_enable": False}


def test_plugin_off_on_reload(streamed: Run) -> None:
    assert streamed.step("probe-off")["reply"].startswith("fake reply")  # went to the model
    assert streamed.step("probe-on")["reply"] == "probe says: back on" + DECORATION
    assert streamed.step("probe-reloaded")["reply"] == "probe says: reloaded" + DECORATION
    assert [h["hook"] for h in streamed.hooks()].count("terminate") >= 2


# --------------------------------------------------------------------------------------------
# the newest AstrBot 4.x on Python 3.12


def test_newest_astrbot_smoke(astrbot_env_py312: AstrBotEnv, tmp_path: Path) -> None:
    r = run(astrbot_env_py312, tmp_path / "astrbot", chat_scenario(True))
    assert r.results["astrbot_version"] == astrbot_env_py312.astrbot_version
    assert r.step("probe")["reply"] == "probe says: hi" + DECORATION
    first, second = r.requests("weather in Paris")
    assert first.stream and first.stream_options == {"include_usage": True}
    assert second.tool_results == [weather("Paris")] and SYSTEM_MARKER in first.system
    assert r.step("paris")["reply"] == "Forecast: " + weather("Paris")
    assert_usage_reaches_astrbot(r, "paris", "weather in Paris")
    assert r.requests("veto") == [] and r.step("veto")["reply"] == ""
    assert r.step("trace-on")["get"]["data"] == {"trace_enable": True}
    tokyo = [q for q in r.fake.requests if "Tokyo" in q.last_user]
    assert [q.rule for q in tokyo] == ["handoff", "sub-tool", "sub-answer", "handoff-answer"]
    assert {"get_weather", f"transfer_to_{SUBAGENT}"} <= set(tokyo[0].tools)
    assert SYSTEM_MARKER in tokyo[0].system and SYSTEM_MARKER not in tokyo[1].system
    assert r.step("handoff")["reply"] == "Main agent relays: Subagent: " + weather("Tokyo")
