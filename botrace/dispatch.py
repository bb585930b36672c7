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

A sink that proves slow would hold every other sink back behind it, the store
included. A watchdog thread looks every ``_WATCH_S``: when the dispatcher has been
inside one sink's batch for more than ``_SLOW_CALL_S``, a new dispatcher thread takes
over the other sinks (starting with the rest of that batch), and the stuck thread, once
the sink lets it go, finishes that sink's batch and stays that sink's own thread (a
*lane*): from then on the dispatcher hands the sink each batch and goes on. A lane holds
at most ``max_events`` events; what does not fit is counted as undelivered to that sink.
The watchdog reads a clock a few times a second; the dispatcher, one per sink and batch.

Stopping is bounded: :meth:`Dispatcher.stop` waits at most its ``timeout`` for the
sinks to take what is queued. A sink stuck past it cannot be interrupted (it runs in
a daemon thread), so the dispatcher gives up on the rest: from then on every event
left (the rest of the batch in hand, and whatever is still queued) is counted, per
sink, as undelivered (``sink_undelivered`` in the health) instead of being handed
over, and the caller returns at once.
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
_WATCH_S = 0.1  # how often the watchdog looks at the sink the dispatcher is in
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

    def abandon(self, count: Callable[[str], None]) -> None:
        """From now on, count each event instead of handing it over (in place: the
        dispatcher thread sees it at its next event, even in the middle of a batch)."""
        calls = self.calls
        for kind, call in enumerate(calls):
            if call is not None:
                calls[kind] = lambda obj, name=self.name: count(name)


def _no_argument(function: Callable[[], Any]) -> Callable[[Any], Any]:
    return lambda obj: function()


