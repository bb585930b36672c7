"""Synthetic traces shaped like a chatbot host's, for tests, benchmarks and demos.

The objects duck-type :class:`botrace.span.Trace` / :class:`botrace.span.Span`
as the sink hooks see them (finished, frozen), so a sink can be fed at full
speed without a tracer in front of it::

    for trace in synthetic_traces(100):
        feed(store, trace)
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botrace.attribution import PluginRef

__all__ = ["SynthSpan", "SynthTrace", "feed", "synthetic_traces"]

PLUGINS = [PluginRef("weather", "Weather", "third_party", "1.2"),
           PluginRef("search", "Web Search", "third_party", "0.9"),
           PluginRef("astrbot", "AstrBot core", "builtin", "4.0"),
           PluginRef("memory", "Long memory", "third_party", "2.1"),
           PluginRef("reminder", "Reminder", "third_party", "1.0")]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "deepseek-chat"]
TOOLS = ["get_weather", "web_search", "remember", "set_reminder", "calculator"]
STAGES = ["WakingCheck", "Whitelist", "RateLimit", "ContentSafety", "Process", "Respond"]
WORDS = ["weather", "tomorrow", "remind", "search", "news", "hello", "price", "meeting",
         "translate", "joke", "python", "rain", "coffee", "train", "music"]


@dataclass(slots=True, eq=False)
class SynthTrace:
    trace_id: str
    name: str
    start_ns: int
    end_ns: int | None
    attributes: dict[str, Any]
    status: str = "ok"
    dropped_spans: int = 0
    truncated: bool = False
    spans: list[SynthSpan] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "name": self.name, "start_ns": self.start_ns,
                "end_ns": self.end_ns, "status": self.status, **self.attributes}


@dataclass(slots=True, eq=False)
class SynthSpan:
    trace: SynthTrace
    span_id: str
    parent_id: str | None
    name: str
    span_type: str
    plugin: PluginRef | None
    start_ns: int
    end_ns: int | None
    status: str = "ok"
    error: dict[str, str] | None = None
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None
    truncated: bool = False

    @property
    def trace_id(self) -> str:
        return self.trace.trace_id

    def to_dict(self) -> dict[str, Any]:
        end = self.end_ns
        return {"trace_id": self.trace.trace_id, "span_id": self.span_id,
                "parent_id": self.parent_id, "name": self.name, "span_type": self.span_type,
                "start_ns": self.start_ns, "end_ns": end,
                "duration_ns": None if end is None else end - self.start_ns,
                "status": self.status, "error": self.error, "input": dict(self.input or {}),
                "output": dict(self.output or {}), "meta": dict(self.meta or {}),
                "events": list(self.events or []),
                "plugin": self.plugin.to_dict() if self.plugin else None,
                "truncated": self.truncated}


def synthetic_traces(n: int, *, spans: int = 20, start_ns: int = 1_700_000_000 * 10**9,
                     step_ns: int = 1_000_000_000, seed: int = 1, users: int = 200,
                     sessions: int = 1_000, error_rate: float = 0.03) -> Iterator[SynthTrace]:
    """``n`` finished traces of ``spans`` spans each, one every ``step_ns``."""
    rnd = random.Random(seed)
    for i in range(n):
        t0 = start_ns + i * step_ns
        user = rnd.randrange(users)
        session = rnd.randrange(sessions)
        umo = f"qq:GroupMessage:{session}"
        outline = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(2, 8)))
        trace = SynthTrace(
            # (made like the tracer's: its start second, then random bits)
            trace_id=f"{(t0 // 10**9) & 0xFFFFFFFF:08x}{rnd.getrandbits(96):024x}",
            name="message", start_ns=t0, end_ns=None,
            attributes={"umo": umo, "sender": f"user{user}", "user_id": f"u{user}",
                        "session_id": f"s{session}", "outline": outline,
                        "agent_type": "tool_loop", "platform": "qq"})
        _build(trace, rnd, spans, error_rate)
        yield trace


def _sid(rnd: random.Random) -> str:
    return f"{rnd.getrandbits(64):016x}"


def _build(trace: SynthTrace, rnd: random.Random, n: int, error_rate: float) -> None:
    t = trace.start_ns
    root = SynthSpan(trace, _sid(rnd), None, "message", "message", None, t, None,
                     input={"text": trace.attributes["outline"]})
    trace.spans.append(root)
    parents = [root]
    cursor = t + 10_000
    while len(trace.spans) < n:
        k = len(trace.spans)
        if k <= len(STAGES):
            parent, stype, name, plugin = root, "pipeline_stage", STAGES[k - 1], PLUGINS[2]
            meta = {"stage": name}
        else:
            parent = rnd.choice(parents)
            choice = rnd.random()
            if choice < 0.3:
                plugin = rnd.choice(PLUGINS)
                stype, name, meta = "plugin_call", f"{plugin.name}.on_message", {
                    "handler_name": "on_message", "event_type": "message"}
            elif choice < 0.6:
                model = rnd.choice(MODELS)
                tin = rnd.randint(200, 4000)
                plugin = parent.plugin
                stype, name, meta = "llm_call", f"chat {model}", {
                    "model": model, "provider": "openai", "purpose": "synthesis",
                    "input_tokens": tin, "output_tokens": rnd.randint(20, 800),
                    "cached_tokens": rnd.randint(0, tin // 2)}
            elif choice < 0.85:
                tool = rnd.choice(TOOLS)
                plugin = rnd.choice(PLUGINS)
                stype, name, meta = "tool_call", tool, {"tool_name": tool, "tool_call_id": "c1"}
            else:
                plugin = parent.plugin
                stype, name, meta = "io_call", "http_fetch", {"url": "https://example.org"}
        dur = int(rnd.lognormvariate(15.5, 1.0))  # ~5 ms median
        span = SynthSpan(trace, _sid(rnd), parent.span_id, name, stype, plugin, cursor,
                         cursor + dur, meta=meta, input={"q": name}, output={"ok": True})
        if rnd.random() < error_rate / 4:
            span.status = "error"
            span.error = {"type": "TimeoutError", "message": "upstream timed out",
                          "traceback": "File x.py, line 1"}
        cursor += dur // 3
        trace.spans.append(span)
        if stype in ("pipeline_stage", "plugin_call"):
            parents.append(span)
    # parents end after their children
    for span in reversed(trace.spans[1:]):
        end = max([span.end_ns] + [c.end_ns for c in trace.spans if c.parent_id == span.span_id])
        span.end_ns = end + 1_000
    root.end_ns = max(s.end_ns for s in trace.spans[1:]) + 1_000 if n > 1 else t + 1_000_000
    trace.end_ns = root.end_ns
    if any(s.status == "error" for s in trace.spans):
        trace.status = "error"


def feed(sink: Any, trace: SynthTrace, *, started: bool = False) -> None:
    """Call ``sink``'s hooks for a finished trace in the tracer's order (children end first)."""
    sink.botrace_trace_started(trace=trace)
    if started and hasattr(sink, "botrace_span_started"):
        for span in trace.spans:
            sink.botrace_span_started(span=span)
    for span in sorted(trace.spans, key=lambda s: s.end_ns):
        sink.botrace_span_finished(span=span)
    sink.botrace_trace_finished(trace=trace)
