"""The fake model server on its own (no AstrBot): rules, streaming format, usage numbering."""

from __future__ import annotations

import json

import aiohttp
from fake_openai import FakeOpenAI, Rule, ToolCall

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def body(user: str, *, stream: bool = False, tool_result: str | None = None) -> dict:
    messages = [{"role": "system", "content": "sys prompt"},
                {"role": "user", "content": [{"type": "text", "text": user}]}]
    if tool_result is not None:
        messages += [{"role": "assistant", "content": None, "tool_calls": [
                         {"id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": "call_1", "content": tool_result}]
    return {"model": "fake-model", "messages": messages, "tools": TOOLS, "stream": stream}


async def post(fake: FakeOpenAI, payload: dict) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base_url}/chat/completions", json=payload) as resp:
            return resp.status, await resp.text()


async def test_rules_tool_calls_and_usage() -> None:
    rules = [Rule("tool", user_contains="weather", has_tool_result=False, tool_offered="get_weather",
                  tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]),
             Rule("answer", user_contains="weather", has_tool_result=True, text="It is {tool_result}")]
    with FakeOpenAI(rules) as fake:
        status, text = await post(fake, body("weather?"))
        assert status == 200
        first = json.loads(text)
        call = first["choices"][0]["message"]["tool_calls"][0]
        assert call["id"] == "call_1" and json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
        second = json.loads((await post(fake, body("weather?", tool_result="cold")))[1])
        assert second["choices"][0]["message"]["content"] == "It is cold"
        third = json.loads((await post(fake, body("hello")))[1])
        assert third["choices"][0]["message"]["content"] == "fake reply"

        reqs, served = fake.requests, fake.served
        assert [r.rule for r in reqs] == ["tool", "answer", ""]
        assert reqs[0].system == "sys prompt" and reqs[0].tools == ["get_weather"]
        assert reqs[1].tool_results == ["cold"] and reqs[1].has_tool_result
        assert [s.usage for s in served] == [first["usage"], second["usage"], third["usage"]]
        assert len({s.usage["prompt_tokens"] for s in served}) == 3
        assert served[0].usage["prompt_tokens_details"]["cached_tokens"] > 0


async def test_streaming_ends_with_a_usage_chunk() -> None:
    with FakeOpenAI([Rule(text="one two three four five six")]) as fake:
        status, text = await post(fake, body("hi", stream=True))
    assert status == 200
    events = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == "one two three four five six"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == fake.served[0].usage
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_scripted_errors_and_models() -> None:
    with FakeOpenAI([Rule("boom", user_contains="boom", error_status=500, times=1)]) as fake:
        assert (await post(fake, body("boom")))[0] == 500
        assert (await post(fake, body("boom")))[0] == 200  # times=1: the next one is answered
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{fake.base_url}/models") as resp:
                assert [m["id"] for m in (await resp.json())["data"]] == ["fake-model"]
