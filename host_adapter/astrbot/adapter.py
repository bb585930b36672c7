"""botrace for a real AstrBot 4.14.6, by wrapping the functions a message goes through.

AstrBot's own plugin hooks miss the root, the stages, the handlers, each LLM
call and everything inside a subagent, so this adapter wraps (and can
unwrap) the functions ``../shared/ASTRBOT.md`` lists:

=====================================================================  ==================
``core.pipeline.scheduler.PipelineScheduler.execute``                  ``message`` (root)
each stage's ``process`` in ``core.pipeline.stage.registered_stages``  ``pipeline_stage``
``call_handler`` as imported by ``...process_stage.method.star_request``  ``plugin_call``
``core.pipeline.context_utils.call_event_hook`` (stays ``async def``)  ``plugin_call``
``ToolLoopAgentRunner._iter_llm_responses``                            ``llm_call``
``FunctionToolExecutor.execute`` (``transfer_to_*``: a handoff)        ``tool_call`` / ``subagent_call``
=====================================================================  ==================

Importing this module does not import AstrBot; :meth:`AstrBotAdapter.install`
does, and returns an undo function::

    from botrace_host_adapter.astrbot import AstrBotAdapter

    adapter = AstrBotAdapter(config=lifecycle.astrbot_config)   # cmd_config.json's object
    tracer = Tracer.from_host(adapter)                           # trace_enable from AstrBot's config
    await tracer.start()
    undo = adapter.install(tracer)

Plugins resolve through AstrBot's ``star_map`` (module path → ``StarMetadata``;
``reserved`` plugins are builtin). A flip of ``trace_enable`` from the Trace page
is written back into AstrBot's config object and saved (``save_config()``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from botrace_host_adapter.emitter import SpanEmitter, iterate_in_span
from botrace_host_adapter.hooks import HostHooks

from botrace.attribution import BUILTIN, THIRD_PARTY, PluginRef
from botrace.hookspecs import hookimpl

if TYPE_CHECKING:
    from botrace.config import Settings
    from botrace.tracer import Tracer

__all__ = ["AstrBotAdapter", "describe_astrbot_event"]

log = logging.getLogger("botrace_host_adapter.astrbot")

_SCHEDULER = "astrbot.core.pipeline.scheduler"
_STAGES = "astrbot.core.pipeline.stage"
_STAR_REQUEST = "astrbot.core.pipeline.process_stage.method.star_request"
_CONTEXT_UTILS = "astrbot.core.pipeline.context_utils"
_RUNNER = "astrbot.core.agent.runners.tool_loop_agent_runner"
_TOOL_EXEC = "astrbot.core.astr_agent_tool_exec"
_STAR = "astrbot.core.star.star"


def describe_astrbot_event(event: Any) -> Mapping[str, Any] | None:
    """Root attributes of an ``AstrMessageEvent`` (None for anything else)."""
    umo = getattr(event, "unified_msg_origin", None)
    if umo is None:
        return None
    out: dict[str, Any] = {"umo": umo, "agent_type": "astrbot"}
    for key, getter in (("sender", "get_sender_name"), ("user_id", "get_sender_id"),
                        ("platform", "get_platform_name")):
        fn = getattr(event, getter, None)
        if callable(fn):
            try:
                out[key] = fn()
            except Exception:  # a platform's getter failing must not lose the trace
                log.debug("AstrMessageEvent.%s failed", getter, exc_info=True)
    session = getattr(event, "session_id", None)
    if session is not None:
        out["session_id"] = session
    text = getattr(event, "message_str", None)
    if isinstance(text, str):
        out["outline"] = text
    return out


class AstrBotAdapter(HostHooks):
    """Host hooks for AstrBot plus :meth:`install` / uninstall of the wrappers."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(describe_event=describe_astrbot_event, resolve_plugin=self._resolve)
        #: AstrBot's config object (an ``AstrBotConfig``, a dict with ``save_config()``).
        self.astrbot_config = config
        self._undo: list[Callable[[], None]] = []

    # -- host hooks --
    @hookimpl
    def botrace_load_settings(self) -> Mapping[str, Any] | None:
        cfg = self.astrbot_config
        return None if cfg is None else {k: v for k, v in dict(cfg).items() if k.startswith("trace_")}

    @hookimpl
    def botrace_settings_changed(self, settings: Settings, changes: Mapping[str, Any]) -> None:
        cfg = self.astrbot_config
        if cfg is None:
            return
        for key, value in changes.items():
            if key.startswith("trace_"):
                cfg[key] = list(value) if isinstance(value, tuple) else value
        save = getattr(cfg, "save_config", None)
        if callable(save):
            save()

    @staticmethod
    def _resolve(module_path: str) -> PluginRef | None:
        try:
            star_map = importlib.import_module(_STAR).star_map
        except (ImportError, AttributeError):
            return None
        best, best_len = None, -1
        for key, meta in list(star_map.items()):
            # keys are "data.plugins.x.main"; tools carry "data.plugins.x"
            for prefix in (key, key.rpartition(".")[0] if key.endswith(".main") else key):
                if (module_path == prefix or module_path.startswith(prefix + ".")) and len(prefix) > best_len:
                    best, best_len = meta, len(prefix)
        if best is None:
            return None
        return PluginRef(getattr(best, "name", module_path),
                         getattr(best, "display_name", None) or getattr(best, "name", ""),
                         BUILTIN if getattr(best, "reserved", False) else THIRD_PARTY,
                         str(getattr(best, "version", "") or ""))

    # -- wrapping --
    def install(self, tracer: Tracer) -> Callable[[], None]:
        """Wrap AstrBot's functions so they emit spans to ``tracer``; returns the undo."""
        if self._undo:
            raise RuntimeError("already installed")
        emit = SpanEmitter(tracer)
        try:
            self._wrap_scheduler(emit)
            self._wrap_stages(emit)
            self._wrap_handlers(emit)
            self._wrap_event_hooks(emit)
            self._wrap_llm(emit)
            self._wrap_tools(emit)
        except BaseException:
            self.uninstall()
            raise
        return self.uninstall

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def _patch(self, owner: Any, name: str, new: Any) -> None:
        own = vars(owner)
        had, old = name in own, own.get(name)
        setattr(owner, name, new)

        def undo() -> None:
            if had:
                setattr(owner, name, old)
            else:  # an instance attribute we added over the class's method
                delattr(owner, name)

        self._undo.append(undo)

    def _patch_function(self, module: Any, name: str, new: Any) -> None:
        """Replace a module function, and every ``from module import name`` copy of it
        in AstrBot's already imported modules (AstrBot imports these by name)."""
        original = getattr(module, name)
        for other in list(sys.modules.values()):
            if other is None or other is module:
                continue
            if getattr(other, "__name__", "").startswith("astrbot") and \
                    getattr(other, name, None) is original:
                self._patch(other, name, new)
        self._patch(module, name, new)

    def _wrap_scheduler(self, emit: SpanEmitter) -> None:
        cls = importlib.import_module(_SCHEDULER).PipelineScheduler
        original = cls.execute

        @functools.wraps(original)
        async def execute(self: Any, event: Any, *args: Any, **kwargs: Any) -> Any:
            async with emit.message(event):
                return await original(self, event, *args, **kwargs)

        self._patch(cls, "execute", execute)

    def _wrap_stages(self, emit: SpanEmitter) -> None:
        for stage in importlib.import_module(_STAGES).registered_stages:
            name = type(stage).__name__.removesuffix("Stage") or type(stage).__name__
            self._patch(stage, "process", _stage_wrapper(emit, name, stage.process))

    def _wrap_handlers(self, emit: SpanEmitter) -> None:
        module = importlib.import_module(_STAR_REQUEST)
        original = module.call_handler

        def call_handler(event: Any, handler: Any, *args: Any, **kwargs: Any) -> Any:
            target = handler
            while isinstance(target, functools.partial):
                target = target.func
            target = getattr(target, "__func__", target)
            span = emit.handler(getattr(target, "__qualname__", repr(target)),
                                module_path=getattr(target, "__module__", None),
                                event_type="AdapterMessageEvent")
            return iterate_in_span(span, original(event, handler, *args, **kwargs))

        self._patch_function(module, "call_handler", call_handler)

    def _wrap_event_hooks(self, emit: SpanEmitter) -> None:
        module = importlib.import_module(_CONTEXT_UTILS)
        original = module.call_event_hook

        @functools.wraps(original)
        async def call_event_hook(event: Any, hook_type: Any, *args: Any, **kwargs: Any) -> Any:
            kind = getattr(hook_type, "name", str(hook_type))
            with emit.handler(f"hooks {kind}", event_type=kind):
                return await original(event, hook_type, *args, **kwargs)

        self._patch_function(module, "call_event_hook", call_event_hook)

    def _wrap_llm(self, emit: SpanEmitter) -> None:
        cls = importlib.import_module(_RUNNER).ToolLoopAgentRunner
        original = cls._iter_llm_responses

        def _iter_llm_responses(self: Any, *args: Any, **kwargs: Any) -> Any:
            req, provider = getattr(self, "req", None), getattr(self, "provider", None)
            model = getattr(req, "model", None)
            if not model and provider is not None and hasattr(provider, "get_model"):
                model = provider.get_model()
            provider_id = (getattr(provider, "provider_config", None) or {}).get("id")
            stream = bool(getattr(self, "streaming", False))
            span = emit.llm_call(model, provider=provider_id, purpose="agent", stream=stream)
            return iterate_in_span(span, _record_llm(span, original(self, *args, **kwargs)))

        self._patch(cls, "_iter_llm_responses", _iter_llm_responses)

    def _wrap_tools(self, emit: SpanEmitter) -> None:
        cls = importlib.import_module(_TOOL_EXEC).FunctionToolExecutor
        original = cls.__dict__["execute"].__func__

        def execute(klass: Any, tool: Any, run_context: Any, **tool_args: Any) -> Any:
            name = getattr(tool, "name", "tool")
            agent = getattr(tool, "agent", None)
            if agent is not None and name.startswith("transfer_to_"):
                span = emit.subagent(getattr(agent, "name", name[len("transfer_to_"):]),
                                     task=tool_args.get("input"))
            else:
                span = emit.tool_call(name, module_path=getattr(tool, "handler_module_path", None),
                                      arguments=tool_args,
                                      mcp_server=getattr(tool, "mcp_server_name", None))
            return iterate_in_span(span, original(klass, tool, run_context, **tool_args))

        self._patch(cls, "execute", classmethod(execute))


