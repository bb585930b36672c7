"""A scripted, OpenAI-compatible chat completions server for driving the real AstrBot.

AstrBot talks to its model through the ``openai`` client (``openai_chat_completion``
provider). This server answers that client on 127.0.0.1 from a thread of its own (its own
event loop), so a test can start it, point an AstrBot subprocess at ``base_url`` and read
afterwards exactly what AstrBot sent and what it was answered.

What it answers is decided by :class:`Rule` objects, tried in order against each request:
the last user message, whether tool results follow it, the system prompt (a subagent has
its own), the tools offered. The first matching rule produces either text or tool calls; no
match produces :attr:`FakeOpenAI.default_text`. Answers are deterministic, tool call ids
count up (``call_1``, ``call_2``, ...) and every response carries a distinct ``usage``, so a
test can compare what a tracer recorded with :attr:`FakeOpenAI.served`.

Streaming follows OpenAI: ``data:`` chunks (role, content pieces or tool call pieces, a
``finish_reason`` chunk), then a usage-only chunk with ``choices: []`` (sent always, not only
for ``stream_options.include_usage``: AstrBot 4.14.6 never asks for it but keeps the last
chunk's usage through ``ChatCompletionStreamState``; 4.29.3 asks), then ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class ToolCall:
    """A tool call the fake model makes: ``name`` with JSON ``arguments``."""

    name: str
    arguments: dict = field(default_factory=dict)


@dataclass
class Rule:
    """When a request matches, answer with ``text`` or ``tool_calls``.

    Every condition left as None matches anything:

    - ``user_contains``: case-insensitive substring (or ``re:<pattern>``) of the last user
      message's text;
    - ``system_contains``: substring of the system prompt (the first system message);
    - ``has_tool_result``: True when tool results follow the last user message (the second
      round of a tool loop), False when none do;
    - ``tool_offered``: the request offers a tool of this name.

    ``text`` may use ``{tool_result}`` (the last tool result's content) and ``{user}`` (the
    last user message). ``usage`` overrides the generated usage (keys ``prompt_tokens``,
    ``completion_tokens``, ``cached_tokens``); ``delay_s`` waits before answering;
    ``error_status`` answers with that HTTP error instead (the openai client retries 5xx);
    ``times`` limits how many requests the rule answers.
    """

    name: str = ""
    user_contains: str | None = None
    system_contains: str | None = None
    has_tool_result: bool | None = None
    tool_offered: str | None = None
    text: str | None = None
    tool_calls: list[ToolCall] | None = None
    usage: dict | None = None
    delay_s: float = 0.0
    error_status: int | None = None
    times: int | None = None
    used: int = 0

    def matches(self, req: RecordedRequest) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.user_contains is not None:
            if self.user_contains.startswith("re:"):
                if not re.search(self.user_contains[3:], req.last_user, re.I | re.S):
                    return False
            elif self.user_contains.lower() not in req.last_user.lower():
                return False
        if self.system_contains is not None and self.system_contains not in req.system:
            return False
        if self.has_tool_result is not None and self.has_tool_result != req.has_tool_result:
            return False
        return self.tool_offered is None or self.tool_offered in req.tools


@dataclass
class RecordedRequest:
    """One ``POST /v1/chat/completions`` as AstrBot sent it."""

    index: int  #: 0-based, in arrival order
    model: str
    stream: bool
    stream_options: dict | None
    messages: list[dict]  #: verbatim
    tools: list[str]  #: names of the tools offered
    tool_specs: list[dict]  #: the ``tools`` entries verbatim
    system: str  #: the first system message's text ("" if none)
    last_user: str  #: the last user message's text
    has_tool_result: bool  #: tool messages follow the last user message
    tool_results: list[str]  #: contents of those tool messages
    body: dict  #: the whole JSON body
    received_at: float = 0.0
    rule: str = ""  #: the name of the rule that answered ("" = default text)


@dataclass
class ServedResponse:
    """What the fake model answered to request ``request_index``."""

    request_index: int
    id: str  #: the completion id (``chatcmpl-fake-<n>``)
    model: str
    stream: bool
    text: str | None
    tool_calls: list[dict]  #: ``[{"id": "call_1", "name": ..., "arguments": {...}}]``
    finish_reason: str
    usage: dict  #: the OpenAI usage object sent (with ``prompt_tokens_details.cached_tokens``)
    rule: str = ""
    error_status: int | None = None


def _text_of(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return str(content)


def _record(index: int, body: dict) -> RecordedRequest:
    messages = body.get("messages") or []
    system = next((_text_of(m.get("content")) for m in messages if m.get("role") == "system"), "")
    last_user_at = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    last_user = _text_of(messages[last_user_at].get("content")) if last_user_at >= 0 else ""
    after = messages[last_user_at + 1:]
    tool_results = [_text_of(m.get("content")) for m in after if m.get("role") == "tool"]
    tool_specs = body.get("tools") or []
    tools = [t.get("function", {}).get("name", "") for t in tool_specs if isinstance(t, dict)]
    return RecordedRequest(
        index=index, model=str(body.get("model", "")), stream=bool(body.get("stream")),
        stream_options=body.get("stream_options"), messages=messages, tools=tools,
        tool_specs=tool_specs, system=system, last_user=last_user,
        has_tool_result=bool(tool_results), tool_results=tool_results, body=body,
        received_at=time.time())


class FakeOpenAI:
    """The server. ``start()`` it (or use it as a context manager), then read ``base_url``."""

    def __init__(self, rules: list[Rule] | None = None, *, default_text: str = "fake reply",
                 models: tuple[str, ...] = ("fake-model",), stream_pieces: int = 3) -> None:
        self.rules: list[Rule] = list(rules or [])
        self.default_text = default_text
        self.models = models
        self.stream_pieces = max(1, stream_pieces)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._served: list[ServedResponse] = []
        self._tool_call_seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port: int = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What goes into AstrBot's ``api_base`` (the ``/v1`` root)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                app = web.Application()
                app.router.add_post("/v1/chat/completions", self._chat)
                app.router.add_get("/v1/models", self._models)
                self._runner = web.AppRunner(app, access_log=None)
                loop.run_until_complete(self._runner.setup())
                loop.run_until_complete(web.SockSite(self._runner, sock).start())
            except BaseException as e:  # pragma: no cover - reported to start()
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting and inspection ------------------------------------------------------------

    def set_rules(self, rules: list[Rule], *, default_text: str | None = None) -> None:
        """Replace the rules (and forget the recorded traffic): one script per scenario."""
        with self._lock:
            self.rules = list(rules)
            if default_text is not None:
                self.default_text = default_text
        self.reset()

    def reset(self) -> None:
        """Forget recorded requests and served responses; restart ids and usage numbering."""
        with self._lock:
            self._requests.clear()
            self._served.clear()
            self._tool_call_seq = 0
            for rule in self.rules:
                rule.used = 0

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def served(self) -> list[ServedResponse]:
        """A copy of the responses sent so far, in order (``request_index`` links them)."""
        with self._lock:
            return list(self._served)

    def requests_matching(self, text: str) -> list[RecordedRequest]:
        """Requests whose last user message contains ``text`` (case-insensitive)."""
        return [r for r in self.requests if text.lower() in r.last_user.lower()]

    def dump(self) -> dict:
        """Everything recorded, as plain data (for attaching to a failure message)."""
        return {"requests": [{k: v for k, v in asdict(r).items() if k != "body"}
                             for r in self.requests],
                "served": [asdict(s) for s in self.served]}

    # -- handlers ----------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]})

    def _plan(self, body: dict) -> tuple[RecordedRequest, Rule | None, ServedResponse]:
        """Record the request and decide the answer, under the lock (numbering stays in order)."""
        with self._lock:
            req = _record(len(self._requests), body)
            self._requests.append(req)
            rule = next((r for r in self.rules if r.matches(req)), None)
            n = len(self._served) + 1
            usage = {"prompt_tokens": 100 * n + 7, "completion_tokens": 10 * n + 3,
                     "cached_tokens": 5 * n}
            if rule is not None:
                rule.used += 1
                req.rule = rule.name
                usage.update(rule.usage or {})
            calls: list[dict] = []
            text: str | None = None
            if rule is not None and rule.tool_calls:
                for call in rule.tool_calls:
                    self._tool_call_seq += 1
                    calls.append({"id": f"call_{self._tool_call_seq}", "name": call.name,
                                  "arguments": copy.deepcopy(call.arguments)})
            else:
                template = rule.text if rule is not None and rule.text is not None \
                    else self.default_text
                text = template.replace("{tool_result}", req.tool_results[-1]
                                        if req.tool_results else "").replace("{user}", req.last_user)
            usage_obj = {
                "prompt_tokens": usage["prompt_tokens"],
                "completion_tokens": usage["completion_tokens"],
                "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
                "prompt_tokens_details": {"cached_tokens": usage["cached_tokens"]},
            }
            served = ServedResponse(
                request_index=req.index, id=f"chatcmpl-fake-{n}", model=req.model or self.models[0],
                stream=req.stream, text=text, tool_calls=calls,
                finish_reason="tool_calls" if calls else "stop", usage=usage_obj,
                rule=rule.name if rule else "",
                error_status=rule.error_status if rule else None)
            self._served.append(served)
            return req, rule, served

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": {"message": "bad json"}}, status=400)
        req, rule, served = self._plan(body)
        if rule is not None and rule.delay_s:
            await asyncio.sleep(rule.delay_s)
        if served.error_status:
            return web.json_response(
                {"error": {"message": f"scripted error from rule {rule.name!r}",
                           "type": "server_error", "code": served.error_status}},
                status=served.error_status)
        if req.stream:
            return await self._stream(request, served)
        message: dict[str, Any] = {"role": "assistant", "content": served.text}
        if served.tool_calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                for c in served.tool_calls]
        return web.json_response({
            "id": served.id, "object": "chat.completion", "created": int(time.time()),
            "model": served.model,
            "choices": [{"index": 0, "message": message, "finish_reason": served.finish_reason,
                         "logprobs": None}],
            "usage": served.usage,
        })

    def _pieces(self, text: str) -> list[str]:
        """``text`` cut into up to ``stream_pieces`` chunks (whole words stay whole)."""
        words = re.findall(r"\S+\s*|\s+", text) or [text]
        size = max(1, -(-len(words) // self.stream_pieces))
        return ["".join(words[i:i + size]) for i in range(0, len(words), size)]

    async def _stream(self, request: web.Request, served: ServedResponse) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        created = int(time.time())

        def chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
            data = {"id": served.id, "object": "chat.completion.chunk", "created": created,
                    "model": served.model,
                    "choices": [] if delta is None else [
                        {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
            if usage is not None:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n".encode()

        await resp.write(chunk({"role": "assistant", "content": ""}))
        if served.tool_calls:
            for i, call in enumerate(served.tool_calls):
                args = json.dumps(call["arguments"])
                half = len(args) // 2
                await resp.write(chunk({"tool_calls": [{
                    "index": i, "id": call["id"], "type": "function",
                    "function": {"name": call["name"], "arguments": args[:half]}}]}))
                await resp.write(chunk({"tool_calls": [{
                    "index": i, "function": {"arguments": args[half:]}}]}))
        else:
            for piece in self._pieces(served.text or ""):
                await resp.write(chunk({"content": piece}))
        await resp.write(chunk({}, finish=served.finish_reason))
        await resp.write(chunk(None, usage=served.usage))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
