"""The contract between botrace, hosts and sinks, as pluggy hook specifications.

Implement any of these with ``@botrace.hookimpl`` on a plugin object (or
module) and register it with ``tracer.register(obj)``, or ship it in the
``botrace`` entry-point group. An implementation may take any subset of a
hook's arguments, by name.

Two families:

* **Host side.** A host adapter *calls* the ``botrace_trace_*`` hooks to open
  spans (the core implements them) and *implements* ``botrace_resolve_plugin``,
  ``botrace_describe_event`` and ``botrace_load_settings`` so botrace can
  understand the host.
* **Sink side.** The store, the live hub, the exporters and any third-party
  sink implement the ``botrace_*_started`` / ``botrace_*_finished`` hooks to
  receive what was recorded.

Threading: the ``botrace_trace_*`` hooks run on the caller's path (the host's
message handling) and must be cheap. The four event hooks run on the tracer's
dispatcher thread ``botrace-dispatch``, in order, never on the host's path; a
sink that raises is logged (rate-limited) and counted, and the other sinks
still get the event. ``botrace_startup`` and ``botrace_shutdown`` run on the
event loop and may return an awaitable, which is awaited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from botrace.attribution import PluginRef
    from botrace.config import Settings
    from botrace.span import NullSpan, Span, Trace
    from botrace.tracer import Tracer

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("botrace")
hookimpl = pluggy.HookimplMarker("botrace")


# ---------------------------------------------------------------------------
# Host side: spans a host pipeline opens (implemented by the core)
# ---------------------------------------------------------------------------

@hookspec(firstresult=True)
def botrace_trace_message(event: Any, name: str, attributes: Mapping[str, Any] | None) -> Span | NullSpan:
    """Open the root span of one incoming message's trace.

    Called by the host when a message enters its pipeline. ``event`` is the
    host's own event object; the core asks ``botrace_describe_event`` to turn
    it into root attributes, then merges ``attributes`` (may be None). ``name``
    names the root (``"message"`` if None).

    Returns the root :class:`~botrace.span.Span`, to be used as a (async)
    context manager around the message's whole handling, or ``NULL_SPAN`` when
    tracing is off. The first non-None result wins, so a plugin registered
    ``tryfirst`` can take over tracing entirely.
    """


@hookspec(firstresult=True)
def botrace_trace_stage(stage: str, event: Any) -> Span | NullSpan:
    """Open a ``pipeline_stage`` span named ``stage`` under the current span.

    Called by the host around each pipeline stage. For a stage that is an
    async generator (AstrBot's onion), keep the span open across the stage's
    whole iteration so that the stages run at its ``yield`` nest inside it.
    Returns the span (context manager) or ``NULL_SPAN`` outside a trace.
    """


@hookspec(firstresult=True)
def botrace_trace_handler(handler_name: str, module_path: str | None, event_type: str | None,
                          plugin: PluginRef | str | None) -> Span | NullSpan:
    """Open a ``plugin_call`` span for one plugin handler invocation.

    Called by the host around each handler call (commands, regex and
    all-message handlers, event hooks).

    ``module_path`` is the handler's module (AstrBot: ``handler_module_path``),
    from which the plugin is resolved by longest dotted prefix; ``plugin``, if
    given, wins over it. ``event_type`` says which kind of handler it is
    (command, regex, on_llm_request, ...). For async-generator handlers keep
    the span open over the whole iteration. Returns the span or ``NULL_SPAN``.
    """


@hookspec(firstresult=True)
def botrace_trace_llm_call(model: str | None, provider: str | None, purpose: str | None,
                           stream: bool, messages: Any) -> Span | NullSpan:
    """Open an ``llm_call`` span for one request to a language model.

    ``purpose`` says why it was called (``planning``, ``synthesis``, ``summary``).
    ``messages`` (optional) is recorded as the span's input, bounded and redacted.
    Before leaving the span, the host calls ``span.set_usage(input_tokens=…,
    output_tokens=…, cached_tokens=…)``, ``span.set_output(text=…)`` and, when
    streaming, ``span.set_meta(ttft_ms=…)``. Returns the span or ``NULL_SPAN``.
    """


@hookspec(firstresult=True)
def botrace_trace_tool_call(tool_name: str, module_path: str | None, arguments: Any,
                            tool_call_id: str | None, mcp_server: str | None) -> Span | NullSpan:
    """Open a ``tool_call`` span for one tool execution.

    Called by the host's agent runner around each tool it executes.

    The span belongs to the plugin owning ``module_path`` (the tool handler's
    module; AstrBot stores ``data.plugins.<x>`` without ``.main``, which the
    prefix match covers). Tools run concurrently each open their span in their
    own task, so they come out as siblings. Returns the span or ``NULL_SPAN``.
    """


@hookspec(firstresult=True)
def botrace_trace_subagent(agent_name: str, module_path: str | None, task: Any) -> Span | NullSpan:
    """Open a ``subagent_call`` span for a handoff to another agent.

    Called by the host's agent runner when it hands the task over (AstrBot: a
    ``transfer_to_<agent>`` tool).

    The subagent's own LLM and tool spans nest under it. ``task`` (optional)
    is what was handed over, recorded as input. Returns the span or ``NULL_SPAN``.
    """


# ---------------------------------------------------------------------------
# Host side: what botrace asks the host (implemented by a host adapter)
# ---------------------------------------------------------------------------

@hookspec(firstresult=True)
def botrace_resolve_plugin(module_path: str) -> PluginRef | None:
    """Map a module path that no registered prefix covers to a plugin.

    Called on a cache miss of ``tracer.plugins`` (results are cached until the
    registry changes or ``tracer.plugins.invalidate()`` is called). Return a
    :class:`~botrace.attribution.PluginRef` or None. Adapters for hosts that keep
    their own plugin map (AstrBot's ``star_map``) implement this.
    """


@hookspec(firstresult=True)
def botrace_describe_event(event: Any) -> Mapping[str, Any] | None:
    """Describe a host event as root attributes.

    Called by the core inside ``botrace_trace_message``, on the host's path.

    Return a mapping with any of ``umo``, ``sender``, ``user_id``,
    ``session_id``, ``outline`` (a short text of the message), ``agent_type``,
    ``platform``, plus any other attributes, or None if this implementation does
    not know the event type.
    """


@hookspec(firstresult=True)
def botrace_load_settings() -> Mapping[str, Any] | None:
    """Return the host's configuration mapping that holds ``trace_enable`` and friends.

    Called by :meth:`Tracer.from_host` and by ``Tracer.reload_settings()``.
    Return the mapping, or None if this implementation does not hold the
    settings. Keys not starting with ``trace_`` are ignored.
    """


@hookspec
def botrace_settings_changed(settings: Settings, changes: Mapping[str, Any]) -> None:
    """Settings changed at run time (``trace_enable`` flipped from the page, say).

    Called on the thread that made the change, after it took effect; the
    return value is ignored. ``changes`` holds only the keys that changed. A host adapter implements it
    to write them back to the host's config file, so the switch survives a
    restart; sinks may react (the live hub tells open pages). Must not block
    for long.
    """


# ---------------------------------------------------------------------------
# Sink side
# ---------------------------------------------------------------------------

@hookspec
def botrace_startup(tracer: Tracer) -> Any:
    """The tracer starts (``await tracer.start()``), on the event loop.

    Called once, on the event loop. Open files and connections, start
    background tasks. May return an awaitable, which is awaited before
    ``start()`` returns.
    """


@hookspec
def botrace_trace_started(trace: Trace) -> None:
    """A trace began (its root span was opened).

    Called on the dispatcher thread, before the root's ``botrace_span_started``.
    The return value is ignored.
    """


@hookspec
def botrace_span_started(span: Span) -> None:
    """A span was opened (the root too).

    Called on the dispatcher thread; the return value is ignored.

    The span is still running and may change while you read it: copy what
    you need now (``span.to_dict()`` is safe to call).
    """


@hookspec
def botrace_span_finished(span: Span) -> None:
    """A span ended; it no longer changes.

    Called on the dispatcher thread, once per span, in the order spans ended.
    Persist or export it here. The return value is ignored.
    """


@hookspec
def botrace_trace_finished(trace: Trace) -> None:
    """A trace's root span ended.

    Called on the dispatcher thread, after the root's ``botrace_span_finished``;
    the return value is ignored.

    ``trace.to_dict()`` gives the summary with totals. A span still open in a
    task that outlived the message arrives later through ``botrace_span_finished``.
    """


@hookspec
def botrace_shutdown(tracer: Tracer) -> Any:
    """The tracer is closing (``await tracer.aclose()``).

    Called on the event loop after every queued event was dispatched.

    Flush and close. May return an awaitable, which is awaited.
    """


@hookspec
def botrace_health(tracer: Tracer) -> Mapping[str, Any] | None:
    """Report this sink's health for ``tracer.health()`` and the web page.

    Called whenever someone asks for health (the page polls it).

    Return a mapping with a ``name`` key and whatever counts matter (queue
    depth, accepted, written, dropped, last error), or None. A ``"state":
    "degraded"`` entry, with a ``reason``, says the sink is losing data or
    work right now (an exporter whose receiver is down, a store whose disk is
    full, a host adapter missing part of its host); the web API's top-level
    status turns ``degraded`` while any sink says so.
    """


@hookspec
def botrace_register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add subcommands to the ``botrace`` command.

    Called once when the ``botrace`` command builds its parser; the return
    value is ignored.

    ``subparsers`` is an argparse sub-parser collection; add a parser and give
    it a ``func`` default taking the parsed ``argparse.Namespace`` and returning
    an exit code::

        @hookimpl
        def botrace_register_commands(subparsers):
            p = subparsers.add_parser("hello", help="say hello")
            p.set_defaults(func=lambda args: print("hello") or 0)
    """
