"""The reference host: config, plugins, pipeline, agent and provider, wired together.

    host = RefHost.from_config_file("data/refhost_config.json")
    await host.start()                       # loads the configured plugins
    reply = await host.handle_text("/weather Paris", user_id="alice")
    await host.stop()

Tracing is attached with :meth:`attach_tracer` (see :mod:`botrace_host_adapter.refhost.tracing`);
without it the host runs exactly the same, with null spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botrace.prompt import request_diff, request_input
from botrace_host_adapter.configfile import JsonConfigFile
from botrace_host_adapter.emitter import SpanEmitter, iterate_in_span
from botrace_host_adapter.refhost.agent import AgentRunner
from botrace_host_adapter.refhost.context import Context, ConversationManager, SessionManager
from botrace_host_adapter.refhost.event import MessageEvent, MessageType
from botrace_host_adapter.refhost.pipeline import PipelineScheduler
from botrace_host_adapter.refhost.providers.base import LLMResponse, Provider, ProviderRequest
from botrace_host_adapter.refhost.providers.openai_compat import OpenAICompatProvider
from botrace_host_adapter.refhost.providers.scripted import ScriptedProvider
from botrace_host_adapter.refhost.star import EventType, StarManager, StarMetadata

if TYPE_CHECKING:
    from botrace.tracer import Tracer

__all__ = ["DEFAULT_CONFIG", "EXAMPLE_PLUGINS", "RefHost", "make_provider"]

log = logging.getLogger("refhost")

#: The example plugins and whether each is builtin (shipped with the host) or third-party.
EXAMPLE_PLUGINS: dict[str, bool] = {
    "botrace_plugins_example.session_controller.main": True,
    "botrace_plugins_example.weather.main": False,
    "botrace_plugins_example.reminder.main": False,
    "botrace_plugins_example.search_agent.main": False,
    "botrace_plugins_example.flaky.main": False,
}

DEFAULT_CONFIG: dict[str, Any] = {
    # botrace reads the trace_* keys; the web page's switch writes trace_enable back here.
    "trace_enable": False,
    "wake_prefix": ["/"],
    "id_whitelist": [],
    "disabled_sessions": [],
    "rate_limit": {"count": 30, "window_s": 60, "strategy": "discard"},
    "content_safety": {"enable": True, "blocked_words": ["forbidden-word"]},
    "reply_prefix": "",
    "reply_split_chars": 0,
    "streaming_response": False,
    "provider": {"type": "scripted", "model": "scripted-1", "latency_ms": 0, "ttft_ms": None,
                 "base_url": "", "api_key": "", "timeout_s": 120},
    "agent": {"max_steps": 6, "tool_timeout_s": 10, "history_messages": 12,
              "system_prompt": "You are a helpful assistant in a group chat. Use tools when useful."},
    "plugins": EXAMPLE_PLUGINS,
}


def make_provider(conf: dict[str, Any]) -> Provider:
    """A provider from the ``provider`` section of the config."""
    kind = conf.get("type", "scripted")
    if kind == "scripted":
        return ScriptedProvider(conf.get("model") or "scripted-1",
                                latency_ms=float(conf.get("latency_ms") or 0),
                                ttft_ms=conf.get("ttft_ms"))
    if kind == "openai":
        if not conf.get("base_url") or not conf.get("model"):
            raise ValueError("provider 'openai' needs base_url and model")
        return OpenAICompatProvider(base_url=conf["base_url"], model=conf["model"],
                                    api_key=conf.get("api_key") or "",
                                    timeout_s=float(conf.get("timeout_s") or 120))
    raise ValueError(f"unknown provider type {kind!r} (scripted or openai)")


class RefHost:
    """A small AstrBot-shaped chatbot host."""

    def __init__(self, config: JsonConfigFile, *, provider: Provider | None = None,
                 data_dir: str | Path | None = None) -> None:
        self.config = config
        self.data_dir = Path(data_dir) if data_dir else (
            config.path.parent if config.path else Path("data"))
        self.emitter = SpanEmitter(None)
        self.tracer: Tracer | None = None
        self.adapter: Any = None
        self.provider = provider or make_provider(config["provider"])
        self.sessions = SessionManager(config["disabled_sessions"])
        self.conversations = ConversationManager(int(config["agent"]["history_messages"]))
        self.context = Context(self)
        self.stars = StarManager(self.context, on_loaded=self._star_loaded,
                                 on_unloaded=self._star_unloaded)
        self.scheduler = PipelineScheduler(self)
        self.messages_handled = 0
        self._plugin_listeners: list[Any] = []

    @classmethod
    def from_config_file(cls, path: str | Path | None, *, llm_provider: Provider | None = None,
                         **overrides: Any) -> RefHost:
        """A host reading (and creating, with defaults) its JSON config file at ``path``;
        ``overrides`` are written to the file, ``llm_provider`` replaces the configured one."""
        cfg = JsonConfigFile(path, defaults=DEFAULT_CONFIG)
        if overrides:
            cfg.update(overrides)
        return cls(cfg, provider=llm_provider)

    # -- settings read live on every message --
    @property
    def streaming(self) -> bool:
        return bool(self.config["streaming_response"])

    @property
    def tool_timeout_s(self) -> float:
        return float(self.config["agent"]["tool_timeout_s"])

    # -- lifecycle --
    async def start(self) -> None:
        for module, builtin in dict(self.config["plugins"]).items():
            try:
                await self.stars.load(module, builtin=bool(builtin))
            except Exception:
                log.exception("could not load plugin %s", module)

    async def stop(self) -> None:
        for meta in list(self.stars.star_map.values()):
            try:
                await self.stars.unload(meta.name)
            except Exception:
                log.exception("could not unload plugin %s", meta.name)
        await self.provider.close()

    def attach_tracer(self, tracer: Tracer | None) -> None:
        """Emit spans to ``tracer`` from the next message on (None: stop emitting)."""
        self.tracer = tracer
        self.emitter.bind(tracer)

    def add_plugin_listener(self, listener: Any) -> None:
        """``listener.plugin_loaded(meta)`` / ``plugin_unloaded(meta)`` on every change, and now
        for the plugins already loaded (the tracing glue keeps attribution in step this way)."""
        self._plugin_listeners.append(listener)
        for meta in self.stars.star_map.values():
            listener.plugin_loaded(meta)

    def _star_loaded(self, meta: StarMetadata) -> None:
        for listener in self._plugin_listeners:
            listener.plugin_loaded(meta)

    def _star_unloaded(self, meta: StarMetadata) -> None:
        for listener in self._plugin_listeners:
            listener.plugin_unloaded(meta)

    # -- messages --
    async def handle_event(self, event: MessageEvent) -> MessageEvent:
        """Run one message through the pipeline (inside its trace); replies land in ``event.replies``."""
        async with self.emitter.message(event) as root:
            if root:
                event.extras["trace_id"] = root.trace_id
            await self.scheduler.execute(event)
            if root:
                root.set_output(replies=event.replies)
        self.messages_handled += 1
        return event

    async def handle_text(self, text: str, user_id: str = "webchat", session: str | None = None,
                          *, message_type: str = "private", platform: str = "webchat",
                          sender_name: str | None = None) -> str:
        """Send one chat message to the host and return its reply (replies joined by newlines).

        This is what a chat box (the web page's demo chat) calls.
        """
        event = MessageEvent.create(text, user_id=user_id, session_id=session or user_id,
                                    message_type=message_type, platform=platform,
                                    sender_name=sender_name)
        await self.handle_event(event)
        return "\n".join(event.replies)

    # -- the agent --
    def _runner(self, event: MessageEvent, stream: bool) -> tuple[AgentRunner, ProviderRequest]:
        conf = self.config["agent"]
        runner = AgentRunner(self, event, tools=self.stars.tools(None), handoffs=self.stars.agents(),
                             max_steps=int(conf["max_steps"]), stream=stream)
        req = ProviderRequest(prompt=event.message_str, system_prompt=conf["system_prompt"],
                              contexts=self.conversations.history(event.umo),
                              session_id=event.umo)
        return runner, req

    async def agent_reply(self, event: MessageEvent) -> Any:
        """Run the main agent to its answer and return it as a result (non-streaming mode)."""
        runner, req = self._runner(event, stream=False)
        await self.call_event_hooks(event, EventType.OnLLMRequestEvent, req)
        resp = await runner.run(req)
        await self.call_event_hooks(event, EventType.OnLLMResponseEvent, resp)
        self._remember(event, req, resp)
        result = event.plain_result(resp.completion_text)
        result.is_llm_result = True
        return result

    async def agent_stream(self, event: MessageEvent) -> AsyncIterator[str]:
        """Streaming mode: text chunks as the model produces them (consumed by Respond)."""
        runner, req = self._runner(event, stream=True)
        await self.call_event_hooks(event, EventType.OnLLMRequestEvent, req)
        final = LLMResponse()
        async for resp in runner.iter_run(req):
            if resp.is_chunk:
                yield resp.completion_text
            else:
                final = resp
        await self.call_event_hooks(event, EventType.OnLLMResponseEvent, final)
        self._remember(event, req, final)

    def _remember(self, event: MessageEvent, req: ProviderRequest, resp: LLMResponse) -> None:
        self.conversations.append(event.umo, "user", req.prompt)
        if resp.completion_text:
            self.conversations.append(event.umo, "assistant", resp.completion_text)

    async def call_llm(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                       purpose: str = "chat", model: str | None = None) -> LLMResponse:
        """One non-streaming LLM call inside its ``llm_call`` span."""
        final = LLMResponse()
        async for resp in self.call_llm_stream(messages, tools, purpose=purpose, model=model):
            final = resp
        return final

    async def call_llm_stream(self, messages: list[dict[str, Any]],
                              tools: list[dict[str, Any]] | None, *, purpose: str,
                              model: str | None = None, stream: bool = False,
                              ) -> AsyncIterator[LLMResponse]:
        """One LLM call inside its ``llm_call`` span: chunks (when streaming), then the response."""
        provider = self.provider
        model = model or provider.get_model()
        span = self.emitter.llm_call(model, provider=provider.provider_id, purpose=purpose,
                                     stream=stream)
        if span:  # the whole request, bounded (botrace.prompt): system prompt, history, tools
            span.set_input(request_input(messages, tools))
        if not stream:
            with span:
                resp = await provider.text_chat(messages, tools, model)
                if span:
                    _record_llm(span, resp, tools, None)
            yield resp
            return
        chunks = iterate_in_span(span, self._stream_llm(span, provider, messages, tools, model))
        async with contextlib.aclosing(chunks):  # a consumer leaving early ends the span now
            async for resp in chunks:
                yield resp

    @staticmethod
    async def _stream_llm(span: Any, provider: Provider, messages: list[dict[str, Any]],
                          tools: list[dict[str, Any]] | None, model: str,
                          ) -> AsyncIterator[LLMResponse]:
        started = time.perf_counter()
        first: float | None = None
        resp = None
        async for resp in provider.text_chat_stream(messages, tools, model):
            if resp.is_chunk:
                if first is None:
                    first = time.perf_counter()
                    span.add_event("first_token")
                yield resp
        if resp is None:
            raise RuntimeError("the provider's stream ended without a response")
        if span:
            _record_llm(span, resp, tools, None if first is None else (first - started) * 1000)
        yield resp

    async def call_event_hooks(self, event: MessageEvent, event_type: EventType, *args: Any) -> None:
        """Run the plugins' hooks of one kind, each in its ``plugin_call`` span; a failing hook
        is logged and recorded, never breaks the message."""
        handlers = self.stars.handlers(event_type)
        if not handlers:
            return
        emit = self.emitter
        req = args[0] if event_type is EventType.OnLLMRequestEvent and args else None
        for h in handlers:
            with emit.handler(h.display_name, module_path=h.handler_module_path,
                              event_type=event_type.value) as span:
                before = _request_snapshot(req) if req is not None and span else None
                try:
                    await h.handler(event, *args)
                except Exception as exc:
                    span.set_error(exc)
                    log.warning("plugin %s hook %s failed: %r", h.plugin_name, h.handler_name, exc)
                if before is not None:
                    _record_request_change(span, before, _request_snapshot(req))

    # -- convenience for drivers and tests --
    async def send(self, text: str, *, user_id: str = "alice", session: str | None = None,
                   group: bool = False, platform: str = "demo") -> MessageEvent:
        event = MessageEvent.create(text, user_id=user_id, session_id=session or user_id,
                                    message_type=MessageType.GROUP if group else MessageType.PRIVATE,
                                    platform=platform)
        return await self.handle_event(event)

    async def gather(self, *events: MessageEvent) -> list[MessageEvent]:
        return list(await asyncio.gather(*(self.handle_event(e) for e in events)))


def _request_snapshot(req: ProviderRequest) -> dict[str, Any]:
    """What an ``on_llm_request`` hook may change (the history as a shallow copy: the
    messages themselves are not copied)."""
    return {"prompt": req.prompt, "system_prompt": req.system_prompt,
            "contexts": list(req.contexts), "model": req.model}


def _record_request_change(span: Any, before: dict[str, Any], after: dict[str, Any]) -> None:
    """On a hook's span: what it added to the request (botrace.prompt.request_diff)."""
    diff = request_diff(before, after)
    if after["model"] != before["model"]:
        diff = {**(diff or {}), "model": after["model"]}
    if diff:
        span.set_meta(changed=[k for k in ("prompt", "system_prompt", "contexts", "model")
                               if before[k] != after[k]],
                      tokens_added_est=diff.get("tokens_added_est", 0))
        span.set_output(request_added=diff)


def _record_llm(span: Any, resp: LLMResponse, tools: list[dict[str, Any]] | None,
                ttft_ms: float | None) -> None:
    """Usage, finish reason and answer of one LLM call, in one call per attribute map."""
    meta: dict[str, Any] = {"finish_reason": resp.finish_reason, "tool_count": len(tools or ()),
                            "served_model": resp.model}
    usage = resp.usage
    if usage is not None:
        meta.update(input_tokens=usage.input, output_tokens=usage.output,
                    cached_tokens=usage.input_cached, cache_hit=usage.input_cached > 0)
    if ttft_ms is not None:
        meta["ttft_ms"] = round(ttft_ms, 3)
    span.set_meta(meta)
    if resp.tool_calls:
        span.set_output(text=resp.completion_text,
                        tool_calls=[{"name": c.name, "arguments": c.arguments} for c in resp.tool_calls])
    else:
        span.set_output(text=resp.completion_text)
