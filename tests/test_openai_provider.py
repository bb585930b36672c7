"""The OpenAI-compatible provider against a fake chat-completions server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest
from aiohttp import web

from botrace_host_adapter.refhost.providers import OpenAICompatProvider, ProviderError
from botrace_host_adapter.refhost.testing import TracedHost, running_host

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
USAGE = {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129,
         "prompt_tokens_details": {"cached_tokens": 100}}


class FakeOpenAI:
    """Answers like an OpenAI server: a tool call when tools are offered and no tool result
    is in yet, text otherwise; streams when asked, with usage in the last chunk."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.auth: list[str | None] = []

    def reply(self, body: dict) -> tuple[str, list[dict]]:
        last = body["messages"][-1]
        if body.get("tools") and last["role"] != "tool":
            return "", [{"id": "call_abc", "name": "get_weather", "arguments": '{"city": "Paris"}'}]
        if last["role"] == "tool":
            return f"It is {last['content']}.", []
        return "Hello from the fake model.", []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.auth.append(request.headers.get("Authorization"))
        if body["model"] == "broken":
            return web.json_response({"error": {"message": "no such model"}}, status=404)
        text, calls = self.reply(body)
        if not body.get("stream"):
            message: dict = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = [{"id": c["id"], "type": "function",
                                          "function": {"name": c["name"], "arguments": c["arguments"]}}
                                         for c in calls]
            return web.json_response({
                "id": "cmpl-1", "object": "chat.completion", "model": body["model"] + "-0613",
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": USAGE})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(obj: dict) -> None:
            await resp.write(f"data: {json.dumps(obj)}\n\n".encode())

        base = {"id": "cmpl-2", "object": "chat.completion.chunk", "model": body["model"] + "-0613"}
        for word in text.split(" ") if text else []:
            await send({**base, "choices": [{"index": 0, "delta": {"content": word + " "}}]})
        for c in calls:  # arguments arrive in pieces, as real servers send them
            args = c["arguments"]
            await send({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": args[:5]}}]}}]})
            await send({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": args[5:]}}]}}]})
        await send({**base, "choices": [{"index": 0, "delta": {},
                                         "finish_reason": "tool_calls" if calls else "stop"}]})
        if body.get("stream_options", {}).get("include_usage"):
            await send({**base, "choices": [], "usage": USAGE})
        await resp.write(b"data: [DONE]\n\n")
        return resp


@pytest.fixture
async def fake_openai():
    fake = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    yield fake
    await runner.cleanup()


async def test_non_streaming_text_and_usage(fake_openai):
    p = OpenAICompatProvider(base_url=fake_openai.base_url, model="gpt-test", api_key="sk-test")
    try:
        resp = await p.text_chat([{"role": "user", "content": "hi"}])
    finally:
        await p.close()
    assert resp.completion_text == "Hello from the fake model."
    assert resp.model == "gpt-test-0613" and resp.finish_reason == "stop"
    assert (resp.usage.input, resp.usage.input_cached, resp.usage.output) == (120, 100, 9)
    assert fake_openai.auth == ["Bearer sk-test"]
    assert "stream" not in fake_openai.requests[0]


async def test_non_streaming_tool_call(fake_openai):
    p = OpenAICompatProvider(base_url=fake_openai.base_url, model="gpt-test")
    try:
        resp = await p.text_chat([{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL])
    finally:
        await p.close()
    assert [(c.id, c.name, c.arguments) for c in resp.tool_calls] == [
        ("call_abc", "get_weather", {"city": "Paris"})]
    assert fake_openai.requests[0]["tools"] == [WEATHER_TOOL]
    assert fake_openai.auth == [None]


async def test_streaming_text_chunks_then_final_with_usage(fake_openai):
    p = OpenAICompatProvider(base_url=fake_openai.base_url, model="gpt-test")
    try:
        out = [r async for r in p.text_chat_stream([{"role": "user", "content": "hi"}])]
    finally:
        await p.close()
    chunks, final = out[:-1], out[-1]
    assert len(chunks) == 5 and all(c.is_chunk for c in chunks)
    assert "".join(c.completion_text for c in chunks) == final.completion_text
    assert final.completion_text.strip() == "Hello from the fake model."
    assert not final.is_chunk and final.usage.output == 9 and final.usage.input_cached == 100
    assert fake_openai.requests[0]["stream_options"] == {"include_usage": True}


async def test_streaming_tool_call_arguments_are_assembled(fake_openai):
    p = OpenAICompatProvider(base_url=fake_openai.base_url, model="gpt-test")
    try:
        out = [r async for r in p.text_chat_stream([{"role": "user", "content": "w"}],
                                                   tools=[WEATHER_TOOL])]
    finally:
        await p.close()
    final = out[-1]
    assert [(c.id, c.name, c.arguments) for c in final.tool_calls] == [
        ("call_abc", "get_weather", {"city": "Paris"})]
    assert final.finish_reason == "tool_calls"


async def test_error_status_raises_provider_error(fake_openai):
    p = OpenAICompatProvider(base_url=fake_openai.base_url, model="broken")
    try:
        with pytest.raises(ProviderError, match="HTTP 404"):
            await p.text_chat([{"role": "user", "content": "hi"}])
        with pytest.raises(ProviderError, match="HTTP 404"):
            [r async for r in p.text_chat_stream([{"role": "user", "content": "hi"}])]
    finally:
        await p.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_host_traces_a_real_model_conversation(fake_openai, tmp_path, stream):
    provider = {"type": "openai", "base_url": fake_openai.base_url, "model": "gpt-test",
                "api_key": "sk-secret"}
    async with running_host(tmp_path, provider=provider, streaming_response=stream) as th:
        event, trace = await th.send("what's the weather in Paris?")
    assert event.replies[0].strip().startswith("It is Paris:")
    llms = TracedHost.spans(trace, span_type="llm_call")
    assert len(llms) == 2
    for llm in llms:
        assert llm.meta["model"] == "gpt-test" and llm.meta["provider"] == "openai"
        assert llm.meta["served_model"] == "gpt-test-0613"
        assert (llm.meta["input_tokens"], llm.meta["cached_tokens"], llm.meta["output_tokens"]) == (
            120, 100, 9)
        assert llm.meta["stream"] is stream
    if stream:
        assert llms[-1].meta["ttft_ms"] >= 0
    tool = TracedHost.one(trace, span_type="tool_call")
    assert tool.name == "get_weather" and tool.plugin.name == "weather"
    assert tool.meta["tool_call_id"] == "call_abc"
    assert trace.to_dict()["input_tokens"] == 240
    assert "sk-secret" not in json.dumps([s.to_dict() for s in trace.spans])


@pytest.mark.slow
async def test_demo_switches_to_a_real_model_and_keeps_the_key_off_disk(fake_openai, tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botrace", "demo", "--messages", "8", "--no-web",
        "--data-dir", str(tmp_path / "data"), "--provider", "openai",
        "--base-url", fake_openai.base_url, "--model", "gpt-test",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "OPENAI_API_KEY": "sk-from-env"})
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "provider openai:gpt-test" in out.decode()
    assert "8 traces recorded" in out.decode()
    assert fake_openai.requests, "the demo never called the model"
    assert set(fake_openai.auth) == {"Bearer sk-from-env"}
    assert "sk-from-env" not in (tmp_path / "data" / "refhost_config.json").read_text()
