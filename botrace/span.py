"""The span model: one :class:`Trace` per message, a tree of :class:`Span` in it.

Everything here runs on the host's path, so it does in-memory work only:
create objects, set fields, link parent and child, append an event to the
tracer's queue. Serialisation (:meth:`Span.to_dict`, :meth:`Trace.to_dict`)
is called by sinks, off that path.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import Mapping
from random import getrandbits
from time import time_ns
from typing import TYPE_CHECKING, Any

from botrace.context import current_span_var
from botrace.limits import (
    INT_MAX,
    INT_MIN,
    SCAN_MIN,
    Limits,
    describe_error,
    make_safe_args,
    mask_secrets,
    may_hold_secret,
    secret_key_cache,
)

if TYPE_CHECKING:
    from botrace.attribution import PluginRef
    from botrace.tracer import Tracer

__all__ = ["NULL_SPAN", "NullSpan", "Span", "SpanType", "Status", "Trace"]


class SpanType:
    """The kinds of span the web page and exporters understand."""

    MESSAGE = "message"
    PIPELINE_STAGE = "pipeline_stage"
    PLUGIN_CALL = "plugin_call"
    LLM_CALL = "llm_call"
    TOOL_CALL = "tool_call"
    SUBAGENT_CALL = "subagent_call"
    IO_CALL = "io_call"
    CUSTOM = "custom"
    ALL = frozenset({MESSAGE, PIPELINE_STAGE, PLUGIN_CALL, LLM_CALL, TOOL_CALL,
                     SUBAGENT_CALL, IO_CALL, CUSTOM})


class Status:
    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"


# Event kinds. The host's path queues TRACE_STARTED, SPAN_FINISHED and
# TRACE_FINISHED; the dispatcher derives SPAN_STARTED (see botrace.dispatch).
TRACE_STARTED, SPAN_STARTED, SPAN_FINISHED, TRACE_FINISHED = range(4)

#: Root attributes that get a column of their own in summaries and the store.
TRACE_FIELDS = ("umo", "sender", "user_id", "session_id", "outline", "agent_type", "platform")
_OUTLINE_MAX = 500
_MASK64 = (1 << 64) - 1
_BUDGET_NOTE = "[dropped: trace byte budget exceeded]"
#: Token counts a total can add up (SQLite holds signed 64-bit integers).
_TOKEN_KEYS = ("input_tokens", "output_tokens", "cached_tokens")
_MAX_COUNT = 1 << 63
_known_key = secret_key_cache.get
_type_name = type.__dict__["__name__"].__get__  # a class's name, without a metaclass's code
_LLM_CALL = SpanType.LLM_CALL
_set_current = current_span_var.set
_reset_current = current_span_var.reset


def _new_trace_id() -> str:
    """32 hex digits: the current second (8, as in AWS X-Ray's ids), then 96 random bits.

    W3C trace context wants the rightmost 7 bytes random; they are. Ids made at about
    the same time sort together, so the store's trace-id index grows at its end instead
    of taking writes all over it (a twentieth of the store writer's time at 5,000
    traces/s, docs/PERFORMANCE.md)."""
    return f"{(time_ns() // 1_000_000_000) & 0xFFFFFFFF:08x}{getrandbits(96):024x}"


class Trace:
    """One traced message: its root span, every recorded span, the host's attributes.

    Budgets: at most ``limits.max_spans`` spans and about ``limits.max_trace_bytes``
    bytes of values; what goes over is dropped and counted (``dropped_spans``,
    ``truncated``), never silently lost. ``unrecordable`` counts the values whose
    own code raised while they were recorded (shown as ``[unrecordable: TypeName]``;
    the tracer's health counts them too, under ``faults["unrecordable_value"]``).
    """

    __slots__ = ("_announced", "_append", "_bytes", "_dropped", "_flat_ok", "_id_base", "_max_bytes",
                 "_max_spans", "_max_string", "_queue", "_queue_max", "_seq",
                 "attributes", "end_ns", "limits", "name", "root", "spans", "start_ns", "trace_id",
                 "tracer", "truncated", "unrecordable")

    def __init__(self, tracer: Tracer, name: str, attributes: Mapping[str, Any] | None,
                 limits: Limits, queue: deque, queue_max: int) -> None:
        self.tracer = tracer
        self.trace_id = _new_trace_id()
        self.name = name
        self.limits = limits
        self._max_spans = limits.max_spans
        self._max_bytes = limits.max_trace_bytes
        self._max_string = limits.max_string
        # Extra redaction fragments, or no redaction, need the full walk.
        self._flat_ok = limits.redact and not limits.extra_redact_keys
        # Span ids: a random 64-bit base per trace plus the span's sequence
        # number. Unique within the trace (what W3C, OTLP and Zipkin need) and
        # cheaper than drawing 64 random bits per span.
        self._id_base = getrandbits(64)
        # Events go straight onto the dispatcher's deque (thread-safe append).
        # The queue is bounded where spans start (start_child): a span that is
        # not started emits no events, so the bound holds within 2x.
        self._queue = queue
        self._queue_max = queue_max
        self._append = queue.append
        # How many of ``spans`` the dispatcher has announced as started. A span
        # start puts nothing on the queue: the dispatcher reads new entries of
        # this append-only list instead (see botrace.dispatch).
        self._announced = 0
        self._seq = itertools.count()
        self._dropped = 0
        self._bytes = 0
        self.truncated = False
        self.unrecordable = 0
        self.spans: list[Span] = []
        self.attributes: dict[str, Any] = {}
        if attributes:
            self.set_attributes(attributes)
        self.root: Span = Span(self, name, SpanType.MESSAGE, None, None, next(self._seq))
        self.start_ns = self.root.start_ns
        self.end_ns: int | None = None
        self.spans.append(self.root)
        self._append((TRACE_STARTED, self))

    @property
    def dropped_spans(self) -> int:
        return self._dropped

    def set_attributes(self, attributes: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        """Add host message attributes (``umo``, ``sender``, ``user_id``, ...)."""
        safe, walk = make_safe_args(attributes, more, self.limits)
        outline = safe.get("outline")
        if isinstance(outline, str) and len(outline) > _OUTLINE_MAX:
            safe["outline"] = outline[:_OUTLINE_MAX] + "…"
        self.attributes.update(safe)
        if walk.truncated:
            self.truncated = True
        if walk.failures:
            _unrecordable(self, None, walk.failures, walk.failure)

    def _refuse_span(self, seq: int) -> None:
        """Count a span not recorded: the span budget is spent or the tracer's queue is full."""
        with _drop_lock:
            self._dropped += 1
        self.truncated = True
        if seq < self._max_spans:
            self.tracer._queue_full()

    def _failed(self) -> None:
        """A span of the trace is failing (a held trace, botrace.sampling, keeps it for that)."""

    def _finished(self, end_ns: int) -> None:
        self.end_ns = end_ns
        # No wake-up of the dispatcher here: waking it per message costs a GIL
        # hand-off (~100 us on this VM); it drains on its interval instead,
        # many messages per hand-off.
        self._append((TRACE_FINISHED, self))

    @property
    def status(self) -> str:
        root_status = self.root.status
        if root_status == Status.RUNNING:
            return Status.RUNNING
        if any(s.status == Status.ERROR for s in self.spans):
            return Status.ERROR
        return root_status

    def to_dict(self) -> dict[str, Any]:
        """The trace's summary: host attributes, totals, status (see docs/ARCHITECTURE.md)."""
        spans = list(self.spans)
        input_tokens = output_tokens = cached_tokens = llm_calls = tool_calls = 0
        plugins: list[str] = []
        seen_plugins: set[str] = set()
        for span in spans:
            if span.span_type == SpanType.LLM_CALL:
                llm_calls += 1
                meta = span.meta or {}
                input_tokens += _int(meta.get("input_tokens"))
                output_tokens += _int(meta.get("output_tokens"))
                cached_tokens += _int(meta.get("cached_tokens"))
            elif span.span_type == SpanType.TOOL_CALL:
                tool_calls += 1
            plugin = span.plugin
            if plugin is not None and plugin.name not in seen_plugins:
                seen_plugins.add(plugin.name)
                plugins.append(plugin.name)
        attributes = dict(self.attributes)
        out: dict[str, Any] = {
            "trace_id": self.trace_id,
            "name": self.name,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "duration_ns": None if self.end_ns is None else self.end_ns - self.start_ns,
            "status": self.status,
        }
        for key in TRACE_FIELDS:
            value = attributes.pop(key, None)
            out[key] = None if value is None else str(value)
        out.update(
            attributes=attributes,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached_tokens,
            span_count=len(spans),
            llm_calls=llm_calls,
            tool_calls=tool_calls,
            plugins=plugins,
            dropped_spans=self._dropped,
            truncated=self.truncated,
        )
        return out

    def __repr__(self) -> str:
        return f"<Trace {self.trace_id} {self.name!r} spans={len(self.spans)} status={self.status}>"


_drop_lock = threading.Lock()
_RUNNING, _OK = Status.RUNNING, Status.OK


def _int(value: Any) -> int:
    """A token count as the store counts it (botrace.store.folding._tok)."""
    return value if type(value) is int and 0 <= value < _MAX_COUNT else 0


class Span:
    """One timed operation in a trace.

    Use it as a context manager (``with`` or ``async with``): entering makes it
    the current span, leaving ends it, recording an exception if one escapes
    (re-raised unchanged). ``CancelledError`` ends it as ``cancelled``;
    ``GeneratorExit`` (a generator closed early) ends it as ``ok``.
    """

    # ``_id`` is the span's sequence number in its trace and ``_parent`` its
    # parent's (None for the root); the 64-bit W3C id is derived from them and
    # the trace's random base, and formatted, only when read (to_dict, sinks).
    __slots__ = ("_id", "_parent", "_token", "end_ns", "error", "events", "input", "meta", "name",
                 "output", "plugin", "span_type", "start_ns", "status", "trace", "truncated")

    def __init__(self, trace: Trace, name: str, span_type: str, parent: int | None,
                 plugin: PluginRef | None, seq: int) -> None:
        self.trace = trace
        self._id = seq
        self._parent = parent
        self.name = name
        self.span_type = span_type
        self.plugin = plugin
        self.start_ns = time_ns()
        self.end_ns: int | None = None
        self.status = _RUNNING
        self.error: dict[str, str] | None = None
        self.input: dict[str, Any] | None = None
        self.output: dict[str, Any] | None = None
        self.meta: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] | None = None
        self.truncated = False
        self._token: Any = None

    # -- creating children ------------------------------------------------

    def start_child(self, name: str, span_type: str = SpanType.CUSTOM,
                    plugin: PluginRef | None = None, module: str | None = None) -> Span | None:
        """Open a child span; ``None`` when the trace's span budget is spent (counted).

        Attribution: ``plugin`` if given, else the plugin owning ``module``,
        else this span's plugin.
        """
        trace = self.trace
        seq = next(trace._seq)
        if seq >= trace._max_spans or len(trace._queue) >= trace._queue_max:
            trace._refuse_span(seq)
            return None
        if plugin is None:
            if module is not None:
                plugin = trace.tracer.plugins.resolve(module)
            if plugin is None:
                plugin = self.plugin
        span = Span(trace, name, span_type, self._id, plugin, seq)
        trace.spans.append(span)
        return span

    # -- annotating ---------------------------------------------------------

    @property
    def trace_id(self) -> str:
        return self.trace.trace_id

    @property
    def span_id(self) -> str:
        return _hex_id(self.trace._id_base, self._id)

    @property
    def parent_id(self) -> str | None:
        parent = self._parent
        return None if parent is None else _hex_id(self.trace._id_base, parent)

    @property
    def children(self) -> list[Span]:
        """The spans opened directly under this one, in start order."""
        me = self._id
        return [s for s in self.trace.spans if s._parent == me]

    @property
    def duration_ns(self) -> int | None:
        return None if self.end_ns is None else self.end_ns - self.start_ns

    # The three setters repeat a few lines rather than share a helper: they are
    # on the host's path and a call costs more than the lines. None of them
    # raises into the caller, whatever it passes (see _admit).
    def set_input(self, mapping: Mapping[str, Any] | None = None, /, **values: Any) -> Span:
        """Record inputs (merged with earlier ones): ``span.set_input(url=url)``.

        Values are bounded and redacted on the way in (see :mod:`botrace.limits`);
        one that cannot be read shows as ``[unrecordable: TypeName]``. Ignored
        once the span has ended (sinks may be reading it).
        """
        if self.end_ns is None and (values or mapping is not None):
            safe = _admit(self, mapping, values)
            current = self.input
            if current is None:
                self.input = safe
            else:
                current.update(safe)
        return self

    def set_output(self, mapping: Mapping[str, Any] | None = None, /, **values: Any) -> Span:
        """Record outputs (merged): ``span.set_output(status=200)``."""
        if self.end_ns is None and (values or mapping is not None):
            safe = _admit(self, mapping, values)
            current = self.output
            if current is None:
                self.output = safe
            else:
                current.update(safe)
        return self

    def set_meta(self, mapping: Mapping[str, Any] | None = None, /, **values: Any) -> Span:
        """Record attributes that are neither input nor output (model, cache hit, ...).

        On an ``llm_call`` span, token counts are checked as by :meth:`set_usage`.
        """
        if self.end_ns is None and (values or mapping is not None):
            safe = _admit(self, mapping, values)
            if self.span_type == _LLM_CALL:
                _check_usage(self, safe)
            current = self.meta
            if current is None:
                self.meta = safe
            else:
                current.update(safe)
        return self

    def set_usage(self, input_tokens: int | None = None, output_tokens: int | None = None,
                  cached_tokens: int | None = None, **more: Any) -> Span:
        """Token usage of an ``llm_call`` span; totals on the trace add these up.

        A count must be an int from 0 to 2**63 - 1. Anything else (negative, larger,
        a float, a string) is not counted, and not dropped quietly either: it is
        kept in ``meta["usage_rejected"]`` and the span is marked ``truncated``::

            span.set_usage(input_tokens=812, output_tokens=-1)
            # meta: {"input_tokens": 812, "usage_rejected": {"output_tokens": -1}}
        """
        usage = {k: v for k, v in (("input_tokens", input_tokens), ("output_tokens", output_tokens),
                                   ("cached_tokens", cached_tokens)) if v is not None}
        usage.update(more)
        if usage and self.end_ns is None:
            safe = _admit(self, None, usage)
            _check_usage(self, safe)
            current = self.meta
            if current is None:
                self.meta = safe
            else:
                current.update(safe)
        return self

    def add_event(self, name: str, **attributes: Any) -> Span:
        """A timestamped point in the span's life (a retry, a cache miss, a first token).

        The name and the attributes are made safe as values are (bounded, redacted).
        """
        if self.end_ns is None:
            record = _admit(self, None, {"name": name, **attributes})
            name = record.pop("name", "")
            event = {"name": name if type(name) is str else str(name), "time_ns": time_ns(),
                     "attributes": record}
            if self.events is None:
                self.events = [event]
            elif len(self.events) < self.trace.limits.max_items:
                self.events.append(event)
            else:
                self.truncated = self.trace.truncated = True
        return self

    def set_error(self, error: BaseException | str) -> Span:
        """Mark the span failed with an exception (type, message, bounded traceback) or a message.

        The message and the traceback are redacted as values are: ``password=hunter2``
        in a message shows as ``password=[redacted]``.
        """
        if self.end_ns is None:
            self.status = Status.ERROR
            self.error = _describe_error(self, error)
        return self

    # -- ending ---------------------------------------------------------------

    def end(self, error: BaseException | None = None) -> None:
        """End the span (idempotent). ``error`` is recorded as by :meth:`record_exception`."""
        if self.end_ns is not None:
            return
        if error is not None:
            self.record_exception(error)
        elif self.status == Status.RUNNING:
            self.status = Status.OK
        end_ns = time_ns()
        self.end_ns = end_ns
        trace = self.trace
        trace._append((SPAN_FINISHED, self))
        if self is trace.root:
            trace._finished(end_ns)

    def record_exception(self, exc: BaseException) -> None:
        """Set status and error from an exception escaping the span (ignored once ended)."""
        if self.end_ns is not None:
            return
        # By the exception's type: isinstance() would also ask the object's own
        # __class__, which an exception class may make a property that raises.
        kind = type(exc)
        if issubclass(kind, asyncio.CancelledError):
            self.status = Status.CANCELLED
        elif issubclass(kind, GeneratorExit):
            if self.status == Status.RUNNING:
                self.status = Status.OK
            self.set_meta(closed_early=True)
        elif issubclass(kind, BaseException):
            self.status = Status.ERROR
            self.error = _describe_error(self, exc)

    def __enter__(self) -> Span:
        self._token = _set_current(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        token = self._token
        if token is not None:
            self._token = None
            try:
                _reset_current(token)
            except ValueError:
                _restore_elsewhere(token)
        if exc is not None or self.end_ns is not None or self._parent is None:
            self.end(exc)  # an error, a second end, or the root (which ends the trace)
            return
        # The common exit, inlined from end(): it runs once per span.
        if self.status == _RUNNING:
            self.status = _OK
        self.end_ns = time_ns()
        self.trace._append((SPAN_FINISHED, self))

    async def __aenter__(self) -> Span:
        self._token = _set_current(self)
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        _restore(self)
        self.end(exc)

    # No __bool__: a span is true as any object is (at C speed); NullSpan is false.

    # -- reading --------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (see docs/ARCHITECTURE.md); safe to call from another thread."""
        end_ns = self.end_ns
        plugin = self.plugin
        trace = self.trace
        parent = self._parent
        return {
            "trace_id": trace.trace_id,
            "span_id": _hex_id(trace._id_base, self._id),
            "parent_id": None if parent is None else _hex_id(trace._id_base, parent),
            "name": self.name,
            "span_type": self.span_type,
            "start_ns": self.start_ns,
            "end_ns": end_ns,
            "duration_ns": None if end_ns is None else end_ns - self.start_ns,
            "status": self.status,
            "error": self.error,
            "input": _copy(self.input),
            "output": _copy(self.output),
            "meta": _copy(self.meta),
            "events": list(self.events) if self.events else [],
            "plugin": plugin.to_dict() if plugin is not None else None,
            "truncated": self.truncated,
        }

    def __repr__(self) -> str:
        return f"<Span {self.name!r} {self.span_type} {self.status} id={self.span_id}>"


def _admit(span: Span, mapping: Any, values: dict[str, Any]) -> dict[str, Any]:
    """A setter's arguments made safe and charged to the trace's byte budget.

    This is where a plugin's values enter a span, and the boundary that keeps
    tracing from failing the plugin: nothing raises out of here. Within the walk
    a value whose own code raises becomes ``[unrecordable: TypeName]`` and its
    siblings are kept (``botrace.limits._Walker.guarded``); the ``except`` below
    is the last line, for what could still raise around the walk (a mapping's
    keys hashing or comparing oddly).

    The common case, a few short strings and numbers under keys already known
    not to be secrets, is checked in one flat loop and the dict is kept as it
    is (``values``, the caller's ``**kwargs``, or a copy of ``mapping``);
    anything else goes through :func:`~botrace.limits.make_safe_args`.
    """
    trace = span.trace
    try:
        if mapping is not None:
            if type(mapping) is not dict:
                return _admit_walked(span, mapping, values)
            values = {**mapping, **values} if values else mapping.copy()
        size = 24 * len(values)
        if trace._flat_ok:
            known = _known_key
            max_string = trace._max_string
            for key, value in values.items():
                if known(key) is not False:  # unknown, secret, or not a string key
                    break
                kind = type(value)
                if kind is str:
                    n = len(value)
                    if n > max_string or (n >= SCAN_MIN and may_hold_secret(value)
                                          and mask_secrets(value) is not value):
                        break
                    size += n
                elif kind is int:
                    if not INT_MIN <= value <= INT_MAX:
                        break
                elif kind is float:
                    if value - value != 0.0:  # NaN and infinities are not JSON
                        break
                elif kind is not bool and value is not None:
                    break
            else:
                total = trace._bytes + size
                if total <= trace._max_bytes:
                    trace._bytes = total
                    return values
                return _over_budget(span, values)
        return _admit_walked(span, None, values)
    except Exception as exc:
        _unrecordable(trace, span, 1, exc)
        return {"value": f"[unrecordable: {_type_name(type(mapping if mapping is not None else values))}]"}


def _admit_walked(span: Span, mapping: Any, values: dict[str, Any]) -> dict[str, Any]:
    trace = span.trace
    safe, walk = make_safe_args(mapping, values, trace.limits)
    if walk.truncated:
        span.truncated = trace.truncated = True
    if walk.failures:
        _unrecordable(trace, span, walk.failures, walk.failure)
    total = trace._bytes + walk.size
    if total > trace._max_bytes:
        return _over_budget(span, safe)
    trace._bytes = total
    return safe


def _unrecordable(trace: Trace, span: Span | None, failures: int, error: BaseException | None) -> None:
    """Count values that could not be recorded: on the trace (``unrecordable``, ``truncated``),
    the span (``truncated``) and the tracer's health (``faults["unrecordable_value"]``,
    logged at most every 10 s with the first error's traceback)."""
    trace.unrecordable += failures
    trace.truncated = True
    if span is not None:
        span.truncated = True
    trace.tracer._dispatcher.faults(
        "unrecordable_value", "botrace: %d value(s) on span %r could not be recorded (%s); "
        "they show as [unrecordable: TypeName]", failures, trace.name if span is None else span.name,
        _type_name(type(error)), exc_info=error)


def _check_usage(span: Span, meta: dict[str, Any]) -> None:
    """Keep the token counts a total can add up; move the others to ``usage_rejected``."""
    rejected = None
    for key in _TOKEN_KEYS:
        value = meta.get(key)
        if value is None or value is _BUDGET_NOTE or (type(value) is int and 0 <= value < _MAX_COUNT):
            continue
        if rejected is None:
            rejected = {}
        rejected[key] = meta.pop(key)
    if rejected is not None:
        meta["usage_rejected"] = rejected
        span.truncated = span.trace.truncated = True


def _over_budget(span: Span, values: dict[str, Any]) -> dict[str, Any]:
    span.truncated = span.trace.truncated = True
    return dict.fromkeys(values, _BUDGET_NOTE)


def _hex_id(base: int, seq: int) -> str:
    """The W3C span id of the span numbered ``seq`` in a trace whose id base is ``base``."""
    return f"{((base + seq) & _MASK64) or 1:016x}"


def _copy(value: dict | None) -> dict:
    return dict(value) if value else {}


def _restore(span: Span) -> None:
    token = span._token
    span._token = None
    if token is None:
        return
    try:
        current_span_var.reset(token)
    except ValueError:
        _restore_elsewhere(token)


def _restore_elsewhere(token: Any) -> None:
    # Left in another context than it was entered in (a generator driven from
    # several tasks): put back what was current when the span was entered.
    old = token.old_value
    current_span_var.set(None if old is token.MISSING else old)


def _describe_error(span: Span, error: Any) -> dict[str, str]:
    """The span's error, as recorded; called once per span that fails."""
    trace = span.trace
    trace._failed()
    described, walk = describe_error(error, trace.limits)
    if walk.failures:
        _unrecordable(span.trace, span, walk.failures, walk.failure)
    return described


class NullSpan:
    """The span handed out when nothing is traced: every method does nothing.

    There is one, :data:`NULL_SPAN`; it is falsy, so ``if span:`` tells a real
    span from it.
    """

    __slots__ = ()
    trace = None
    trace_id = span_id = parent_id = None
    name = ""
    span_type = SpanType.CUSTOM
    plugin = None
    status = Status.OK
    input = output = meta = error = events = None
    children: tuple = ()
    truncated = False

    def start_child(self, *args: Any, **kwargs: Any) -> None:
        return None

    def set_input(self, *args: Any, **kwargs: Any) -> NullSpan:
        return self

    set_output = set_meta = set_usage = add_event = set_error = set_input

    def end(self, error: BaseException | None = None) -> None:
        return None

    def record_exception(self, exc: BaseException) -> None:
        return None

    def __enter__(self) -> NullSpan:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    async def __aenter__(self) -> NullSpan:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def __bool__(self) -> bool:
        return False

    def to_dict(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return "<NullSpan>"


NULL_SPAN = NullSpan()
