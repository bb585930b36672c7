"""The tracer: one per host process, owning one pluggy PluginManager.

A host adapter builds it from the host's settings, registers its own hook
implementations and the sinks it wants, starts it on the event loop, and
installs it::

    tracer = Tracer.from_host(adapter)          # asks botrace_load_settings
    tracer.register(TraceStore(...))            # sinks are plugins
    await tracer.start()
    botrace.install(tracer)
    ...
    with tracer.hook.botrace_trace_message(event=ev, name=None, attributes=None) as root:
        ...                                     # the host's message handling
    await tracer.aclose()

The core's own parts are plugins on the same manager (``botrace.core`` below,
the log exporter), exactly as a third party's would be.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import pluggy

from botrace import hookspecs
from botrace.attribution import PluginRef, PluginRegistry
from botrace.config import Settings
from botrace.dispatch import Dispatcher, call_isolated
from botrace.hookspecs import hookimpl
from botrace.record import span_context
from botrace.sampling import HeldTrace, SampleRule, SamplingStats
from botrace.span import NULL_SPAN, NullSpan, Span, SpanType, Trace

__all__ = ["Tracer", "get_tracer", "install", "uninstall"]

log = logging.getLogger("botrace")

_installed: Tracer | None = None


def install(tracer: Tracer) -> Tracer:
    """Make ``tracer`` the process's tracer (what :func:`get_tracer` returns)."""
    global _installed
    _installed = tracer
    return tracer


def uninstall(tracer: Tracer | None = None) -> None:
    """Forget the installed tracer (only if it is ``tracer``, when given)."""
    global _installed
    if tracer is None or _installed is tracer:
        _installed = None


def get_tracer() -> Tracer | None:
    """The tracer a host installed, or None."""
    return _installed


