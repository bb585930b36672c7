"""Test helpers: a running, traced reference host and ways to look at its traces.

    async with running_host(tmp_path) as th:
        event, trace = await th.send("/weather Paris")
        assert event.replies == ["Paris: ..."]
        span = th.one(trace, name="WeatherPlugin.weather")
        assert th.parent(trace, span).name == "StarRequest"

The host's config is written to ``<data_dir>/refhost_config.json``; keyword
arguments override its defaults (``flaky_failure_rate=1.0``, ``agent={...}``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from botrace.span import Span, Trace
from botrace.testing import InMemorySink
from botrace.tracer import Tracer
from botrace.tree import build_tree, render_tree
from botrace_host_adapter.refhost.event import MessageEvent, MessageType
from botrace_host_adapter.refhost.host import DEFAULT_CONFIG, RefHost
from botrace_host_adapter.refhost.tracing import connect, disconnect

__all__ = ["TEST_CONFIG", "TracedHost", "running_host"]

#: Deterministic and fast: no simulated failures unless a test asks, short tool timeout.
TEST_CONFIG: dict[str, Any] = {
    "trace_enable": True,
    "flaky_failure_rate": 0.0,
    "flaky_timeout_rate": 0.0,
    "rate_limit": {"count": 10_000, "window_s": 60, "strategy": "discard"},
    "agent": {**DEFAULT_CONFIG["agent"], "tool_timeout_s": 0.2},
}


class TracedHost:
    """A started :class:`RefHost` connected to a tracer with an in-memory sink."""

    def __init__(self, host: RefHost, tracer: Tracer, sink: InMemorySink) -> None:
        self.host = host
        self.tracer = tracer
        self.sink = sink

    async def send(self, text: str, *, user: str = "alice", session: str | None = None,
                   group: bool = False, platform: str = "test") -> tuple[MessageEvent, Trace | None]:
        """Handle one message; return the event (``.replies``) and its finished trace."""
        event = MessageEvent.create(text, user_id=user, session_id=session or user,
                                    platform=platform,
                                    message_type=MessageType.GROUP if group else MessageType.PRIVATE)
        await self.host.handle_event(event)
        return event, await self.trace_of(event)

    async def trace_of(self, event: MessageEvent) -> Trace | None:
        trace_id = event.extras.get("trace_id")
        if trace_id is None:
            return None
        await self.tracer.aflush()
        for trace in self.sink.traces:
            if trace.trace_id == trace_id:
                return trace
        raise AssertionError(f"trace {trace_id} was started but never finished")

    # -- looking at a trace --
    @staticmethod
    def spans(trace: Trace, *, name: str | None = None, span_type: str | None = None) -> list[Span]:
        return [s for s in trace.spans
                if (name is None or s.name == name) and (span_type is None or s.span_type == span_type)]

    @classmethod
    def one(cls, trace: Trace, *, name: str | None = None, span_type: str | None = None) -> Span:
        found = cls.spans(trace, name=name, span_type=span_type)
        if len(found) != 1:
            raise AssertionError(f"expected one span {name or span_type!r}, found {len(found)}:\n"
                                 + cls.render(trace))
        return found[0]

    @staticmethod
    def parent(trace: Trace, span: Span) -> Span | None:
        for s in trace.spans:
            if s.span_id == span.parent_id:
                return s
        return None

    @classmethod
    def ancestors(cls, trace: Trace, span: Span) -> list[Span]:
        out = []
        parent = cls.parent(trace, span)
        while parent is not None:
            out.append(parent)
            parent = cls.parent(trace, parent)
        return out

    @staticmethod
    def render(trace: Trace) -> str:
        return render_tree(build_tree(s.to_dict() for s in trace.spans), show_plugin=True)


@contextlib.asynccontextmanager
async def running_host(data_dir: str | Path, **config: Any) -> AsyncIterator[TracedHost]:
    """Start a reference host with the example plugins, traced into an :class:`InMemorySink`."""
    host = RefHost.from_config_file(Path(data_dir) / "refhost_config.json",
                                    **{**TEST_CONFIG, **config})
    await host.start()
    sink = InMemorySink()
    tracer = await connect(host, sink, install=False)
    try:
        yield TracedHost(host, tracer, sink)
    finally:
        await disconnect(host)
        await host.stop()
