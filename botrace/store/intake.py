"""What the store's sink hooks hand over: a bounded queue, a spill file, every loss counted.

The hooks run on the tracer's dispatcher thread, never the host's. They append the
finished span itself (it no longer changes once ended: nothing is allocated per span)
and a small tuple per trace start and end and per plugin description (*records*, see
``botrace.store.writer``). The feeder (``botrace.store.feeder``) takes what is queued.

Bounds. ``pending`` counts what the hooks took and the writer has not yet confirmed
written (queued here, folded and waiting to be sent, or sent). Spans may take it up to
``limit``, trace and plugin records a quarter more (so a trace is not lost for want of
room its spans took). Past that the dispatcher thread waits once (``block_timeout``) for
the writer, then appends to a spill file next to the database, in order: while a spill
file is open every record goes there, and the feeder hands it over as soon as everything
before it was sent, so the writer sees records in the tracer's order. A record that
cannot go to the spill file (it is full, ``spill_max_mb``, or the disk is) is dropped and
counted at once, on its trace too for a span (the trace's ``dropped_spans``).

``limit`` is ``queue_max`` while the writer keeps up, and the much smaller
``fault_queue_max`` while it cannot take records at all (its writes fail: a full disk, a
locked database; or it died and is being restarted): a fault must not pile records up
in memory for as long as it lasts, so the overflow goes to the spill file (or is
dropped, counted) from then on.

Once the store has been opened for writing, a record that arrives while it does not
accept any (it is closed, or it stopped for good) is counted as dropped, never ignored.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from pathlib import Path
from typing import Any

from botrace.hookspecs import hookimpl
from botrace.store.folding import span_record
from botrace.store.spill import write_spill_frame

__all__ = ["BIG_BATCH", "Intake"]

MAX_BATCH = 20_000  # records per message to the writer
BIG_BATCH = 1_000  # a batch this big goes at once (records die young: no GC promotion)
_MAX_OPEN = 100_000  # traces started and not finished that the feeder looks into
_MAX_LOST = 10_000  # traces remembered with spans dropped here, until their end record


class Intake:
    """The queue between the sink hooks and the feeder, guarded by ``lock`` / ``cond``.

    ``note_error(what, exc)`` records a fault for the store's health (called with the
    lock held; it must not take it)."""

    def __init__(self, spill_path: Path, note_error: Any, *, queue_max: int,
                 fault_queue_max: int, block_timeout: float, spill_max_mb: int) -> None:
        # (a plain Lock: "with self.lock" is a C call, "with self.cond" a Python one)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.note_error = note_error
        self.buf: list = []
        # traces started and not finished: trace_id -> [its span list, how many of them
        # the feeder has looked at]; a span still running when looked at gets a
        # "running" record
        self.open: dict[str, list] = {}
        self.pending = 0  # records taken and not confirmed written (see module doc)
        self.inflight = 0  # records sent to the writer, not confirmed
        self.accepted = 0
        self.dropped = 0
        self.spilled = 0
        self.backpressure_waits = 0
        self.accepting = False
        self.refusing = False  # opened, then closed or stopped: what arrives is dropped
        self.queue_max = queue_max
        self.fault_queue_max = min(queue_max, fault_queue_max)
        self.limit = queue_max
        self.hard_limit = queue_max + queue_max // 4
        self.fault: str | None = None  # why the writer cannot take records now
        self.block_timeout = block_timeout
        self.waited = False  # one backpressure wait per overload
        self.plugins_seen: dict[str, Any] = {}  # (dispatcher thread only)
        self.lost_spans: dict[str, int] = {}  # trace id -> spans dropped here

        self.spill_path = spill_path
        self.spill_max_mb = spill_max_mb
        self.spilling = False
        self.spill_file: Any = None
        self.spill_broken = False  # a write to the open spill file failed
        self.spill_bytes = 0
        self.spill_pending = 0  # records in the open spill file
        self.spill_inflight = 0  # records in spill files handed to the writer
        self.spill_seq = 0

    # ------------------------------------------------------------------ state

    def set_fault(self, reason: str | None) -> None:
        """The writer cannot take records (``reason``), or can again (None)."""
        with self.lock:
            if reason == self.fault:
                return
            self.fault = reason
            limit = self.fault_queue_max if reason else self.queue_max
            self.limit = limit
            self.hard_limit = limit + limit // 4
            self.cond.notify_all()

    def stop_locked(self) -> int:
        """The store stopped for good: forget what is queued (returned, counted as dropped)
        and count whatever arrives from now on. Spill files stay for the next open."""
        self.accepting = False
        self.refusing = True
        lost = self.pending
        self.dropped += lost
        self.pending = self.inflight = 0
        self.buf = []
        self.open = {}
        self.cond.notify_all()
        return lost

    # ------------------------------------------------------------------ the hooks

    def trace_started(self, trace: Any) -> None:
        if not self.accepting:
            self._refused()
            return
        attrs = trace.attributes
        tid = trace.trace_id
        rec = ("T", tid, trace.start_ns, trace.name, dict(attrs) if attrs else None)
        spans = getattr(trace, "spans", None)
        with self.lock:
            if spans is not None:
                opened = self.open
                opened[tid] = [spans, 0]
                if len(opened) > _MAX_OPEN:  # traces that never end: forget the oldest
                    for old in list(opened)[:_MAX_OPEN // 10]:
                        del opened[old]
            self._put_locked(rec, self.hard_limit)

    # (marked as the hook it is: TraceStore binds it as its botrace_span_finished)
    @hookimpl(specname="botrace_span_finished")
    def span_finished(self, span: Any) -> None:
        if not self.accepting:
            self._refused()
            return
        plugin = span.plugin
        if plugin is not None and self.plugins_seen.get(plugin.name) is not plugin:
            self._see_plugin(plugin)
        with self.lock:
            if self.spilling or self.pending >= self.limit:
                self._overflow_locked(span, self.limit)
                return
            buf = self.buf
            buf.append(span)  # the span itself: it no longer changes (see module doc)
            self.pending += 1
            self.accepted += 1
            if len(buf) == 1 or len(buf) == BIG_BATCH:
                self.cond.notify_all()

    def trace_finished(self, trace: Any) -> None:
        if not self.accepting:
            self._refused()
            return
        attrs = trace.attributes
        tid = trace.trace_id
        with self.lock:
            dropped = getattr(trace, "dropped_spans", 0)
            if self.lost_spans:
                dropped += self.lost_spans.pop(tid, 0)
            rec = ("F", tid, trace.start_ns, trace.name, dict(attrs) if attrs else None,
                   trace.status, trace.end_ns, dropped, trace.truncated)
            self.open.pop(tid, None)
            self._put_locked(rec, self.hard_limit)

    def _refused(self) -> None:
        if self.refusing:
            with self.lock:
                self.dropped += 1

    def _see_plugin(self, plugin: Any) -> None:
        """A plugin's description is stored once (and again when it changes), not per span."""
        before = self.plugins_seen.get(plugin.name)
        self.plugins_seen[plugin.name] = plugin
        if before is not None and before == plugin:
            return
        with self.lock:
            self._put_locked(("P", plugin.name, plugin.display_name, plugin.plugin_type,
                              plugin.version), self.hard_limit)

    def _put_locked(self, rec: tuple, limit: int) -> None:
        if self.spilling or self.pending >= limit:
            self._overflow_locked(rec, limit)
            return
        self.buf.append(rec)
        self.pending += 1
        self.accepted += 1
        if len(self.buf) == 1:
            self.cond.notify_all()

    def _overflow_locked(self, rec: Any, limit: int) -> None:
        """The queue is full (or a spill file is open): wait once for the writer, then
        spill to disk in order (or drop, counted)."""
        if not self.spilling and not self.waited and self.block_timeout > 0 and not self.fault:
            # backpressure on the dispatcher thread (never the host's): give the writer
            # a moment to catch up before spilling (not while it cannot write at all)
            self.waited = True
            self.backpressure_waits += 1
            deadline = time.monotonic() + self.block_timeout
            while self.pending >= limit and self.accepting:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
        if not self.spilling and self.pending < limit:
            self.buf.append(rec)
            self.pending += 1
            self.accepted += 1
            return
        self.waited = True
        if type(rec) is not tuple:
            rec = span_record(rec)
        if self.spill_broken:
            self._drop_locked(rec, "spill file unwritable; record dropped", None)
            return
        try:
            if self.spill_max_mb <= 0 or self.spill_bytes > self.spill_max_mb * 1024 * 1024:
                raise OSError("spill file full")
            if self.spill_file is None:
                self.spill_file = open(self.spill_path, "ab")  # noqa: SIM115 - closed at hand-off
            self.spill_bytes += write_spill_frame(self.spill_file, [rec])
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # (this record's value)
            self._drop_locked(rec, "record could not be spilled; dropped", exc)
            return
        except OSError as exc:
            if self.spill_file is not None:
                # a frame may be half written: nothing more goes to this file (the writer
                # counts what it lacks when it reads it)
                self.spill_broken = True
            self._drop_locked(rec, "store queue full and spill file unwritable; record dropped",
                              exc)
            return
        self.spilling = True
        self.spilled += 1
        self.spill_pending += 1

    def _drop_locked(self, rec: tuple, why: str, exc: BaseException | None) -> None:
        self.dropped += 1
        if rec[0] == "S":  # on its trace too, when its end record is made
            lost = self.lost_spans
            lost[rec[1]] = lost.get(rec[1], 0) + 1
            if len(lost) > _MAX_LOST:  # (ends that never come: forget the oldest)
                for old in list(lost)[:_MAX_LOST // 10]:
                    del lost[old]
        self.note_error(why, exc)

    # ------------------------------------------------------------------ the feeder's side

    def take_locked(self) -> list:
        """The next batch for the feeder, with a "running" record for each span of an open
        trace that started since the last look and is still running."""
        buf = self.buf
        if len(buf) > MAX_BATCH:
            batch, self.buf = buf[:MAX_BATCH], buf[MAX_BATCH:]
        else:
            batch, self.buf = buf, []
        if self.open and not self.buf and not self.spilling and self.pending < self.limit * 0.8:
            # (under overload running rows wait: a missing one costs nothing once the
            # span's finished row arrives)
            self._add_running_locked(batch)
        return batch

    def _add_running_locked(self, batch: list) -> None:
        """A "running" record for each span added to an open trace since the last look
        that has not finished yet (one that has finished has its record on the way)."""
        n = 0
        for entry in self.open.values():
            spans, seen = entry
            end = len(spans)
            if seen == end:
                continue
            for i in range(seen, end):
                span = spans[i]
                if span.end_ns is None:
                    plugin = span.plugin
                    trace = span.trace
                    batch.append(("R", trace.trace_id, trace.start_ns, span.span_id,
                                  span.parent_id, span.name, span.span_type,
                                  None if plugin is None else plugin.name, span.start_ns))
                    n += 1
            entry[1] = end
        self.pending += n
        self.accepted += n

    def hand_off_spill_locked(self, upto: int) -> tuple | None:
        """Close the open spill file and rename it for the writer: ``(path, records, upto)``,
        or None if it was lost (its records counted as dropped)."""
        try:
            self.spill_file.close()
        except OSError as exc:  # (the disk refused the last frames: the writer counts them)
            self.note_error("spill file not fully written", exc)
        self.spill_file = None
        self.spill_broken = False
        self.spill_seq += 1
        path = self.spill_path.with_name(
            f"{self.spill_path.name}.{os.getpid()}-{self.spill_seq}.draining")
        count = self.spill_pending
        self.spill_pending = 0
        self.spill_bytes = 0
        self.spilling = False
        # (the overload is not over until the queue is half empty again: no second
        # backpressure wait until then, whatever number of spill files it takes)
        try:
            os.replace(self.spill_path, path)
        except OSError as exc:
            self.dropped += count
            self.note_error("spill file lost", exc)
            return None
        self.spill_inflight += count
        return (str(path), count, upto)

    def acked_locked(self, rows: int, what: str) -> None:
        """The writer confirmed ``rows`` records of a batch, or of a spill file."""
        if what == "batch":
            self.inflight -= rows
            self.pending -= rows
            if self.pending < self.limit // 2:
                self.waited = False
        else:
            self.spill_inflight -= rows
        self.cond.notify_all()