class Tracer:
    """Creates traces, holds the settings and the plugin registry, feeds the sinks."""

    def __init__(self, settings: Settings | Mapping[str, Any] | None = None, *,
                 load_entrypoints: bool = True,
                 plugin_manager: pluggy.PluginManager | None = None) -> None:
        if not isinstance(settings, Settings):
            settings = Settings.from_mapping(settings)
        self._settings = settings
        self._enabled = settings.trace_enable
        self._settings_lock = threading.Lock()
        self.pm = plugin_manager or _PluginManager("botrace")
        self.pm.add_hookspecs(hookspecs)
        self.hook = _HookRelay(self.pm)
        self.plugins = PluginRegistry(fallback=self._resolve_by_hook)
        self._dispatcher = Dispatcher(self.pm, settings.trace_queue_size,
                                      settings.trace_dispatch_interval_ms / 1000)
        self.traces_started = 0
        # Tail-based sampling (botrace.sampling): None at rate 1, when nothing is held.
        self._sample_rule = SampleRule.from_settings(settings)
        self._sampling = SamplingStats()
        self._started = False
        self.register(_CoreSpans(self), name=_CORE)
        if load_entrypoints:
            self.pm.load_setuptools_entrypoints("botrace")
            self._dispatcher.refresh()

    @classmethod
    def from_host(cls, *host_plugins: Any, load_entrypoints: bool = True) -> Tracer:
        """A tracer whose settings come from the host (``botrace_load_settings``)."""
        tracer = cls(Settings(), load_entrypoints=load_entrypoints)
        for plugin in host_plugins:
            tracer.register(plugin)
        tracer.reload_settings()
        return tracer

    # -- plugins ----------------------------------------------------------------

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """Register a sink or host adapter (any object or module with ``@hookimpl``s)."""
        registered = self.pm.register(plugin, name=name)
        self._dispatcher.refresh()
        return registered

    def register_exporters(self) -> list[Any]:
        """Register the exporters the settings turn on (log file, OTLP, Zipkin); returns them.

        Call it after the settings are loaded (``Tracer.from_host``) and before
        :meth:`start`. Exporters already registered under the same name are kept.
        """
        from botrace.sinks import exporters_from_settings

        added = []
        for name, sink in exporters_from_settings(self._settings):
            if self.pm.get_plugin(name) is None:
                self.register(sink, name=name)
                added.append(sink)
        return added

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        removed = self.pm.unregister(plugin, name=name)
        self._dispatcher.refresh()
        return removed

    def _resolve_by_hook(self, module_path: str) -> PluginRef | None:
        try:
            return self.hook.botrace_resolve_plugin(module_path=module_path)
        except Exception:
            self._dispatcher.faults("resolve_plugin", "botrace: botrace_resolve_plugin failed for %s",
                                    module_path, exc_info=True)
            return None

    # -- settings -----------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def enabled(self) -> bool:
        """Whether new messages are traced (``trace_enable``)."""
        return self._enabled

    def set_enabled(self, enabled: bool) -> None:
        """Flip ``trace_enable`` live. The next message follows; a running trace completes."""
        self.update_settings(trace_enable=bool(enabled))

    def update_settings(self, **changes: Any) -> Settings:
        """Change settings at run time (validated) and tell ``botrace_settings_changed``."""
        with self._settings_lock:
            new = self._settings.replace(**changes)
            changed = {k: getattr(new, k) for k in changes if getattr(new, k) != getattr(self._settings, k)}
            self._apply(new)
        if changed:
            call_isolated(self.pm, "botrace_settings_changed", self._dispatcher.faults,
                          settings=new, changes=changed)
        return new

    def reload_settings(self) -> Settings:
        """Read the host's settings again (``botrace_load_settings``)."""
        mapping = self.hook.botrace_load_settings()
        with self._settings_lock:
            self._apply(Settings.from_mapping(mapping))
        return self._settings

    def _apply(self, settings: Settings) -> None:
        self._settings = settings
        self._enabled = settings.trace_enable
        self._dispatcher.max_events = settings.trace_queue_size
        self._dispatcher.interval_s = settings.trace_dispatch_interval_ms / 1000
        self._sample_rule = SampleRule.from_settings(settings)

    # -- traces ---------------------------------------------------------------------

    def start_trace(self, name: str = "message", attributes: Mapping[str, Any] | None = None,
                    *, force: bool = False) -> Span | NullSpan:
        """Open the root span of a new trace (``NULL_SPAN`` when tracing is off).

        Hosts normally go through ``hook.botrace_trace_message``; tests and
        scripts may call this directly. ``force`` traces even when disabled.
        Under a sampling rule (``trace_sample_rate`` below 1) the trace's events wait
        on it until the root ends (:mod:`botrace.sampling`).
        """
        if not (self._enabled or force):
            return NULL_SPAN
        if not self._started:
            self._ensure_dispatching()
        self.traces_started += 1
        dispatcher = self._dispatcher
        if len(dispatcher.queue) >= dispatcher.max_events:
            self._queue_full()
            return NULL_SPAN
        if self._sample_rule is None:
            return Trace(self, name, attributes, self._settings.limits, dispatcher.queue,
                         dispatcher.max_events).root
        self._sampling.held += 1
        return HeldTrace(self, name, attributes, self._settings.limits, dispatcher.queue,
                         dispatcher.max_events).root

    def span(self, name: str, span_type: str = SpanType.CUSTOM, *,
             plugin: PluginRef | str | None = None, module: str | None = None) -> Span | NullSpan:
        """A child of the current span (``NULL_SPAN`` outside a trace)."""
        return span_context(name, span_type, plugin=plugin, module=module)

    # -- dispatching ------------------------------------------------------------------

    def _ensure_dispatching(self) -> None:
        self._started = True
        self._dispatcher.start()

    def _queue_full(self) -> None:
        self._dispatcher.note_dropped()

    async def start(self) -> Tracer:
        """Start the dispatcher thread and the sinks (``botrace_startup``), on the event loop."""
        self._ensure_dispatching()
        await _await_all(self._call_sinks("botrace_startup"), self._dispatcher.faults, "startup")
        return self

    def _call_sinks(self, hook_name: str) -> list[Any]:
        """Call a lifecycle hook on every sink (isolated); the awaitables they returned."""
        return [r for r in call_isolated(self.pm, hook_name, self._dispatcher.faults, tracer=self)
                if inspect.isawaitable(r)]

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until every event so far reached the sinks (False on timeout)."""
        return self._dispatcher.flush(timeout)

    async def aflush(self, timeout: float = 5.0) -> bool:
        """:meth:`flush` without blocking the event loop."""
        return await asyncio.to_thread(self._dispatcher.flush, timeout)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Dispatch what is queued, stop the thread, then ``botrace_shutdown`` (awaited),
        all within ``timeout`` seconds plus a few ms.

        The dispatcher gets at most half of it: a sink still busy with the queue then
        is given up on, and what it did not take is counted per sink
        (``sink_undelivered`` in :meth:`health`). The sinks' shutdowns (the store
        writing what it holds, exporters posting their last batch) run together in the
        rest; one not done by then is left running and counted in ``faults``
        (``<sink>.shutdown_timeout``).
        """
        deadline = time.monotonic() + timeout
        await asyncio.to_thread(self._dispatcher.stop, timeout / 2)
        self._started = False
        await self._shutdown_sinks(max(0.0, deadline - time.monotonic()))
        uninstall(self)

    def close(self, timeout: float = 10.0) -> None:
        """Synchronous :meth:`aclose` for scripts and tests without a running event loop.

        Awaitables returned by ``botrace_shutdown`` are run on a private loop, within
        the same bounds; called from inside a running loop, use :meth:`aclose`.
        """
        deadline = time.monotonic() + timeout
        self._dispatcher.stop(timeout / 2)
        self._started = False
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self._shutdown_sinks(max(0.0, deadline - time.monotonic())))
        else:
            pending = self._shutdown_calls()
            for _, awaitable in pending:
                if inspect.iscoroutine(awaitable):
                    awaitable.close()
            if pending:
                self._dispatcher.faults("close_in_loop", "botrace: Tracer.close() called inside "
                                        "a running loop; use 'await tracer.aclose()' to shut sinks down")
        uninstall(self)

    def _shutdown_calls(self) -> list[tuple[str, Any]]:
        """Call every sink's ``botrace_shutdown`` (isolated); the awaitables returned."""
        out = []
        faults = self._dispatcher.faults
        kwargs = {"tracer": self}
        for impl in self.pm.hook.botrace_shutdown.get_hookimpls():
            try:
                result = impl.function(*[kwargs[name] for name in impl.argnames])
            except Exception:
                faults(f"{impl.plugin_name}.botrace_shutdown",
                       "botrace: sink %s failed in botrace_shutdown", impl.plugin_name,
                       exc_info=True)
                continue
            if inspect.isawaitable(result):
                out.append((impl.plugin_name, result))
        return out

    async def _shutdown_sinks(self, timeout: float) -> None:
        """Run the sinks' shutdowns together, for at most ``timeout`` seconds."""
        pending = self._shutdown_calls()
        if not pending:
            return
        faults = self._dispatcher.faults
        tasks = {asyncio.ensure_future(awaitable): name for name, awaitable in pending}
        done, late = await asyncio.wait(tasks, timeout=timeout)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                faults("shutdown", "botrace: sink %s failed in botrace_shutdown", tasks[task],
                       exc_info=task.exception())
        for task in late:  # (left running: it may still finish while the loop runs)
            faults(f"{tasks[task]}.shutdown_timeout", "botrace: sink %s did not shut down in "
                   "%.1f s", tasks[task], timeout)

    def health(self) -> dict[str, Any]:
        """Queue depth, drops, sink errors, and every sink's ``botrace_health`` report."""
        sinks = call_isolated(self.pm, "botrace_health", self._dispatcher.faults, tracer=self)
        return {
            "enabled": self._enabled,
            "traces_started": self.traces_started,
            **self._dispatcher.health(),
            "sampling": self._sampling.health(self._sample_rule),
            "faults": dict(self._dispatcher.faults.counts),
            "sinks": [dict(s) for s in sinks],
        }


