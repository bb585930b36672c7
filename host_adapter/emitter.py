"""The host's side of the span hooks: one small object a host pipeline calls.

Every span a host opens goes through the ``botrace_trace_*`` pluggy hooks —
the same path any host would take — never through tracer internals. This
wrapper only spares the host the repeated keyword arguments and the
"no tracer installed" case::

    emit = SpanEmitter(tracer)                 # or SpanEmitter(None): all spans are null
    with emit.message(event):
        with emit.stage("WakingCheck", event):
            ...
        async for item in emit.iterate(emit.handler("on_cmd", module_path=mod), handler(event)):
            ...

Each method returns a span usable with ``with`` / ``async with``, or
:data:`botrace.span.NULL_SPAN` when the message is not traced.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from botrace.context import current_span_var
from botrace.span import NULL_SPAN, NullSpan, Span

if TYPE_CHECKING:
    from botrace.attribution import PluginRef
    from botrace.tracer import Tracer

__all__ = ["SpanEmitter", "iterate_in_span", "reset_current"]

T = TypeVar("T")
AnySpan = Span | NullSpan


class SpanEmitter:
    """Opens host spans through ``tracer.hook``; a null emitter when ``tracer`` is None."""

    __slots__ = ("_hook",)

    def __init__(self, tracer: Tracer | None = None) -> None:
        self._hook: Any = None
        self.bind(tracer)

    def bind(self, tracer: Tracer | None) -> None:
        """Switch to another tracer (or to none) for the messages that start from now."""
        self._hook = None if tracer is None else tracer.hook

    @property
    def active(self) -> bool:
        return self._hook is not None

    def message(self, event: Any, name: str | None = None,
                attributes: Mapping[str, Any] | None = None) -> AnySpan:
        hook = self._hook
        if hook is None:
            return NULL_SPAN
        return hook.botrace_trace_message(event=event, name=name, attributes=attributes) or NULL_SPAN

    def stage(self, stage: str, event: Any = None) -> AnySpan:
        hook = self._hook
        if hook is None or current_span_var.get() is None:
            return NULL_SPAN
        return hook.botrace_trace_stage(stage=stage, event=event) or NULL_SPAN

    def handler(self, handler_name: str, module_path: str | None = None,
                event_type: str | None = None, plugin: PluginRef | str | None = None) -> AnySpan:
        hook = self._hook
        if hook is None or current_span_var.get() is None:
            return NULL_SPAN
        return hook.botrace_trace_handler(handler_name=handler_name, module_path=module_path,
                                          event_type=event_type, plugin=plugin) or NULL_SPAN

    def llm_call(self, model: str | None, provider: str | None = None, purpose: str | None = None,
                 stream: bool = False, messages: Any = None) -> AnySpan:
        hook = self._hook
        if hook is None or current_span_var.get() is None:
            return NULL_SPAN
        return hook.botrace_trace_llm_call(model=model, provider=provider, purpose=purpose,
                                           stream=stream, messages=messages) or NULL_SPAN

    def tool_call(self, tool_name: str, module_path: str | None = None, arguments: Any = None,
                  tool_call_id: str | None = None, mcp_server: str | None = None) -> AnySpan:
        hook = self._hook
        if hook is None or current_span_var.get() is None:
            return NULL_SPAN
        return hook.botrace_trace_tool_call(tool_name=tool_name, module_path=module_path,
                                            arguments=arguments, tool_call_id=tool_call_id,
                                            mcp_server=mcp_server) or NULL_SPAN

    def subagent(self, agent_name: str, module_path: str | None = None, task: Any = None) -> AnySpan:
        hook = self._hook
        if hook is None or current_span_var.get() is None:
            return NULL_SPAN
        return hook.botrace_trace_subagent(agent_name=agent_name, module_path=module_path,
                                           task=task) or NULL_SPAN

    @staticmethod
    def iterate(span: AnySpan, agen: AsyncIterator[T]) -> AsyncIterator[T]:
        """See :func:`iterate_in_span`."""
        return iterate_in_span(span, agen)


async def iterate_in_span(span: AnySpan, agen: AsyncIterator[T]) -> AsyncIterator[T]:
    """Iterate an async generator (a plugin handler) inside ``span``, ending it at the end.

    While the generator runs, ``span`` (or whatever the generator itself made
    current) is the current span, so the handler's own spans nest under it;
    between items the consumer's span is current again, so the pipeline
    stages that run at each ``yield`` (AstrBot's onion) are not mistaken for
    the handler's children. An exception is recorded on the span and re-raised.
    """
    if not span:
        async for item in agen:
            yield item
        return
    inner: Any = span
    try:
        while True:
            token = current_span_var.set(inner)
            try:
                item = await agen.__anext__()
            except StopAsyncIteration:
                break
            finally:
                inner = current_span_var.get()
                reset_current(token)
            yield item
    except BaseException as exc:
        await _aclose(agen)
        span.end(exc)
        raise
    span.end()


def reset_current(token: Any) -> None:
    """Undo ``current_span_var.set`` (``token``), also when resumed in another task."""
    try:
        current_span_var.reset(token)
    except ValueError:  # resumed in another task than the one that set it
        old = token.old_value
        current_span_var.set(None if old is token.MISSING else old)


async def _aclose(agen: Any) -> None:
    close = getattr(agen, "aclose", None)
    if close is not None:
        await close()