def _stage_wrapper(emit: SpanEmitter, name: str, process: Callable[..., Any]) -> Callable[..., Any]:
    """A stage's ``process`` inside its span; a generator stage keeps its span open (and
    current) across its yields, so the stages run there nest inside it — the onion."""

    @functools.wraps(process)
    def wrapped(event: Any, *args: Any, **kwargs: Any) -> Any:
        ret = process(event, *args, **kwargs)
        if inspect.isasyncgen(ret):
            return _onion(emit.stage(name, event), ret)
        if inspect.isawaitable(ret):
            return _awaited(emit.stage(name, event), ret)
        return ret

    return wrapped


async def _onion(span: Any, agen: Any) -> Any:
    with span:
        async for item in agen:
            yield item


async def _awaited(span: Any, coro: Any) -> Any:
    with span:
        return await coro


async def _record_llm(span: Any, agen: Any) -> Any:
    """Pass responses through; note time to first chunk and the final response's usage."""
    started = time.perf_counter()
    first = None
    last = None
    async for resp in agen:
        if getattr(resp, "is_chunk", False):
            if first is None:
                first = time.perf_counter()
        else:
            last = resp
        yield resp
    if not span or last is None:
        return
    meta: dict[str, Any] = {}
    usage = getattr(last, "usage", None)
    if usage is not None:
        cached = int(getattr(usage, "input_cached", 0) or 0)
        meta.update(input_tokens=int(getattr(usage, "input", 0) or 0) or
                    int(getattr(usage, "input_other", 0) or 0) + cached,
                    output_tokens=int(getattr(usage, "output", 0) or 0),
                    cached_tokens=cached, cache_hit=cached > 0)
    if first is not None:
        meta["ttft_ms"] = round((first - started) * 1000, 3)
    if meta:
        span.set_meta(meta)
    text = getattr(last, "completion_text", None)
    calls = getattr(last, "tools_call_name", None)
    if text or calls:
        span.set_output(text=text, tool_calls=list(calls or ()))
