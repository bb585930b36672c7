"""From the host's path to the sinks: a bounded queue and one dispatcher thread.

What the host's path queues: a trace started, a span finished, a trace
finished. Span *starts* cost it nothing: every trace keeps its spans in an
append-only list, and on each pass the dispatcher announces the entries it has
not announced yet (before any of them is announced finished), so sinks still
see ``botrace_span_started`` for every span, running ones included, in start
order.

The host's path appends ``(kind, obj)`` tuples to a ``collections.deque``
(thread-safe, no lock, no allocation beyond the tuple); the bound is checked
where a span starts, so a full queue costs new spans (counted), never a block. A daemon thread wakes
every ``dispatch_interval`` (or at once when a trace finishes or the queue
fills up), takes what is queued and calls each sink's hook for each event.

Why a thread rather than an asyncio task: a sink that blocks (a full disk, a
locked database, a slow network) then stalls only the other sinks, never the
host's event loop. Each sink is called on its own, so one that raises does not
keep the event from the others; its fault is logged at most once per
``_LOG_EVERY`` seconds and counted in :meth:`Dispatcher.health`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pluggy

from botrace.span import SPAN_FINISHED, SPAN_STARTED, TRACE_FINISHED, TRACE_STARTED

__all__ = ["Dispatcher", "RateLimitedLog", "call_isolated"]

log = logging.getLogger("botrace")

_HOOKS = {
    TRACE_STARTED: ("botrace_trace_started", "trace"),
    SPAN_STARTED: ("botrace_span_started", "span"),
    SPAN_FINISHED: ("botrace_span_finished", "span"),
    TRACE_FINISHED: ("botrace_trace_finished", "trace"),
}
_LOG_EVERY = 10.0
_SLOW_CALL_S = 0.5
_BATCH = 1024


class RateLimitedLog:
    """Log a recurring fault once per interval per key, and count every occurrence."""

    def __init__(self, logger: logging.Logger = log, every: float = _LOG_EVERY) -> None:
        self._logger = logger
        self._every = every
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def __call__(self, key: str, message: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            last = self._last.get(key)
            if last is not None and now - last < self._every:
                return
            self._last[key] = now
            repeated = self.counts[key]
        suffix = f" ({repeated} times so far)" if repeated > 1 else ""
        self._logger.warning(message + suffix, *args, exc_info=exc_info)


def call_isolated(pm: pluggy.PluginManager, hook_name: str, faults: RateLimitedLog,
                  **kwargs: Any) -> list[Any]:
    """Call every implementation of a hook on its own; a raising one is logged and counted.

    pluggy stops at the first implementation that raises; botrace's sinks must
    not keep an event from each other, so they are called one by one.
    """
    results = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        try:
            result = impl.function(*[kwargs[name] for name in impl.argnames])
        except Exception:
            faults(f"{impl.plugin_name}.{hook_name}", "botrace: sink %s failed in %s",
                   impl.plugin_name, hook_name, exc_info=True)
            continue
        if result is not None:
            results.append(result)
    return results


_MAX_RUNNING = 100_000


def _announce(trace: Any, out: list[tuple[int, Any]]) -> None:
    """Queue SPAN_STARTED for the spans of ``trace`` not announced yet (dispatcher thread only)."""
    spans = trace.spans
    end = len(spans)
    start = trace._announced
    if start < end:
        trace._announced = end
        out.extend((SPAN_STARTED, span) for span in spans[start:end])


class _Sink:
    """One sink's event hooks, indexed by event kind (None where it has no such hook)."""

    __slots__ = ("calls", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[Callable[[Any], Any] | None] = [None] * len(_HOOKS)


def _no_argument(function: Callable[[], Any]) -> Callable[[Any], Any]:
    return lambda obj: function()


class Dispatcher:
    """Owns the event queue and the thread that empties it into the sinks."""

    def __init__(self, pm: pluggy.PluginManager, max_events: int, interval_s: float) -> None:
        self._pm = pm
        self.max_events = max_events
        self.interval_s = interval_s
        self.queue: deque[tuple[int, Any]] = deque()
        self.dropped_events = 0
        self.dispatched_events = 0
        self.faults = RateLimitedLog()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._sinks: list[_Sink] = []
        self._wants_starts = False  # does any sink implement botrace_span_started?
        self._sink_errors: dict[str, int] = {}
        self._sink_slow: dict[str, int] = {}
        self._drain_lock = threading.Lock()
        self._running: dict[Any, None] = {}  # traces started and not yet finished, oldest first

    # -- the host's path ----------------------------------------------------

    def note_dropped(self) -> None:
        """A span or trace was not recorded because the queue is full (the host's path)."""
        self.dropped_events += 1
        self.faults("queue_full", "botrace: event queue full (%d); dropping new spans", self.max_events)
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="botrace-dispatch", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Dispatch what is queued, then stop the thread."""
        thread = self._thread
        if thread is None:
            self.drain()
            return
        self._stop = True
        self._wake.set()
        thread.join(timeout)
        self._thread = None
        self.drain()

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until every event queued so far reached the sinks; False on timeout."""
        if not self.running:
            self.drain()
            return True
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self.queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(left, 0.05))
        return True

    # -- the dispatcher thread --------------------------------------------------

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.drain()
        self.drain()

    def refresh(self) -> None:
        """Re-read which sinks implement which hook (after register/unregister)."""
        sinks: dict[str, _Sink] = {}
        for kind, (hook_name, argname) in _HOOKS.items():
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                names = impl.argnames
                if names and names != (argname,):
                    continue  # pluggy has already rejected such an impl at register
                sink = sinks.get(impl.plugin_name)
                if sink is None:
                    sink = sinks[impl.plugin_name] = _Sink(impl.plugin_name)
                sink.calls[kind] = impl.function if names else _no_argument(impl.function)
        self._sinks = list(sinks.values())
        self._wants_starts = any(sink.calls[SPAN_STARTED] is not None for sink in self._sinks)

    def drain(self) -> int:
        """Dispatch everything queued now, in order; returns how many events."""
        with self._drain_lock:
            with self._idle:
                self._busy = True
            try:
                return self._drain()
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()

    def _drain(self) -> int:
        queue = self.queue
        if not queue and not self._running:
            return 0
        self.refresh()  # a sink registered straight on the PluginManager is seen too
        done = 0
        while True:
            # Take a batch, then give it to one sink after another: each sink
            # sees the events in order, and timing a sink costs two clock reads
            # per batch rather than per event.
            batch = [queue.popleft() for _ in range(min(len(queue), _BATCH))]
            if self._wants_starts:
                batch = self._with_starts(batch)
            elif self._running:
                self._running.clear()  # nobody listens to starts any more
            if not batch:
                break
            for sink in self._sinks:
                calls = sink.calls
                started = time.perf_counter()
                for kind, obj in batch:
                    call = calls[kind]
                    if call is None:
                        continue
                    try:
                        call(obj)
                    except Exception:
                        self._sink_failed(sink.name, _HOOKS[kind][0])
                elapsed = time.perf_counter() - started
                if elapsed > _SLOW_CALL_S:
                    self._sink_slow[sink.name] = self._sink_slow.get(sink.name, 0) + 1
                    self.faults(f"{sink.name}.slow", "botrace: sink %s took %.1fs for %d events",
                                sink.name, elapsed, len(batch))
            done += len(batch)
            if not queue:
                break
        self.dispatched_events += done
        return done

    def _with_starts(self, batch: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        """``batch`` with a SPAN_STARTED event put before each span's first appearance.

        Spans are appended to ``trace.spans`` before they can finish, so by the
        time a span's finish is popped its start is in the list. After the batch,
        the spans that started in traces still running are announced too, so a
        page can show what is running now.
        """
        out: list[tuple[int, Any]] = []
        running = self._running
        for event in batch:
            kind, obj = event
            if kind == SPAN_FINISHED:
                _announce(obj.trace, out)
            elif kind == TRACE_STARTED:
                running[obj] = None
                if len(running) > _MAX_RUNNING:  # roots that never end must not pile up
                    del running[next(iter(running))]
                out.append(event)
                _announce(obj, out)
                continue
            elif kind == TRACE_FINISHED:
                _announce(obj, out)
                running.pop(obj, None)
            out.append(event)
        for trace in list(running):
            _announce(trace, out)
        return out

    def _sink_failed(self, name: str, hook: str) -> None:
        self._sink_errors[name] = self._sink_errors.get(name, 0) + 1
        self.faults(f"{name}.{hook}", "botrace: sink %s failed in %s", name, hook, exc_info=True)

    def health(self) -> dict[str, Any]:
        return {
            "queue_depth": len(self.queue),
            "queue_capacity": self.max_events,
            "dispatched_events": self.dispatched_events,
            "dropped_events": self.dropped_events,
            "sink_errors": dict(self._sink_errors),
            "sink_slow_calls": dict(self._sink_slow),
            "dispatcher_running": self.running,
        }
