"""botrace inside a real AstrBot, by wrapping the functions a message goes through.

AstrBot's own plugin hooks miss the root, the stages, the handlers, each LLM
call and everything inside a subagent, so this adapter wraps (and unwraps)
AstrBot's functions. Each wrap is a *target*; a target that is missing or has
changed shape in the running AstrBot release is skipped, logged once and
reported in health (``unavailable``), and the rest still trace:

=================  ==========================================================================
target             what is wrapped → span
=================  ==========================================================================
``message``        ``PipelineScheduler.execute`` → the root ``message`` span
``stages``         ``process`` of every ``Stage`` subclass, sub-stages included
                   (``StarRequest``, ``AgentRequest``, ``InternalAgent``) → ``pipeline_stage``
``handlers``       ``call_handler`` (and every ``from … import call_handler`` copy) →
                   ``plugin_call`` per message handler, credited to its plugin
``event_hooks``    ``StarHandlerRegistry.get_handlers_by_event_type``: while a trace is open
                   the event hooks it returns (``on_llm_request``, ``on_decorating_result``,
                   …) run inside a ``plugin_call`` span each, credited to their plugin, with
                   what they did (stopped the event, changed the request or the result)
``llm``            ``ToolLoopAgentRunner._iter_llm_responses`` → ``llm_call`` per request,
                   ended when the final response passes (AstrBot stops reading there)
``llm_generate``   ``Context.llm_generate`` (a plugin calling a model directly) → ``llm_call``
``tools``          ``FunctionToolExecutor.execute`` → ``tool_call`` (owner, arguments, call
                   id, result) or, for ``transfer_to_*``, ``subagent_call``
=================  ==========================================================================

Importing this module does not import AstrBot; :meth:`AstrBotAdapter.install`
does, and returns an undo function::

    adapter = AstrBotAdapter(config=context.get_config(), settings={"trace_db_path": ...})
    tracer = Tracer.from_host(adapter)       # trace_enable from AstrBot's own config
    await tracer.start()
    undo = adapter.install(tracer)

``trace_enable`` stays AstrBot's own key (its dashboard's Trace switch writes
it): :meth:`AstrBotAdapter.follow_switch` applies it to the tracer, and a flip
on botrace's page is written back to AstrBot's config. Every other botrace
setting comes from ``settings`` (the botrace plugin's own config), never from
AstrBot's config file, whose integrity check deletes keys it does not know and
whose ``trace_log_*`` keys mean AstrBot's own flat trace log.
"""

from __future__ import annotations

import collections
import functools
import importlib
import inspect
import logging
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from botrace.attribution import BUILTIN, THIRD_PARTY, PluginRef
from botrace.context import current_span_var
from botrace.hookspecs import hookimpl
from botrace_host_adapter.astrbot import recording
from botrace_host_adapter.emitter import SpanEmitter, iterate_in_span, reset_current
from botrace_host_adapter.hooks import HostHooks

if TYPE_CHECKING:
    from botrace.config import Settings
    from botrace.tracer import Tracer

__all__ = ["TARGETS", "AstrBotAdapter", "describe_astrbot_event"]

log = logging.getLogger("botrace.astrbot")

_SCHEDULER = "astrbot.core.pipeline.scheduler"
_STAGE = "astrbot.core.pipeline.stage"
_CONTEXT_UTILS = "astrbot.core.pipeline.context_utils"
_STAR_HANDLER = "astrbot.core.star.star_handler"
_RUNNER = "astrbot.core.agent.runners.tool_loop_agent_runner"
_TOOL_EXEC = "astrbot.core.astr_agent_tool_exec"
_CONTEXT = "astrbot.core.star.context"
_STAR = "astrbot.core.star.star"

#: target -> the span kind it provides (what health says is missing when it cannot be wrapped)
TARGETS = {
    "message": "message",
    "stages": "pipeline_stage",
    "handlers": "plugin_call (message handlers)",
    "event_hooks": "plugin_call (event hooks)",
    "llm": "llm_call (agent)",
    "llm_generate": "llm_call (Context.llm_generate)",
    "tools": "tool_call / subagent_call",
}

#: Event types whose handlers are not hooks: message handlers (traced through
#: call_handler) and start-up events (no message, so no trace).
_NOT_HOOKS = frozenset({"AdapterMessageEvent", "OnAstrBotLoadedEvent", "OnPlatformLoadedEvent"})