class _Lane:
    """A thread of its own for a sink that proved slow (see the module's doc): a new one,
    or the dispatcher thread the sink held (``adopt``), which serves the lane once the
    sink lets it go."""

    def __init__(self, sink: _Sink, dispatcher: Dispatcher,
                 adopt: threading.Thread | None = None) -> None:
        self.sink = sink  # (the latest, from the dispatcher's last refresh)
        # an adopted thread goes on with the record of the sink it held (see abandon)
        self.adopted = sink if adopt is not None else None
        self.dispatcher = dispatcher
        self.queue: deque[tuple[int, Any]] = deque()
        self.calling = adopt is not None  # (an adopted thread is in the sink now)
        self.stopping = False
        self._wake = threading.Event()
        if adopt is not None:
            self.thread = adopt
        else:
            self.thread = threading.Thread(target=self.serve, daemon=True,
                                           name=f"botrace-dispatch-{sink.name}")
            self.thread.start()

    def put(self, sink: _Sink, batch: list[tuple[int, Any]]) -> None:
        """Queue ``batch`` for the sink (dispatcher thread); what does not fit is counted."""
        self.sink = sink
        room = self.dispatcher.max_events - len(self.queue)
        if len(batch) > room:
            calls = sink.calls
            for kind, _ in batch[max(room, 0):]:
                if calls[kind] is not None:
                    self.dispatcher._count_undelivered(sink.name)
            batch = batch[:max(room, 0)]
        self.queue.extend(batch)
        self._wake.set()

    @property
    def busy(self) -> bool:
        return bool(self.queue) or self.calling

    def stop(self) -> None:
        self.stopping = True
        self._wake.set()

    def abandon(self, count: Callable[[str], None]) -> None:
        """Count instead of delivering, from the next event on: in the lane's queue, and in
        the batch an adopted thread is still in (it holds an older record of the sink)."""
        self.stop()
        self.sink.abandon(count)
        if self.adopted is not None:
            self.adopted.abandon(count)
        while True:  # (the lane's thread may pop some too: each is counted once)
            try:
                kind, _ = self.queue.popleft()
            except IndexError:
                break
            if self.sink.calls[kind] is not None:
                count(self.sink.name)

    def serve(self) -> None:
        """The lane's loop: the sink's events, in order, until stopped."""
        queue = self.queue
        self.calling = False
        while True:
            self._wake.wait(0.05)
            self._wake.clear()
            while True:
                try:
                    kind, obj = queue.popleft()
                except IndexError:
                    break
                call = self.sink.calls[kind]
                if call is None:
                    continue
                self.calling = True
                try:
                    call(obj)
                except Exception:
                    self.dispatcher._sink_failed(self.sink.name, _HOOKS[kind][0])
                finally:
                    self.calling = False
            if self.stopping:
                return


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
        self._busy = 0  # drains under way
        self._stop = False
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._watch_stop = threading.Event()
        self._turn = threading.Lock()  # the dispatcher's place (_current) vs a takeover
        # (thread, sinks, index, batch, since): the sink the dispatcher thread is in
        self._current: tuple | None = None
        self._sinks: list[_Sink] = []
        self._wants_starts = False  # does any sink implement botrace_span_started?
        self._sink_errors: dict[str, int] = {}
        self._sink_slow: dict[str, int] = {}
        self._undelivered: dict[str, int] = {}  # per sink: events abandoned at a stop
        self._undelivered_lock = threading.Lock()
        self._abandoned = False  # a stop ran out of time: events are counted, not handed over
        self._lanes: dict[str, _Lane] = {}  # sinks that proved slow: a thread each
        self._drain_lock = threading.Lock()
        self._pop_lock = threading.Lock()
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
        self._abandoned = False
        self._lanes = {}
        self._thread = threading.Thread(target=self._run, name="botrace-dispatch", daemon=True)
        self._thread.start()
        self._watch_stop.clear()
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                              name="botrace-dispatch-watchdog")
            self._watchdog.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Dispatch what is queued, then stop the thread, in at most ``timeout`` seconds
        (plus a few ms). What the sinks have not taken by then is abandoned and counted
        per sink (see the module's doc). True if everything was handed over."""
        try:
            return self._stop_within(timeout)
        finally:  # (the watchdog ends with the dispatcher: no thread is left behind)
            self._watch_stop.set()
            watchdog = self._watchdog
            if watchdog is not None and watchdog is not threading.current_thread():
                watchdog.join(1.0)

    def _stop_within(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            while True:  # (the dispatcher thread may be replaced by a takeover meanwhile)
                thread = self._thread
                if thread is None:
                    break
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread is not self._thread:
                    continue
                if thread.is_alive():  # a sink is stuck: give up on what is left
                    self._thread = None
                    self._abandon()
                    return False
                self._thread = None
        if self.queue:  # queued after the thread's last pass, or with no thread at all
            # (in a thread of its own, so that a sink stuck on it cannot hold the caller)
            tail = threading.Thread(target=self.drain, name="botrace-dispatch-stop", daemon=True)
            tail.start()
            tail.join(max(0.0, deadline - time.monotonic()))
            if tail.is_alive():
                self._abandon()
                return False
        for lane in list(self._lanes.values()):
            lane.stop()
        for lane in list(self._lanes.values()):
            lane.thread.join(max(0.0, deadline - time.monotonic()))
            if lane.thread.is_alive():
                self._abandon()
                return False
        return True

    def _abandon(self) -> None:
        """Count what is left instead of handing it over (see the module's doc)."""
        self._abandoned = True
        for sink in self._sinks:
            sink.abandon(self._count_undelivered)
        queue = self.queue
        with self._pop_lock:  # (not held by a thread stuck in a sink)
            while queue:
                kind, _ = queue.popleft()
                for sink in self._sinks:
                    if sink.calls[kind] is not None:
                        self._count_undelivered(sink.name)
        current = self._current  # (the sinks a stuck dispatcher thread is going through)
        if current is not None:
            for sink in current[1]:
                sink.abandon(self._count_undelivered)
        for lane in list(self._lanes.values()):
            lane.abandon(self._count_undelivered)
        self._running.clear()
        self.faults("abandoned", "botrace: sinks did not take every event before the stop's "
                    "timeout; the rest is counted as undelivered: %s", self._undelivered)

    def _count_undelivered(self, name: str) -> None:
        with self._undelivered_lock:
            self._undelivered[name] = self._undelivered.get(name, 0) + 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until every event queued so far reached the sinks; False on timeout."""
        if not self.running:
            self.drain()
            return True
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self.queue or self._busy or any(lane.busy for lane in list(self._lanes.values())):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(left, 0.05))
        return True

    # -- the dispatcher thread --------------------------------------------------

    def _run(self, first: tuple | None = None) -> None:
        """The dispatcher thread (``first``: the rest of a batch it takes over)."""
        me = threading.current_thread()
        if first is not None:
            with self._drain_lock:
                self._begin()
                try:
                    self._deliver_all(*first, me)
                finally:
                    self._end()
        while not self._stop and self._thread is me:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.drain()
        if self._thread is me:
            self.drain()
            return
        # taken over while a sink held it: it is now that sink's lane
        for lane in list(self._lanes.values()):
            if lane.thread is me:
                lane.serve()
                return

    def _watch(self) -> None:
        """The watchdog (see the module's doc)."""
        while not self._watch_stop.wait(_WATCH_S):
            current = self._current
            if current is None or time.perf_counter() - current[4] < _SLOW_CALL_S:
                continue
            with self._turn:
                if self._current is current and not self._abandoned:
                    self._take_over(*current)

    def _take_over(self, stuck: threading.Thread, sinks: list[_Sink], i: int,
                   batch: list[tuple[int, Any]], since: float) -> None:
        """The dispatcher thread has been in ``sinks[i]`` too long: that sink gets the
        thread as its lane; a new dispatcher thread goes on with the others (under
        ``_turn``)."""
        sink = sinks[i]
        self._lanes[sink.name] = _Lane(sink, self, adopt=stuck)
        self._note_slow(sink.name, time.perf_counter() - since, len(batch))
        self._current = None
        self._drain_lock = threading.Lock()  # (the stuck thread holds the old one)
        new = threading.Thread(target=self._run, args=((sinks[i + 1:], batch),),
                               name="botrace-dispatch", daemon=True)
        self._thread = new
        new.start()

    def _note_slow(self, name: str, elapsed: float, events: int) -> None:
        self._sink_slow[name] = self._sink_slow.get(name, 0) + 1
        self.faults(f"{name}.slow", "botrace: sink %s took %.1fs for %d events; it gets a "
                    "thread of its own", name, elapsed, events)

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
        if self._abandoned:
            for sink in sinks.values():
                sink.abandon(self._count_undelivered)
        self._sinks = list(sinks.values())
        self._wants_starts = any(sink.calls[SPAN_STARTED] is not None for sink in self._sinks)

    def drain(self) -> int:
        """Dispatch everything queued now, in order; returns how many events."""
        with self._drain_lock:
            self._begin()
            try:
                return self._drain()
            finally:
                self._end()

    def _begin(self) -> None:
        with self._idle:
            self._busy += 1

    def _end(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def _drain(self) -> int:
        queue = self.queue
        if not queue and not self._running:
            return 0
        self.refresh()  # a sink registered straight on the PluginManager is seen too
        me = threading.current_thread()
        done = 0
        while True:
            # Take a batch, then give it to one sink after another: each sink
            # sees the events in order, and timing a sink costs two clock reads
            # per batch rather than per event.
            with self._pop_lock:  # (a stop that runs out of time takes the rest under it)
                batch = [queue.popleft() for _ in range(min(len(queue), _BATCH))]
            if self._wants_starts:
                batch = self._with_starts(batch)
            elif self._running:
                self._running.clear()  # nobody listens to starts any more
            if not batch:
                break
            if not self._deliver_all(self._sinks, batch, me):
                return done  # (taken over: the new dispatcher thread has the rest)
            done += len(batch)
            if not queue:
                break
        self.dispatched_events += done
        return done

    def _deliver_all(self, sinks: list[_Sink], batch: list[tuple[int, Any]],
                     me: threading.Thread) -> bool:
        """Hand ``batch`` to each sink in turn (a lane's sink: to its lane). False if the
        watchdog gave the rest to another thread while a sink held this one."""
        watched = me is self._thread
        lanes = self._lanes
        for i, sink in enumerate(sinks):
            if lanes:
                lane = lanes.get(sink.name)
                if lane is not None:
                    lane.put(sink, batch)
                    continue
            if watched:  # (the watchdog may take over only while a sink holds the thread)
                with self._turn:
                    self._current = (me, sinks, i, batch, time.perf_counter())
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
            if watched:
                with self._turn:
                    if self._thread is not me:
                        return False  # (this sink's lane now; another thread has the rest)
                    self._current = None
            if elapsed > _SLOW_CALL_S and sink.name not in lanes:
                # (slow, and the watchdog did not see it in time: a lane from the next batch)
                self._note_slow(sink.name, elapsed, len(batch))
                if watched and not self._abandoned:
                    lanes[sink.name] = _Lane(sink, self)
        return True

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
            "sink_undelivered": dict(self._undelivered),
            "sink_lanes": {name: len(lane.queue) for name, lane in list(self._lanes.items())},
            "dispatcher_running": self.running,
        }
