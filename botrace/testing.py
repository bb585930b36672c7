"""Test helpers for plugin authors (and for botrace's own tests).

Capture the spans your code makes, with their tree, in an ordinary test::

    from botrace.testing import capture_spans

    async def test_fetch_records_the_city():
        async with capture_spans() as cap:
            await fetch("Paris")
        span = cap.find("plugin.weather.fetch")
        assert span.input == {"city": "Paris"}
        assert cap.render() == '''
    test
      plugin.weather.fetch [io_call]
        http_get [io_call]'''.strip()

``capture_spans`` opens a trace of its own (root ``test``) with tracing on,
so ``@span_record`` and ``span_context`` record as they would inside a host;
on leaving the block it ends the root and delivers every event to an
:class:`InMemorySink`, synchronously.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from botrace.attribution import PluginRef
from botrace.hookspecs import hookimpl
from botrace.span import Span, Trace
from botrace.tracer import Tracer
from botrace.tree import build_tree, render_tree

__all__ = ["CapturedSpans", "InMemorySink", "capture_spans"]


class InMemorySink:
    """A sink that keeps everything it is given, for tests (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.traces: list[Trace] = []
        self.finished_spans: list[Span] = []
        self.events: list[tuple[str, str]] = []

    @hookimpl
    def botrace_trace_started(self, trace: Trace) -> None:
        with self._lock:
            self.events.append(("trace_started", trace.trace_id))

    @hookimpl
    def botrace_span_started(self, span: Span) -> None:
        with self._lock:
            self.events.append(("span_started", span.span_id))

    @hookimpl
    def botrace_span_finished(self, span: Span) -> None:
        with self._lock:
            self.finished_spans.append(span)
            self.events.append(("span_finished", span.span_id))

    @hookimpl
    def botrace_trace_finished(self, trace: Trace) -> None:
        with self._lock:
            self.traces.append(trace)
            self.events.append(("trace_finished", trace.trace_id))

    def clear(self) -> None:
        with self._lock:
            self.traces.clear()
            self.finished_spans.clear()
            self.events.clear()


class CapturedSpans:
    """What :func:`capture_spans` saw: the finished spans, in the order they started."""

    def __init__(self, tracer: Tracer, sink: InMemorySink) -> None:
        self.tracer = tracer
        self.sink = sink
        self.root: Span | None = None

    @property
    def spans(self) -> list[Span]:
        """Every finished span except the capture's own root, in start order."""
        spans = [s for s in self.sink.finished_spans if s is not self.root]
        return sorted(spans, key=lambda s: s.start_ns)

    @property
    def traces(self) -> list[Trace]:
        return list(self.sink.traces)

    def names(self) -> list[str]:
        return [s.name for s in self.spans]

    def find(self, name: str) -> Span:
        """The first span called ``name`` (AssertionError listing the names if none)."""
        for span in self.spans:
            if span.name == name:
                return span
        raise AssertionError(f"no span named {name!r}; spans: {self.names()}")

    def find_all(self, name: str | None = None, span_type: str | None = None) -> list[Span]:
        return [s for s in self.spans
                if (name is None or s.name == name) and (span_type is None or s.span_type == span_type)]

    def tree(self) -> list[dict[str, Any]]:
        """Nested span dicts of every captured trace (see :func:`botrace.tree.build_tree`)."""
        return build_tree(s.to_dict() for s in self.sink.finished_spans)

    def render(self, *, show_plugin: bool = True) -> str:
        """The tree as indented text: ``name [span_type] (plugin)``."""
        return render_tree(self.tree(), show_plugin=show_plugin)


class capture_spans:
    """Capture spans made inside the block; a context manager, ``with`` or ``async with``.

    ``plugins`` registers plugin module prefixes for attribution, e.g.
    ``capture_spans(plugins={"botrace_plugins_example.weather": PluginRef("weather")})``.
    Pass ``tracer=`` to capture from an existing tracer instead (then no root
    of its own is opened: capture the traces your host makes).
    """

    def __init__(self, *, plugins: Mapping[str, PluginRef] | None = None,
                 tracer: Tracer | None = None, root_name: str = "test",
                 settings: Mapping[str, Any] | None = None) -> None:
        self._own = tracer is None
        self.tracer = tracer or Tracer({**(settings or {}), "trace_enable": True},
                                       load_entrypoints=False)
        for prefix, ref in (plugins or {}).items():
            self.tracer.plugins.register(prefix, ref)
        self.sink = InMemorySink()
        self.captured = CapturedSpans(self.tracer, self.sink)
        self._root_name = root_name
        self._root: Span | None = None

    def __enter__(self) -> CapturedSpans:
        self.tracer.register(self.sink)
        if self._own:
            root = self.tracer.start_trace(self._root_name, force=True)
            assert isinstance(root, Span)
            self._root = root
            self.captured.root = root
            root.__enter__()
        return self.captured

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._root is not None:
            self._root.__exit__(exc_type, exc, tb)
        self.tracer.flush()
        self.tracer.unregister(self.sink)
        if self._own:
            self.tracer.close()

    async def __aenter__(self) -> CapturedSpans:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)