class TargetChanged(Exception):
    """A wrapped function exists but no longer has the shape the wrapper relies on."""


def describe_astrbot_event(event: Any) -> Mapping[str, Any] | None:
    """Root attributes of an ``AstrMessageEvent`` (None for anything else).

    ``astrbot_span_id`` is the id of AstrBot's own flat trace of the message
    (``event.trace``), so its dashboard's Trace log and botrace's tree can be matched.
    """
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
    own = getattr(getattr(event, "trace", None), "span_id", None)
    if own is not None:
        out["astrbot_span_id"] = str(own)
    return out


class AstrBotAdapter(HostHooks):
    """Host hooks for AstrBot plus :meth:`install` / :meth:`uninstall` of the wrappers.

    ``config`` is AstrBot's config object (``context.get_config()``, a dict with
    ``save_config()``), which holds ``trace_enable``. ``settings`` are botrace's
    other settings, by their ``trace_*`` names (the botrace plugin maps its own
    config to them).
    """

    def __init__(self, config: Any = None, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(describe_event=describe_astrbot_event, resolve_plugin=resolve_star)
        self.astrbot_config = config
        self.settings = dict(settings or {})
        self.settings.pop("trace_enable", None)  # AstrBot's key, read from its config
        #: target -> why it could not be wrapped in this AstrBot
        self.unavailable: dict[str, str] = {}
        self.installed: list[str] = []
        self._undo: list[Callable[[], None]] = []
        self._tracer: Tracer | None = None
        self._stage_classes: set[type] = set()
        self._schedulers: weakref.WeakSet[Any] = weakref.WeakSet()
        #: id(run_context) -> (tool name, call id) of the tool calls its last LLM response made
        self._tool_calls: dict[int, collections.deque[tuple[str, str]]] = {}

    # -- host hooks ----------------------------------------------------------------

    @hookimpl
    def botrace_load_settings(self) -> Mapping[str, Any] | None:
        return {**self.settings, "trace_enable": self._astrbot_enable()}

    @hookimpl
    def botrace_settings_changed(self, settings: Settings, changes: Mapping[str, Any]) -> None:
        """A flip on botrace's page goes into AstrBot's config (and its file), so AstrBot's
        dashboard switch shows it; other settings stay in botrace's own config."""
        cfg = self.astrbot_config
        if "trace_enable" in changes and cfg is not None:
            value = bool(changes["trace_enable"])
            if self._astrbot_enable() != value:
                cfg["trace_enable"] = value
                save = getattr(cfg, "save_config", None)
                if callable(save):
                    save()
        for key, value in changes.items():
            if key != "trace_enable":
                self.settings[key] = list(value) if isinstance(value, tuple) else value

    @hookimpl
    def botrace_health(self, tracer: Tracer) -> Mapping[str, Any] | None:
        if tracer is not self._tracer:
            return None
        return {"name": "astrbot adapter", "astrbot_version": astrbot_version(),
                "state": "degraded" if self.unavailable else "ok",
                "wrapped": list(self.installed),
                "unavailable": {TARGETS.get(k, k): v for k, v in self.unavailable.items()}}

    def _astrbot_enable(self) -> bool:
        cfg = self.astrbot_config
        if cfg is None:
            return False
        try:
            return bool(cfg.get("trace_enable", False))
        except Exception:
            return False

    def follow_switch(self) -> bool:
        """Apply AstrBot's ``trace_enable`` (its dashboard's switch) to the tracer if it
        changed; returns whether tracing is on. Called at every message and by a poller."""
        tracer = self._tracer
        value = self._astrbot_enable()
        if tracer is not None and tracer.enabled != value:
            tracer.set_enabled(value)
            log.info("botrace: tracing %s (AstrBot's trace_enable)", "on" if value else "off")
        return value

    # -- installing ------------------------------------------------------------------

    def install(self, tracer: Tracer) -> Callable[[], None]:
        """Wrap AstrBot's functions so they emit spans to ``tracer``; returns the undo.

        A target that cannot be wrapped is skipped and reported (``unavailable``);
        an unexpected error undoes everything already wrapped and is raised.
        """
        if self._undo or self.installed:
            raise RuntimeError("already installed")
        self._tracer = tracer
        emit = SpanEmitter(tracer)
        wraps = {
            "message": self._wrap_scheduler, "stages": self._wrap_stages,
            "handlers": self._wrap_handlers, "event_hooks": self._wrap_event_hooks,
            "llm": self._wrap_llm, "llm_generate": self._wrap_llm_generate,
            "tools": self._wrap_tools,
        }
        try:
            for target, wrap in wraps.items():
                try:
                    wrap(emit)
                except (ImportError, AttributeError, TargetChanged) as exc:
                    self.unavailable[target] = f"{type(exc).__name__}: {exc}"
                    log.warning("botrace: AstrBot %s: cannot trace %s (%s); tracing the rest",
                                astrbot_version(), TARGETS[target], exc)
                else:
                    self.installed.append(target)
        except BaseException:
            self.uninstall()
            raise
        return self.uninstall

    def uninstall(self) -> None:
        """Put back every function and attribute :meth:`install` replaced (idempotent)."""
        while self._undo:
            self._undo.pop()()
        self.installed.clear()
        self.unavailable.clear()
        self._stage_classes.clear()
        self._tool_calls.clear()
        self._tracer = None

    @property
    def patched(self) -> int:
        """How many objects are replaced right now (0 after :meth:`uninstall`)."""
        return len(self._undo)

    def _patch(self, owner: Any, name: str, new: Any) -> None:
        own = vars(owner)
        had, old = name in own, own.get(name)
        setattr(owner, name, new)

        def undo() -> None:
            if had:
                setattr(owner, name, old)
            else:  # an attribute we added over an inherited one
                delattr(owner, name)

        self._undo.append(undo)

    def _patch_function(self, module: Any, name: str, new: Any) -> None:
        """Replace a module function, and every ``from module import name`` copy of it in
        AstrBot's already imported modules (AstrBot imports these by name).

        A module imported later copies the wrapper (AstrBot 4.2x imports its stage modules
        after the plugins load): the undo looks for such copies too and puts the original back.
        """
        original = getattr(module, name)

        def late_copies() -> None:
            for other in _astrbot_modules():
                if vars(other).get(name) is new:
                    setattr(other, name, original)

        self._undo.append(late_copies)
        for other in _astrbot_modules():
            if other is not module and vars(other).get(name) is original:
                self._patch(other, name, new)
        self._patch(module, name, new)

    # -- message and stages ------------------------------------------------------------

    def _wrap_scheduler(self, emit: SpanEmitter) -> None:
        cls = importlib.import_module(_SCHEDULER).PipelineScheduler
        original = _require(cls, "execute", inspect.iscoroutinefunction)
        adapter = self

        @functools.wraps(original)
        async def execute(self: Any, event: Any, *args: Any, **kwargs: Any) -> Any:
            adapter.follow_switch()
            if self not in adapter._schedulers:
                adapter._see_scheduler(self, emit)
            span = emit.message(event)
            if not span:
                return await original(self, event, *args, **kwargs)
            async with span:
                try:
                    return await original(self, event, *args, **kwargs)
                finally:
                    _record_outcome(span, event)

        self._patch(cls, "execute", execute)

    def _see_scheduler(self, scheduler: Any, emit: SpanEmitter) -> None:
        # AstrBot 4.2x imports its stage modules when the first scheduler is made, after
        # the plugins loaded: wrap the stage classes that exist now.
        self._schedulers.add(scheduler)
        if "stages" in self.installed:
            try:
                self._wrap_stage_classes(emit)
            except Exception:
                log.warning("botrace: could not wrap AstrBot's new stage classes", exc_info=True)

    def _wrap_stages(self, emit: SpanEmitter) -> None:
        base = importlib.import_module(_STAGE).Stage
        if not isinstance(base, type):
            raise TargetChanged("astrbot.core.pipeline.stage.Stage is not a class")
        self._wrap_stage_classes(emit)

    def _wrap_stage_classes(self, emit: SpanEmitter) -> None:
        base = importlib.import_module(_STAGE).Stage
        todo = list(base.__subclasses__())
        while todo:
            cls = todo.pop()
            todo.extend(cls.__subclasses__())
            process = vars(cls).get("process")
            if cls in self._stage_classes or not callable(process):
                continue
            self._stage_classes.add(cls)
            self._patch(cls, "process", _stage_wrapper(emit, stage_name(cls), process))

    # -- plugin handlers and event hooks ---------------------------------------------

    def _wrap_handlers(self, emit: SpanEmitter) -> None:
        module = importlib.import_module(_CONTEXT_UTILS)
        original = _require(module, "call_handler", inspect.isasyncgenfunction)

        def call_handler(event: Any, handler: Any, *args: Any, **kwargs: Any) -> Any:
            if current_span_var.get() is None:
                return original(event, handler, *args, **kwargs)
            target = _unwrap(handler)
            meta = _handler_metadata(event, handler)
            span = emit.handler(getattr(target, "__qualname__", None) or repr(target),
                                module_path=getattr(meta, "handler_module_path", None)
                                or getattr(target, "__module__", None),
                                event_type="message")
            if span and meta is not None:
                span.set_meta(_describe_handler(meta))
            return iterate_in_span(span, original(event, handler, *args, **kwargs))

        self._patch_function(module, "call_handler", call_handler)

    def _wrap_event_hooks(self, emit: SpanEmitter) -> None:
        module = importlib.import_module(_STAR_HANDLER)
        cls = module.StarHandlerRegistry
        original = _require(cls, "get_handlers_by_event_type", callable)
        replace = _dataclass_replace(module.StarHandlerMetadata)

        @functools.wraps(original)
        def get_handlers_by_event_type(self: Any, event_type: Any, *args: Any, **kwargs: Any) -> Any:
            handlers = original(self, event_type, *args, **kwargs)
            if not handlers or current_span_var.get() is None or \
                    getattr(event_type, "name", None) in _NOT_HOOKS:
                return handlers
            return [replace(h, handler=_traced_hook(emit, h, event_type)) for h in handlers]

        self._patch(cls, "get_handlers_by_event_type", get_handlers_by_event_type)

    # -- LLM calls, tools, subagents ------------------------------------------------------

    def _wrap_llm(self, emit: SpanEmitter) -> None:
        cls = importlib.import_module(_RUNNER).ToolLoopAgentRunner
        original = _require(cls, "_iter_llm_responses", inspect.isasyncgenfunction)
        adapter = self

        @functools.wraps(original)
        def _iter_llm_responses(self: Any, *args: Any, **kwargs: Any) -> Any:
            responses = original(self, *args, **kwargs)
            if current_span_var.get() is None:
                return responses
            provider = getattr(self, "provider", None)
            req = getattr(self, "req", None)
            model = (kwargs.get("include_model", True) and getattr(req, "model", None)) or \
                _provider_model(provider)
            span = emit.llm_call(model, provider=_provider_id(provider), purpose="agent",
                                 stream=bool(getattr(self, "streaming", False)))
            if not span:
                return responses
            run_context = getattr(self, "run_context", None)
            # the whole request (botrace.prompt): what the provider is sent
            values = recording.request_values(getattr(run_context, "messages", None),
                                              _tool_names(getattr(req, "func_tool", None)),
                                              image_urls=getattr(req, "image_urls", None))
            if values is not None:
                span.set_input(values)
            return _llm_responses(span, responses, adapter._note_tool_calls(run_context))

        self._patch(cls, "_iter_llm_responses", _iter_llm_responses)

    def _note_tool_calls(self, run_context: Any) -> Callable[[Any], None]:
        """A callback that remembers the call ids of a final response's tool calls, for the
        tool spans that follow (AstrBot passes a tool its arguments but not its call id)."""
        key = id(run_context)
        calls = self._tool_calls

        def note(resp: Any) -> None:
            names = getattr(resp, "tools_call_name", None) or ()
            ids = getattr(resp, "tools_call_ids", None) or ()
            if not names or run_context is None:
                return
            if key not in calls:
                try:
                    weakref.finalize(run_context, calls.pop, key, None)
                except TypeError:  # not weak-referenceable: keep no ids for it
                    return
            calls[key] = collections.deque(zip(names, ids, strict=False))

        return note

    def _take_tool_call_id(self, run_context: Any, name: str) -> str | None:
        pending = self._tool_calls.get(id(run_context))
        if not pending:
            return None
        for i, (tool, call_id) in enumerate(pending):
            if tool == name:
                del pending[i]
                return call_id
        return None

    def _wrap_llm_generate(self, emit: SpanEmitter) -> None:
        cls = importlib.import_module(_CONTEXT).Context
        original = _require(cls, "llm_generate", inspect.iscoroutinefunction)

        @functools.wraps(original)
        async def llm_generate(self: Any, *args: Any, **kwargs: Any) -> Any:
            if current_span_var.get() is None:
                return await original(self, *args, **kwargs)
            provider_id = kwargs.get("chat_provider_id")
            model = kwargs.get("model") or _provider_model(_lookup_provider(self, provider_id))
            span = emit.llm_call(model, provider=provider_id, purpose="plugin", stream=False)
            if not span:
                return await original(self, *args, **kwargs)
            system, prompt = kwargs.get("system_prompt"), kwargs.get("prompt")
            contexts = kwargs.get("contexts")
            messages = [*([{"role": "system", "content": system}] if system else []),
                        *(contexts if isinstance(contexts, list) else []),
                        *([{"role": "user", "content": prompt}] if prompt is not None else [])]
            span.set_input(recording.request_values(messages, _tool_names(kwargs.get("tools")),
                                                    image_urls=kwargs.get("image_urls")))
            with span:
                resp = await original(self, *args, **kwargs)
                _record_llm_response(span, resp, None)
                return resp

        self._patch(cls, "llm_generate", llm_generate)

    def _wrap_tools(self, emit: SpanEmitter) -> None:
        cls = importlib.import_module(_TOOL_EXEC).FunctionToolExecutor
        raw = vars(cls).get("execute")
        if not isinstance(raw, classmethod) or not inspect.isasyncgenfunction(raw.__func__):
            raise TargetChanged("FunctionToolExecutor.execute is no longer a classmethod "
                                "async generator")
        original = raw.__func__
        adapter = self

        @functools.wraps(original)
        def execute(klass: Any, tool: Any, run_context: Any, **tool_args: Any) -> Any:
            results = original(klass, tool, run_context, **tool_args)
            if current_span_var.get() is None:
                return results
            name = str(getattr(tool, "name", "tool"))
            agent = getattr(tool, "agent", None)
            if agent is not None and name.startswith("transfer_to_"):
                span = emit.subagent(str(getattr(agent, "name", None) or name[12:]),
                                     module_path=getattr(tool, "handler_module_path", None),
                                     task=tool_args.get("input"))
            else:
                span = emit.tool_call(name, module_path=getattr(tool, "handler_module_path", None),
                                      arguments=tool_args,
                                      tool_call_id=adapter._take_tool_call_id(run_context, name),
                                      mcp_server=getattr(tool, "mcp_server_name", None))
            if not span:
                return results
            return iterate_in_span(span, _tool_results(span, results))

        self._patch(cls, "execute", classmethod(execute))


# -- wrappers ------------------------------------------------------------------------------

def stage_name(cls: type) -> str:
    """``ProcessStage`` -> ``Process``; ``InternalAgentSubStage`` -> ``InternalAgent``."""
    name = cls.__name__
    for suffix in ("SubStage", "Stage"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _stage_wrapper(emit: SpanEmitter, name: str, process: Callable[..., Any]) -> Callable[..., Any]:
    """A stage's ``process`` inside its span; a generator stage keeps its span open (and
    current) across its yields, so the stages run there nest inside it — the onion."""

    replies = name == "Respond"

    @functools.wraps(process)
    def wrapped(self: Any, event: Any, *args: Any, **kwargs: Any) -> Any:
        ret = process(self, event, *args, **kwargs)
        if not (inspect.isasyncgen(ret) or inspect.isawaitable(ret)):
            return ret
        span = emit.stage(name, event)
        if not span:
            return ret
        if replies:
            _record_reply(span, event)
        return _onion(span, ret) if inspect.isasyncgen(ret) else _awaited(span, ret)

    return wrapped


async def _onion(span: Any, agen: Any) -> Any:
    with span:
        async for item in agen:
            yield item


async def _awaited(span: Any, coro: Any) -> Any:
    with span:
        return await coro


def _record_reply(span: Any, event: Any) -> None:
    """What Respond is about to send, on its span and on the root (the message's reply)."""
    try:
        text = recording.plain_text(event.get_result())
    except Exception:  # an event of another shape: the spans keep what they have
        log.debug("botrace: could not read the reply", exc_info=True)
        return
    if text:
        span.set_output(reply=text)
        span.trace.root.set_output(reply=text)


def _record_outcome(span: Any, event: Any) -> None:
    """Whether the message was stopped (by a plugin or a check), on the root."""
    try:
        if event.is_stopped():
            span.set_meta(stopped=True)
    except Exception:
        log.debug("botrace: could not read the message's outcome", exc_info=True)


def _traced_hook(emit: SpanEmitter, meta: Any, event_type: Any) -> Callable[..., Any]:
    """An event hook's handler run inside a ``plugin_call`` span credited to its plugin.

    Stays ``async def``: AstrBot asserts ``inspect.iscoroutinefunction`` on hooks.
    """
    handler = meta.handler
    kind = recording.hook_kind(event_type)
    target = _unwrap(handler)
    name = f"{kind} {getattr(target, '__qualname__', None) or meta.handler_name}"

    async def traced(event: Any, *args: Any, **kwargs: Any) -> Any:
        span = emit.handler(name, module_path=meta.handler_module_path, event_type=kind)
        if not span:
            return await handler(event, *args, **kwargs)
        before = recording.hook_state(event, args)
        req = recording.request_of(args)
        request_before = recording.request_snapshot(req, _tool_names) if req is not None else None
        span.set_meta(handler=meta.handler_full_name)
        with span:
            try:
                return await handler(event, *args, **kwargs)
            finally:
                _record_hook_effect(span, event, args, before)
                if request_before is not None:
                    _record_request_added(span, request_before,
                                          recording.request_snapshot(req, _tool_names))

    return traced


def _record_hook_effect(span: Any, event: Any, args: tuple[Any, ...],
                        before: Mapping[str, Any]) -> None:
    after = recording.hook_state(event, args)
    changed = recording.state_changes(before, after)
    if changed:
        span.set_meta(changed=changed)
        values: dict[str, Any] = {}
        for field in changed:
            if field in ("prompt", "system_prompt", "completion_text"):
                # what the hook added, not the whole (long) text
                values[field] = recording.text_change(before.get(field), after.get(field))
            elif field == "model":
                values[field] = after.get(field)
        if "result" in changed:
            values["result"] = recording.plain_text(event.get_result())
        if values:
            span.set_output(values)
    if after["stopped"] and not before["stopped"]:
        span.set_meta(stopped_event=True)
        span.add_event("stopped the event")


def _record_request_added(span: Any, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """On an ``on_llm_request`` hook's span: what it added to the request, bounded, with an
    estimate of its tokens (characters / 4), so the page can say how much context it added."""
    try:
        added = recording.request_added(before, after)
    except Exception:
        log.debug("botrace: could not compare the LLM request", exc_info=True)
        return
    if added:
        span.set_meta(tokens_added_est=added["tokens_added_est"])
        span.set_output(request_added=added)


async def _llm_responses(span: Any, agen: Any, note_tool_calls: Callable[[Any], None]) -> Any:
    """Pass an LLM call's responses through, inside ``span``, and end the span when the
    final (non-chunk) response passes: AstrBot stops reading there and finalises this
    generator later, in another task, so nothing may wait for exhaustion."""
    started = time.perf_counter()
    first: float | None = None
    inner: Any = span
    while True:
        token = current_span_var.set(inner)
        try:
            resp = await agen.__anext__()
        except StopAsyncIteration:
            span.end()
            return
        except BaseException as exc:
            span.end(exc)
            raise
        finally:
            inner = current_span_var.get()
            reset_current(token)
        if getattr(resp, "is_chunk", False):
            if first is None:
                first = time.perf_counter()
        elif span.end_ns is None:
            if first is not None:
                span.set_meta(ttft_ms=round((first - started) * 1000, 3))
            _record_llm_response(span, resp, note_tool_calls)
            span.end()
        try:
            yield resp
        except BaseException as exc:
            # Closed (GeneratorExit: AstrBot is done reading, usually after the final
            # response) or something thrown in: end the span if it is still open.
            span.end(exc)
            await agen.aclose()
            raise


def _record_llm_response(span: Any, resp: Any, note_tool_calls: Callable[[Any], None] | None) -> None:
    if resp is None:
        return
    usage = recording.llm_usage(resp)
    if usage:
        span.set_usage(**usage)
    out = recording.llm_output(resp)
    if out:
        span.set_output(out)
    if getattr(resp, "role", None) == "err":
        span.set_error(str(getattr(resp, "completion_text", "") or "the model answered an error"))
    if note_tool_calls is not None:
        note_tool_calls(resp)


async def _tool_results(span: Any, agen: Any) -> Any:
    """Pass a tool's results through, recording the last one (text, error flag)."""
    async for result in agen:
        if result is not None:
            text, is_error = recording.tool_result(result)
            if text is not None:
                span.set_output(result=text)
            if is_error:
                span.set_error(text or "the tool reported an error")
        else:
            span.set_meta(sent_to_user=True)
        yield result


# -- helpers -------------------------------------------------------------------------------

def resolve_star(module_path: str) -> PluginRef | None:
    """The plugin owning ``module_path`` in AstrBot's ``star_map`` (longest dotted prefix).

    ``star_map``'s keys are ``data.plugins.<dir>.main``; tools carry
    ``data.plugins.<dir>`` (without ``.main``), which matches the key's package.
    """
    try:
        star_map = importlib.import_module(_STAR).star_map
    except (ImportError, AttributeError):
        return None
    best, best_len = None, -1
    for key, meta in list(star_map.items()):
        package = key.rpartition(".")[0] if key.endswith(".main") else key
        for prefix in (key, package):
            if (module_path == prefix or module_path.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = meta, len(prefix)
    if best is None:
        return None
    name = getattr(best, "name", None) or module_path
    return PluginRef(name, getattr(best, "display_name", None) or name,
                     BUILTIN if getattr(best, "reserved", False) else THIRD_PARTY,
                     str(getattr(best, "version", "") or ""))


def astrbot_version() -> str:
    """The running AstrBot's version ("" if unknown)."""
    module = sys.modules.get("astrbot.core.config.default")
    version = getattr(module, "VERSION", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import version as dist_version

        return dist_version("astrbot")
    except Exception:
        return ""


def _astrbot_modules() -> list[Any]:
    return [m for m in list(sys.modules.values())
            if m is not None and getattr(m, "__name__", "").startswith("astrbot")]


def _require(owner: Any, name: str, check: Callable[[Any], bool]) -> Any:
    value = getattr(owner, name)
    if not check(value):
        raise TargetChanged(f"{getattr(owner, '__name__', owner)}.{name} changed shape")
    return value


def _dataclass_replace(cls: type) -> Callable[..., Any]:
    import dataclasses

    if not dataclasses.is_dataclass(cls):
        raise TargetChanged("StarHandlerMetadata is no longer a dataclass")
    return dataclasses.replace


def _unwrap(handler: Any) -> Any:
    target = handler
    while isinstance(target, functools.partial):
        target = target.func
    return getattr(target, "__func__", target)


def _handler_metadata(event: Any, handler: Any) -> Any:
    """The ``StarHandlerMetadata`` whose handler is running (from the event's activated list)."""
    get = getattr(event, "get_extra", None)
    try:
        activated = get("activated_handlers") if callable(get) else None
    except Exception:
        return None
    for meta in activated or ():
        if getattr(meta, "handler", None) is handler:
            return meta
    return None


def _describe_handler(meta: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"handler": getattr(meta, "handler_full_name", None)}
    for f in getattr(meta, "event_filters", None) or ():
        command = getattr(f, "command_name", None)
        if isinstance(command, str):
            out["command"] = command
            break
        regex = getattr(f, "regex_str", None)
        if isinstance(regex, str):
            out["regex"] = regex
            break
    return out


def _provider_model(provider: Any) -> str | None:
    get = getattr(provider, "get_model", None)
    try:
        model = get() if callable(get) else None
    except Exception:
        return None
    return str(model) if model else None


def _provider_id(provider: Any) -> str | None:
    config = getattr(provider, "provider_config", None)
    return config.get("id") if isinstance(config, Mapping) else None


def _lookup_provider(context: Any, provider_id: Any) -> Any:
    inst_map = getattr(getattr(context, "provider_manager", None), "inst_map", None)
    return inst_map.get(provider_id) if isinstance(inst_map, Mapping) else None


def _tool_names(tool_set: Any) -> list[str] | None:
    names = getattr(tool_set, "names", None)
    try:
        return list(names()) if callable(names) else None
    except Exception:
        return None
