"""An llm_call records the whole request (botrace.prompt), and an on_llm_request hook's
span records what it added to it."""

from __future__ import annotations

import json

from botrace.prompt import estimate_tokens, request_diff, request_input
from botrace_host_adapter.refhost.testing import TracedHost, running_host

T = TracedHost


async def test_llm_span_input_holds_system_prompt_history_tools_and_tool_results(tmp_path):
    async with running_host(tmp_path) as th:
        await th.send("hello there")  # one turn of history
        event, trace = await th.send("what's the weather in Paris and London?")
    planning, synthesis = T.spans(trace, span_type="llm_call")
    msgs = planning.input["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    system = msgs[0]["content"]
    assert system.startswith(th.host.config["agent"]["system_prompt"])
    # the session controller's on_llm_request hook added this to the system prompt
    assert "You are talking with" in system
    assert msgs[1]["content"] == "hello there" and msgs[-1]["content"].startswith("what's the weather")
    assert "get_weather" in planning.input["tools"]
    assert "omitted_messages" not in planning.input
    # the second call carries the model's tool calls and the tools' results
    msgs = synthesis.input["messages"]
    assert [m["role"] for m in msgs][-3:] == ["assistant", "tool", "tool"]
    calls = msgs[-3]["tool_calls"]
    assert [c["name"] for c in calls] == ["get_weather", "get_weather"]
    assert {json.loads(c["arguments"])["city"] for c in calls} == {"Paris", "London"}
    results = msgs[-2:]
    assert {r["tool_call_id"] for r in results} == {c["id"] for c in calls}
    tool_outputs = {t.output["result"] for t in T.spans(trace, span_type="tool_call")}
    assert {r["content"] for r in results} == tool_outputs


async def test_llm_span_input_of_a_huge_history_is_bounded_and_marked(tmp_path):
    async with running_host(tmp_path) as th:
        th.host.conversations.max_messages = 1000  # the host keeps 12 turns by default
        for i in range(400):
            th.host.conversations.append("test:private:alice", "user" if i % 2 == 0 else "assistant",
                                         f"turn {i} " + "x" * 500)
        event, trace = await th.send("and now?")
    llm = T.spans(trace, span_type="llm_call")[0]
    msgs = llm.input["messages"]
    assert msgs[0]["role"] == "system"
    assert msgs[1]["role"] == "omitted" and msgs[1]["omitted"] == llm.input["omitted_messages"] > 0
    # the newest turns are kept, up to the message being answered
    assert msgs[-1] == {"role": "user", "content": "and now?"}
    assert msgs[-2]["content"].startswith("turn 399 ")
    assert len(msgs) - 2 + msgs[1]["omitted"] == 401
    assert sum(len(m.get("content") or "") for m in msgs) < 70_000


async def test_on_llm_request_hook_span_records_what_it_added(tmp_path):
    async with running_host(tmp_path) as th:
        event, trace = await th.send("hello")
    hook = T.one(trace, name="SessionController.add_session_note")
    added = hook.output["request_added"]
    note = f"\nYou are talking with {event.get_sender_name()} ({event.umo})."
    assert added["system_prompt_chars_added"] == len(note) == added["chars_added"]
    assert added["tokens_added_est"] == estimate_tokens(len(note)) == hook.meta["tokens_added_est"]
    assert hook.meta["changed"] == ["system_prompt"]
    assert "messages_added" not in added


def test_request_diff_counts_messages_tools_and_images():
    old = [{"role": "user", "content": "a"}]
    before = {"prompt": "q", "system_prompt": "s", "contexts": list(old), "tools": ["t1"], "images": 0}
    new_msg = {"role": "system", "content": "retrieved: " + "y" * 89}
    after = {"prompt": "q", "system_prompt": "s", "contexts": [*old, new_msg],
             "tools": ["t1", "t2"], "images": 2}
    diff = request_diff(before, after)
    assert diff["messages_added"] == [new_msg] and diff["tools_added"] == ["t2"]
    assert diff["images_added"] == 2 and diff["chars_added"] == 100 and diff["tokens_added_est"] == 25
    assert request_diff(before, dict(before)) is None


def test_request_input_shape():
    got = request_input([{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "ok"},
                                                           {"type": "image_url"}]}],
        ["f"], model="m")
    assert got == {"messages": [
        {"role": "assistant", "tool_calls": [{"id": "c1", "name": "f", "arguments": "{}"}]},
        {"role": "tool", "content": "ok[image_url]", "tool_call_id": "c1"}],
        "tools": ["f"], "model": "m"}
