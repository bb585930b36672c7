"""Tests of the example plugins, written the way a plugin author would: with
``botrace.testing.capture_spans`` around a direct call of the plugin's code.

The plugin instances come from a reference host that is *not* traced — the
spans below are only the ones the plugin itself makes.
"""

from __future__ import annotations

import sqlite3

import pytest

from botrace import PluginRef
from botrace.testing import capture_spans
from botrace_host_adapter.refhost.event import MessageEvent
from botrace_host_adapter.refhost.host import RefHost
from botrace_host_adapter.refhost.testing import TEST_CONFIG
from botrace_plugins_example.weather.main import fetch_forecast

PLUGINS = {
    "botrace_plugins_example.weather": PluginRef("weather", "Weather", "third_party", "1.2.0"),
    "botrace_plugins_example.reminder": PluginRef("reminder", "Reminders", "third_party", "0.9.1"),
    "botrace_plugins_example.search_agent": PluginRef("search", "Search agent", "third_party", "2.0.0"),
    "botrace_plugins_example.flaky": PluginRef("flaky", "Flaky", "third_party", "0.1.0"),
}


@pytest.fixture
async def host(tmp_path):
    h = RefHost.from_config_file(tmp_path / "cfg.json", **{**TEST_CONFIG, "trace_enable": False})
    await h.start()
    yield h
    await h.stop()


def plugin(host, name):
    return host.stars.get(name).instance


def event(text="", user="alice"):
    return MessageEvent.create(text, user_id=user)


async def test_weather_fetch_records_an_io_span_with_its_http_step():
    async with capture_spans(plugins=PLUGINS) as cap:
        forecast = await fetch_forecast("Paris")
    fetch = cap.find("plugin.weather.fetch")
    assert fetch.span_type == "io_call" and fetch.plugin.name == "weather"
    assert fetch.input == {"city": "Paris", "latency_s": 0.0}
    assert fetch.output["return"] == forecast
    http = cap.find("GET weather-api")
    assert http.parent_id == fetch.span_id
    assert http.input["url"].endswith("city=Paris") and http.output == {"status": 200}
    assert cap.render() == (
        "test [message]\n"
        "  plugin.weather.fetch [io_call] (weather)\n"
        "    GET weather-api [io_call] (weather)")


async def test_weather_tool_marks_cache_hits_on_the_current_span(host):
    weather = plugin(host, "weather")
    async with capture_spans(plugins=PLUGINS) as cap:
        async with cap.tracer.span("tool 1"), cap.tracer.span("tool 1"):
            first = await weather.get_weather(event(), city="Oslo")
        async with cap.tracer.span("tool 2"):
            second = await weather.get_weather(event(), city="oslo")
    assert first == second and first.startswith("Oslo:")
    assert [s.meta for s in cap.find_all("tool 2")] == [{"cache_hit": True}]
    assert len(cap.find_all("plugin.weather.fetch")) == 1  # the second call hit the cache


async def test_weather_command_without_a_city_explains_usage(host):
    weather = plugin(host, "weather")
    ev = event("weather")
    results = [r.text async for r in weather.weather(ev)]
    assert results == ["Usage: /weather <city>"]


async def test_reminder_tools_write_and_read_sqlite_in_a_thread_under_the_caller(host, tmp_path):
    reminder = plugin(host, "reminder")
    ev = event()
    async with capture_spans(plugins=PLUGINS) as cap:
        created = await reminder.create_reminder(ev, text="water the plants", in_minutes=30)
        listed = await reminder.list_reminders(ev)
    assert created.startswith("Reminder #") and "water the plants" in listed
    insert = cap.find("plugin.reminder.insert")
    assert insert.span_type == "io_call" and insert.plugin.name == "reminder"
    assert insert.input["text"] == "water the plants" and insert.input["umo"] == ev.umo
    assert insert.parent_id == cap.root.span_id  # the worker thread kept the caller's span
    query = cap.find("plugin.reminder.query")
    assert query.output is None  # record_output=False keeps rows out of the trace
    db = tmp_path / "plugin_data" / "reminder" / "reminders.db"
    rows = sqlite3.connect(db).execute("SELECT umo, text FROM reminders").fetchall()
    assert rows == [(ev.umo, "water the plants")]


async def test_reminders_are_per_conversation(host):
    reminder = plugin(host, "reminder")
    await reminder.create_reminder(event(user="alice"), text="a", in_minutes=5)
    assert await reminder.list_reminders(event(user="bob")) == "No upcoming reminders."


async def test_search_agent_tools_rank_then_fetch(host):
    search = plugin(host, "search")
    module = "botrace_plugins_example.search_agent.main"  # what the host's tool_call span is opened with
    async with capture_spans(plugins=PLUGINS) as cap:
        async with cap.tracer.span("web_search", "tool_call", module=module):
            urls = await search.web_search(event(), query="sqlite wal")
        async with cap.tracer.span("fetch_page", "tool_call", module=module):
            page = await search.fetch_page(event(), url=urls.splitlines()[0])
            missing = await search.fetch_page(event(), url="https://docs.example/nope")
    assert urls.splitlines()[0] == "https://docs.example/sqlite-wal"
    assert "write-ahead log" in page and missing.endswith("404 not found")
    assert cap.find("rank results").meta == {"candidates": 5}
    assert [s.output for s in cap.find_all("GET page")] == [{"status": 200}, {"status": 404}]
    assert {s.plugin.name for s in cap.spans} == {"search"}


async def test_search_agent_declares_a_subagent_with_its_own_tools(host):
    (agent,) = host.stars.agents()
    assert agent.name == "search" and agent.plugin_name == "search"
    assert {t.name for t in host.stars.tools("search")} == {"web_search", "fetch_page"}
    assert "web_search" not in {t.name for t in host.stars.tools(None)}


async def test_session_controller_mute_and_reset(host):
    controller = plugin(host, "session_controller")
    ev = event("mute")
    (reply,) = [r.text async for r in controller.mute(ev)]
    assert reply.startswith("LLM replies are off")
    assert not host.sessions.llm_enabled(ev.umo)
    [_ async for _ in controller.unmute(ev)]
    assert host.sessions.llm_enabled(ev.umo)
    host.conversations.append(ev.umo, "user", "hi")
    assert [r.text async for r in controller.reset(ev)] == [
        "Conversation reset (1 messages forgotten)."]


async def test_session_controller_is_attributed_as_builtin_in_a_host_trace(tmp_path):
    from botrace_host_adapter.refhost.testing import running_host

    async with running_host(tmp_path) as th, capture_spans(tracer=th.tracer) as cap:
        await th.host.handle_text("/status", user_id="alice")
    status = cap.find("SessionController.status")
    assert status.plugin.plugin_type == "builtin" and status.plugin.name == "session_controller"


async def test_flaky_tool_raises_when_told_to_and_the_span_says_so(host):
    flaky = plugin(host, "flaky")
    flaky.failure_rate = 1.0
    async with capture_spans(plugins=PLUGINS) as cap:
        with pytest.raises(RuntimeError, match="jammed"):
            async with cap.tracer.span("roll", module="botrace_plugins_example.flaky.main"):
                await flaky.roll_dice(event(), sides=6)
    roll = cap.find("roll")
    assert roll.status == "error" and roll.error["type"] == "DiceJammed"
    assert roll.plugin.name == "flaky" and "draw" in roll.meta


async def test_flaky_tool_succeeds_when_lucky(host):
    flaky = plugin(host, "flaky")
    flaky.failure_rate = flaky.timeout_rate = 0.0
    assert (await flaky.roll_dice(event(), sides=6)).startswith("You rolled a ")
