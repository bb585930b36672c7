"""The current span, carried by a ContextVar.

``await``, ``asyncio.create_task``, ``asyncio.gather`` and ``asyncio.to_thread``
copy the context, so children attach to the right parent by themselves and
concurrent sibling tasks get sibling spans. ``loop.run_in_executor`` and plain
threads do not copy it; :func:`run_in_executor` and :func:`wrap_context` do::

    await botrace.run_in_executor(None, blocking_io, path)
    threading.Thread(target=botrace.wrap_context(worker)).start()
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from botrace.span import Span

__all__ = ["current_span_var", "get_current_span", "run_in_executor", "wrap_context"]

T = TypeVar("T")

#: The span that new spans attach to. ``None`` outside any trace.
current_span_var: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "botrace_current_span", default=None
)


def get_current_span() -> Span | None:
    """The span the calling code runs in, or ``None`` when not tracing.

    Plugin authors use it to annotate without threading a span through::

        span = get_current_span()
        if span is not None:
            span.set_meta(cache="hit")
    """
    return current_span_var.get()


def wrap_context(fn: Callable[..., T]) -> Callable[..., T]:
    """Bind ``fn`` to a copy of the caller's context (for threads and executors).

    Spans ``fn`` opens become children of the caller's current span.
    """
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        return ctx.run(fn, *args, **kwargs)

    return run


async def run_in_executor(executor: Any, fn: Callable[..., T], *args: Any) -> T:
    """``loop.run_in_executor`` that keeps the current span (asyncio.to_thread does too)."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return await loop.run_in_executor(executor, functools.partial(ctx.run, fn, *args))
