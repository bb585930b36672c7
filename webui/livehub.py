"""The live hub: a botrace sink that fans span and trace events out to SSE subscribers.

The tracer calls the four sink hooks from its dispatcher thread. There the hub
turns each span or trace into a small JSON string (so the event loop never pays
for serialisation) and queues it; one ``loop.call_soon_threadsafe`` per batch
moves the batch onto the event loop, where it is numbered, kept in a bounded
replay buffer (for ``Last-Event-ID`` resume) and offered to every subscriber.

Every subscriber owns a bounded queue. A subscriber that cannot keep up loses
*its own* oldest events and is told how many on its next read; the host, the
dispatcher and the other subscribers never wait for it.

    hub = LiveHub()
    tracer.register(hub)
    hub.bind(asyncio.get_running_loop())
    sub = hub.subscribe(umo="aiocqhttp:GroupMessage:42")
    for event in await sub.next(timeout=15): ...
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botrace import hookimpl

__all__ = ["Event", "LiveHub", "Subscription"]

log = logging.getLogger("botrace.webui.livehub")

#: The event names the stream carries (also the SSE ``event:`` field).
EVENT_KINDS = ("trace_started", "span_started", "span_finished", "trace_finished")


@dataclass(frozen=True, slots=True)
class Event:
    """One numbered event, as kept in the replay buffer and offered to subscribers."""

    seq: int
    kind: str
    data: str  #: the JSON payload, serialised once on the dispatcher thread
    trace_id: str
    umo: str | None
    plugins: frozenset[str]  #: plugin names the event concerns (empty: not known yet)

    def matches(self, umo: str | None, plugin: str | None) -> bool:
        if not self.trace_id:  # not about one trace (config changes): everyone wants it
            return True
        if umo is not None and self.umo != umo:
            return False
        # A trace that has just started does not know its plugins yet: let it through,
        # so a filtered page still sees the message arrive.
        return plugin is None or not self.plugins or plugin in self.plugins


class Subscription:
    """One subscriber's bounded queue. Created by :meth:`LiveHub.subscribe`."""

    def __init__(self, hub: LiveHub, maxsize: int, umo: str | None, plugin: str | None) -> None:
        self._hub = hub
        self.maxsize = maxsize
        self.umo = umo
        self.plugin = plugin
        self._queue: deque[Event] = deque()
        self._wake = asyncio.Event()
        #: events dropped because this subscriber was slow, not yet reported to it
        self.lost = 0
        #: every event this subscriber ever lost
        self.lost_total = 0
        self.closed = False

    def offer(self, event: Event) -> None:
        """Queue ``event`` if it passes the filters; drop this subscriber's oldest when full."""
        if not event.matches(self.umo, self.plugin):
            return
        if len(self._queue) >= self.maxsize:
            self._queue.popleft()
            self.lost += 1
            self.lost_total += 1
        self._queue.append(event)
        self._wake.set()

    async def next(self, timeout: float | None = None) -> list[Event]:
        """Every queued event, waiting up to ``timeout`` s for one; ``[]`` on timeout or close."""
        if not self._queue and not self.closed:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return []
        events = list(self._queue)
        self._queue.clear()
        return events

    def take_lost(self) -> int:
        """How many events were lost since the last call (and reset the count)."""
        lost, self.lost = self.lost, 0
        return lost

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._wake.set()
            self._hub._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LiveHub:
    """A botrace sink that keeps the last events and fans them out to subscribers.

    ``replay_size`` bounds the events kept for ``Last-Event-ID`` resume,
    ``queue_size`` bounds each subscriber's queue. Until :meth:`bind` gives the
    hub an event loop, events are counted as dropped (nobody can be listening).
    """

    def __init__(self, *, replay_size: int = 2000, queue_size: int = 1000,
                 heartbeat_s: float = 15.0, idle_keep_s: float = 60.0) -> None:
        self.replay_size = replay_size
        self.queue_size = queue_size
        self.heartbeat_s = heartbeat_s
        #: with nobody subscribed for this long, events are not even serialised
        self.idle_keep_s = idle_keep_s
        # No page has subscribed yet, so none can resume from before now: idle already (a
        # host starting with nobody watching pays nothing for the stream from the start)
        self._idle_since: float | None = time.monotonic() - idle_keep_s - 1.0
        self._skipped = False
        self._hole = 0  # replay cannot reach back past this seq: events were skipped there
        self.skipped_idle = 0
        #: distinguishes this hub's event ids from an earlier process's
        self.epoch = secrets.token_hex(4)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str, str, str | None, frozenset[str]]] = []
        self._scheduled = False
        self._seq = 0
        self._replay: deque[Event] = deque(maxlen=replay_size)
        self._subscribers: set[Subscription] = set()
        self.dropped_unbound = 0
        self.events_total = 0
        self.batches_total = 0

    # -- loop side --------------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver events on ``loop`` from now on."""
        self._loop = loop

    def unbind(self) -> None:
        self._loop = None
        for sub in list(self._subscribers):
            sub.close()

    def subscribe(self, *, umo: str | None = None, plugin: str | None = None,
                  maxsize: int | None = None) -> Subscription:
        """A new subscription (call on the hub's loop); close it when done."""
        sub = Subscription(self, maxsize or self.queue_size, umo, plugin)
        self._subscribers.add(sub)
        self._idle_since = None
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        if not self._subscribers:
            self._idle_since = time.monotonic()

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    def replay_since(self, last_event_id: str, sub: Subscription) -> list[Event] | None:
        """Events after ``last_event_id`` that ``sub`` wants, or None if they are gone.

        None means the id belongs to another process or fell out of the replay
        buffer: the client must reload from the REST API.
        """
        epoch, _, seq_text = last_event_id.strip().rpartition("-")
        if epoch != self.epoch or not seq_text.isdigit():
            return None
        last = int(seq_text)
        with self._lock:
            hole_pending = self._skipped
        if hole_pending or last > self._seq or last < self._hole:
            return None
        oldest = self._replay[0].seq if self._replay else self._seq + 1
        if last < oldest - 1:
            return None
        return [e for e in self._replay if e.seq > last and e.matches(sub.umo, sub.plugin)]

    @property
    def last_seq(self) -> int:
        return self._seq

    def stats(self) -> dict[str, Any]:
        """What the health endpoint shows about the live stream."""
        return {
            "subscribers": len(self._subscribers),
            "events_total": self.events_total,
            "batches_total": self.batches_total,
            "replay_buffer": len(self._replay),
            "replay_size": self.replay_size,
            "queue_size": self.queue_size,
            "dropped_unbound": self.dropped_unbound,
            "skipped_idle": self.skipped_idle,
            "lost_by_slow_subscribers": sum(s.lost_total for s in self._subscribers),
        }

    def announce(self, kind: str, payload: dict[str, Any]) -> None:
        """Loop side: an event about the whole page (e.g. ``config``), sent to every subscriber."""
        self._seq += 1
        event = Event(self._seq, kind, json.dumps(payload, default=repr), "", None, frozenset())
        self._replay.append(event)
        for sub in list(self._subscribers):
            sub.offer(event)

    def _deliver(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
            skipped, self._skipped = self._skipped, False
        if skipped:  # events nobody was there to see: a resume from before them is a gap
            self._seq += 1
            self._hole = self._seq
        self.batches_total += 1
        subscribers = list(self._subscribers)
        for kind, data, trace_id, umo, plugins in batch:
            self._seq += 1
            event = Event(self._seq, kind, data, trace_id, umo, plugins)
            self._replay.append(event)
            for sub in subscribers:
                sub.offer(event)
        self.events_total += len(batch)

    # -- dispatcher-thread side -------------------------------------------------

    def publish(self, kind: str, payload: dict[str, Any], trace_id: str, umo: str | None,
                plugins: Iterable[str] = ()) -> None:
        """Queue one event from any thread; one loop callback is scheduled per batch."""
        if not self._wanted():
            return
        loop = self._loop
        if loop is None:  # unbound since the check
            return
        # values were made safe (bounded, acyclic) when recorded: skip the cycle check
        data = json.dumps(payload, default=repr, separators=(",", ":"), ensure_ascii=False,
                          check_circular=False)
        item = (kind, data, trace_id, umo, frozenset(plugins))
        with self._lock:
            self._pending.append(item)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop closed between the check and the call
            with self._lock:
                self._scheduled = False
                self.dropped_unbound += len(self._pending)
                self._pending.clear()

    def _wanted(self) -> bool:
        """Whether an event is worth making at all (checked before any serialising)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self.dropped_unbound += 1
            return False
        idle_since = self._idle_since
        if idle_since is not None and time.monotonic() - idle_since > self.idle_keep_s:
            # nobody has watched for a while: cost the dispatcher nothing, but remember
            # the hole so that a page resuming from before it reloads instead
            self.skipped_idle += 1
            with self._lock:
                self._skipped = True
            return False
        return True

    @hookimpl
    def botrace_settings_changed(self, settings: Any, changes: Any) -> None:
        """Tell open pages when tracing was switched, whoever switched it (the page's own
        switch, or the host's: AstrBot's Trace switch), from whatever thread."""
        if "trace_enable" not in changes:
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        payload = {"trace_enable": bool(settings.trace_enable)}
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.announce("config", payload)
        else:
            try:
                loop.call_soon_threadsafe(self.announce, "config", payload)
            except RuntimeError:  # the loop closed meanwhile: no page to tell
                pass

    @hookimpl
    def botrace_trace_started(self, trace: Any) -> None:
        if not self._wanted():
            return
        summary = trace.to_dict()
        self.publish("trace_started", summary, summary["trace_id"], summary.get("umo"))

    @hookimpl
    def botrace_span_started(self, span: Any) -> None:
        self._publish_span("span_started", span)

    @hookimpl
    def botrace_span_finished(self, span: Any) -> None:
        self._publish_span("span_finished", span)

    @hookimpl
    def botrace_trace_finished(self, trace: Any) -> None:
        if not self._wanted():
            return
        summary = trace.to_dict()
        self.publish("trace_finished", summary, summary["trace_id"], summary.get("umo"),
                     summary.get("plugins") or ())

    @hookimpl
    def botrace_health(self, tracer: Any) -> dict[str, Any]:
        return {"name": "live_hub", **self.stats()}

    def _publish_span(self, kind: str, span: Any) -> None:
        if not self._wanted():
            return
        data = span.to_dict()
        umo = (getattr(span.trace, "attributes", None) or {}).get("umo")
        plugin = data.get("plugin") or {}
        plugins = (plugin["name"],) if plugin.get("name") else ()
        self.publish(kind, data, data["trace_id"], umo, plugins)


def sse_frame(kind: str, data: str, event_id: str | None = None) -> bytes:
    """One Server-Sent Events frame. ``data`` is single-line JSON."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {data}\n\n".encode()


def heartbeat_frame() -> bytes:
    return sse_frame("heartbeat", json.dumps({"t": time.time()}))