SPAN_HOOKS = ("botrace_trace_message", "botrace_trace_stage", "botrace_trace_handler",
              "botrace_trace_llm_call", "botrace_trace_tool_call", "botrace_trace_subagent")
_CORE = "botrace.core"


class _PluginManager(pluggy.PluginManager):
    """A PluginManager that tells listeners when its set of plugins changes."""

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        self.listeners: list[Any] = []

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        try:
            return super().register(plugin, name)
        finally:
            self._changed()

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        try:
            return super().unregister(plugin, name)
        finally:
            self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()


class _HookRelay:
    """``tracer.hook``: pluggy's hook relay, with a shortcut for the span hooks.

    A pluggy call costs 1.5-4 us; a host opens ~30 spans per message, so the
    hook machinery alone would cost more than the spans. While nothing but the
    core implements a ``botrace_trace_*`` hook the result is the same either
    way, so ``tracer.hook.botrace_trace_stage`` *is* the core's method.
    Register any plugin implementing it (a sampler, a metrics plugin) and the
    attribute is pluggy's hook caller again, ``add_hookcall_monitoring``
    included; unregister it and the shortcut comes back. To look at the
    implementations (``get_hookimpls``), use ``tracer.pm.hook``.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm
        if isinstance(pm, _PluginManager):
            pm.listeners.append(self._route)
            self._route()

    def _route(self) -> None:
        for name in SPAN_HOOKS:
            caller = getattr(self._pm.hook, name)
            impls = caller.get_hookimpls()
            only_core = (len(impls) == 1 and impls[0].plugin_name == _CORE
                         and not impls[0].hookwrapper and not impls[0].wrapper)
            setattr(self, name, impls[0].function if only_core else caller)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pm.hook, name)

    def __dir__(self) -> list[str]:
        return dir(self._pm.hook)


async def _await_all(awaitables: list[Any], faults: Any, what: str) -> None:
    """Await each sink's ``botrace_<what>`` awaitable; one that fails is logged and counted, not raised."""
    for awaitable in awaitables:
        try:
            await awaitable
        except Exception:
            faults(what, "botrace: a sink failed in botrace_%s", what, exc_info=True)


class _CoreSpans:
    """The core's implementations of the host-side ``botrace_trace_*`` hooks."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    @hookimpl(trylast=True)
    def botrace_trace_message(self, event: Any, name: str | None,
                              attributes: Mapping[str, Any] | None) -> Span | NullSpan:
        tracer = self.tracer
        if not tracer.enabled:
            return NULL_SPAN
        described: Mapping[str, Any] | None = None
        if event is not None:
            try:
                described = tracer.hook.botrace_describe_event(event=event)
            except Exception:
                tracer._dispatcher.faults("describe_event", "botrace: botrace_describe_event failed",
                                          exc_info=True)
        merged = {**(described or {}), **(attributes or {})}
        return tracer.start_trace(name or "message", merged)

    # Each opens its span with span_context, the plugin authors' own fast path.
    @hookimpl(trylast=True)
    def botrace_trace_stage(self, stage: str, event: Any) -> Span | NullSpan:
        return span_context(stage, SpanType.PIPELINE_STAGE)

    @hookimpl(trylast=True)
    def botrace_trace_handler(self, handler_name: str, module_path: str | None,
                              event_type: str | None, plugin: PluginRef | str | None) -> Span | NullSpan:
        span = span_context(handler_name, SpanType.PLUGIN_CALL, plugin=plugin, module=module_path)
        if event_type:
            span.set_meta(event_type=event_type)
        return span

    @hookimpl(trylast=True)
    def botrace_trace_llm_call(self, model: str | None, provider: str | None, purpose: str | None,
                               stream: bool, messages: Any) -> Span | NullSpan:
        span = span_context(f"llm {model}" if model else "llm", SpanType.LLM_CALL)
        span.set_meta(model=model, provider=provider, purpose=purpose, stream=bool(stream))
        if messages is not None:
            span.set_input(messages=messages)
        return span

    @hookimpl(trylast=True)
    def botrace_trace_tool_call(self, tool_name: str, module_path: str | None, arguments: Any,
                                tool_call_id: str | None, mcp_server: str | None) -> Span | NullSpan:
        span = span_context(tool_name, SpanType.TOOL_CALL, module=module_path)
        if span:
            meta = {"tool_name": tool_name}
            if tool_call_id:
                meta["tool_call_id"] = tool_call_id
            if mcp_server:
                meta["mcp_server"] = mcp_server
            span.set_meta(meta)
            if arguments is not None:
                span.set_input(arguments if isinstance(arguments, Mapping) else {"arguments": arguments})
        return span

    @hookimpl(trylast=True)
    def botrace_trace_subagent(self, agent_name: str, module_path: str | None,
                               task: Any) -> Span | NullSpan:
        span = span_context(f"subagent {agent_name}", SpanType.SUBAGENT_CALL, module=module_path)
        span.set_meta(agent_name=agent_name)
        if task is not None:
            span.set_input(task=task)
        return span
