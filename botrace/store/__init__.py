"""The durable store: a sink that persists traces to SQLite, and the queries the web page asks.

Write path (never on the host's path)::

    dispatcher thread: botrace_span_finished / botrace_trace_* hooks
        └─ append the finished span itself (it no longer changes once ended) to a
           list under a lock; a trace's start and end and a plugin's description
           as small tuples (*records*, botrace.store.writer); no JSON, no totals
    feeder thread "botrace-store-feeder" (every flush_interval, sooner under load)
        └─ takes the list, adds a "running" record for each span of an open trace
           that is still running, folds the batch (botrace.store.folding: each
           trace's spans as one JSON chunk with self time and cost worked out,
           per-trace totals, minute statistics), pickles it and sends it to the writer
    writer process (botrace.store.writer; or a thread, ``trace_store_writer``)
        └─ trace rows and tags, the statistics rollup; one SQLite transaction per
           batch (WAL); retention between batches; spill files

A span that starts and finishes within one batch is written once; a span still
running when its batch is taken is written as ``running`` and written again, in a later
chunk that supersedes it, when it finishes (``botrace.store.chunks``). So a process
killed mid-message leaves its trace and every span flushed so far; the next
:meth:`TraceStore.open` marks them ``interrupted``. The store has no
``botrace_span_started`` hook: the feeder finds running spans in the span lists of the
traces still open (looking only at the spans added since the last batch), so the
dispatcher calls nothing per span start for the store.

When the writer falls behind, the queue (rows taken by the hooks and not yet written)
is bounded by ``queue_max``; past it the dispatcher thread waits once (``block_timeout``)
and then appends overflow records to a spill file next to the database, in order: while
a spill file is open every record goes there, and it is handed to the writer as soon as
everything before it was sent, so the writer always sees records in the tracer's order.

Read path: aiosqlite read connections in this process, see ``botrace.query`` and
docs/QUERY_API.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import queue
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiosqlite

from botrace import query as _query
from botrace.hookspecs import hookimpl
from botrace.pricing import PriceTable
from botrace.query import QueryError
from botrace.store.folding import SpanFolder, span_record
from botrace.store.jsontext import encode_value
from botrace.store.writer import (
    StoreError,
    Writer,
    inspect_read_only,
    prepare_database,
    write_spill_frame,
)

__all__ = ["QueryError", "StoreError", "TraceStore"]

log = logging.getLogger("botrace.store")

WRITER_MODES = ("process", "thread")
_MAX_BATCH = 20_000  # records per message to the writer
_BIG = 1_000  # a batch this big goes at once (records die young: no GC promotion)
_MAX_OPEN = 100_000  # traces started and not finished that the feeder looks into
# (the entry configures SQLite before importing the writer: botrace/_writer_process.py)
_CHILD = "import sys; from botrace._writer_process import main; sys.exit(main(sys.argv))"


class TraceStore:
    """SQLite-backed trace store: a botrace sink plugin and the query API.

    >>> store = TraceStore("data/botrace.db", settings)   # doctest: +SKIP
    >>> await store.open(); tracer.register(store)          # doctest: +SKIP

    ``read_only=True`` opens an existing database for queries only (``botrace
    serve --db``); the sink hooks then do nothing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        settings: Any = None,
        *,
        read_only: bool = False,
        writer: str | None = None,
        queue_max: int = 500_000,
        flush_interval: float = 0.2,
        commit_interval: float = 0.5,
        prune_interval: float = 300.0,
        prune_batch: int = 500,
        block_timeout: float = 0.2,
        busy_timeout_ms: int = 2_000,
        readers: int = 2,
        max_backoff: float = 5.0,
        spill_max_mb: int = 1024,
    ) -> None:
        if settings is None:
            from botrace.config import Settings

            settings = Settings()
        self.settings = settings
        self.path = Path(path if path is not None else settings.trace_db_path)
        self.read_only = read_only
        mode = writer or getattr(settings, "trace_store_writer", None) or "process"
        if mode not in WRITER_MODES:
            raise ValueError(f"writer must be one of {WRITER_MODES}, got {mode!r}")
        self.writer_mode = mode
        self.retention_days = int(getattr(settings, "trace_retention_days", 7) or 0)
        self.max_mb = int(getattr(settings, "trace_db_max_mb", 0) or 0)
        self.price_table = dict(getattr(settings, "trace_price_table", None) or {})
        self.queue_max = queue_max
        # trace records may use a reserve above queue_max, so that a trace is not lost
        # for want of room its spans took
        self._hard_max = queue_max + queue_max // 4
        self._inflight_cap = max(1_000, min(queue_max // 2, 100_000))
        self.flush_interval = flush_interval
        self.commit_interval = commit_interval
        self.prune_interval = prune_interval
        self.prune_batch = prune_batch
        self.block_timeout = block_timeout
        self.busy_timeout_ms = busy_timeout_ms
        self._n_readers = max(1, readers)
        self.max_backoff = max_backoff
        self.spill_max_mb = spill_max_mb
        self.spill_chunk = 50_000
        self._spill_path = self.path.with_name(self.path.name + ".spill")

        # shared by the dispatcher thread, the feeder and the receiver: guarded by _cond
        # (a plain Lock: "with self._lock" is a C call, "with self._cond" a Python one)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._buf: list[tuple] = []
        # traces started and not finished: trace_id -> [its span list, how many of them
        # the feeder has looked at]; a span still running when looked at gets a
        # "running" record
        self._open: dict[str, list] = {}
        self._pending = 0  # records in _buf, and sent but not acknowledged
        self._inflight = 0  # records sent, not acknowledged
        self._waited = False  # one backpressure wait per overload
        self._spilling = False
        self._spill_file: Any = None
        self._spill_bytes = 0
        self._spill_pending = 0  # records in the open spill file
        self._spill_inflight = 0  # records in spill files handed to the writer
        self._spill_seq = 0
        self._control: list[tuple] = []
        self._flush_wanted = False
        self._takes = 0  # batches taken by the feeder (flush waits for one after its call)
        self._take_accepted = 0  # records accepted when the last one was taken
        self._gather_until: float | None = None
        self._seq = 0
        self._acked_upto = 0
        self._replies: dict[int, tuple[asyncio.Future, Any]] = {}
        self._wstats: dict[str, Any] = {}
        self._plugins_seen: dict[str, Any] = {}  # dispatcher thread
        self._folder = SpanFolder(PriceTable(self.price_table), encode_value)  # feeder thread

        self._loop: asyncio.AbstractEventLoop | None = None
        self._send: Any = None
        self._pack: Any = lambda msg: msg  # a message as the writer receives it
        self._proc: subprocess.Popen | None = None
        self._link: Any = None
        self._threads: list[threading.Thread] = []
        self._ready = threading.Event()
        self._closed_ev = threading.Event()
        self._link_dead = False
        self._close_sent = False
        self._readers: list[aiosqlite.Connection] = []
        self._reader_i = 0
        self._readers_gen = 0
        self._accepting = False
        self._closing = False
        self._opened = False
        self._schema_version = 0
        self._last_log = 0.0

        self.accepted = 0
        self.backpressure_waits = 0
        self.spilled = 0
        self._dropped = 0
        self.recovered_traces = 0
        self.last_error: str | None = None
        self.last_error_ns: int | None = None

    # ------------------------------------------------------------------ counters

    @property
    def dropped(self) -> int:
        """Records lost: here (queue and spill full) and in the writer (a fault outlasted close)."""
        return self._dropped + self._wstats.get("dropped", 0)

    @property
    def written(self) -> int:
        return self._wstats.get("written", 0)

    @property
    def write_errors(self) -> int:
        return self._wstats.get("write_errors", 0)

    @property
    def pruned_traces(self) -> int:
        return self._wstats.get("pruned_traces", 0)

    @property
    def reopened(self) -> int:
        return self._wstats.get("reopened", 0)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> TraceStore:
        """Open (create, migrate, recover) the database and start the writer.

        Raises :class:`StoreError` when the file is not a usable botrace
        database; such a file is left exactly as it was.
        """
        if self._opened:
            return self
        self._loop = asyncio.get_running_loop()
        if self.read_only:
            self._schema_version = await asyncio.to_thread(inspect_read_only, self.path)
        else:
            self._schema_version, self.recovered_traces = await asyncio.to_thread(
                prepare_database, self.path, self.busy_timeout_ms)
            await self._start_writer()
            self._accepting = True
        await self._open_readers()
        self._opened = True
        return self

    def _writer_config(self) -> dict[str, Any]:
        return {"path": str(self.path), "busy_timeout_ms": self.busy_timeout_ms,
                "prices": {k: dict(v) for k, v in self.price_table.items()},
                "retention_days": self.retention_days, "max_mb": self.max_mb,
                "prune_interval": self.prune_interval, "prune_batch": self.prune_batch,
                "min_interval": self.commit_interval,
                "max_backoff": self.max_backoff, "spill_chunk": self.spill_chunk,
                "spill_path": str(self._spill_path)}

    async def _start_writer(self) -> None:
        if self.writer_mode == "process":
            try:
                await asyncio.to_thread(self._spawn)
                return
            except (OSError, ValueError, TimeoutError, EOFError) as exc:
                self._note_error("writer process did not start; writing from a thread", exc)
                log.warning("botrace store: writer process did not start (%s); using a thread",
                            exc)
                self._kill_process()
                self.writer_mode = "thread"
        self._start_thread_writer()

    def _spawn(self) -> None:
        """Start the writer process (``botrace.store.writer.main``) on one end of a socket pair.

        subprocess, not multiprocessing: the child is a fresh interpreter (like *spawn*;
        nothing is forked from this threaded process) and, unlike spawn, it does not
        import the host's ``__main__`` again.
        """
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        link = Connection(ours.detach())
        self._link = link
        link.send_bytes(pickle.dumps(self._writer_config()))
        if not link.poll(30.0):
            raise TimeoutError("no answer from the writer process in 30 s")
        first = pickle.loads(link.recv_bytes())
        if first[0] != "ready":
            raise OSError(f"the writer process failed: {first[-1]}")
        self._on_message(first)

        self._pack = lambda msg: _pickle_batch(self, msg)
        self._send = link.send_bytes  # (only the feeder thread sends)
        self._start_thread(self._receive, "botrace-store-receiver")
        self._start_thread(self._feed_or_stop, "botrace-store-feeder")

    def _start_thread_writer(self) -> None:
        inbox: queue.SimpleQueue = queue.SimpleQueue()

        def recv(timeout: float | None) -> Any:
            try:
                return inbox.get(timeout=timeout)
            except queue.Empty:
                return None

        writer = Writer(self._writer_config(), self._on_message)

        def run() -> None:
            try:
                writer.run(recv)
            except BaseException as exc:  # the writer's own faults are handled inside it
                self._on_message(("died", f"{type(exc).__name__}: {exc}"))
                log.error("botrace store writer thread died", exc_info=exc)

        self._send = inbox.put
        self._start_thread(run, "botrace-store-writer")
        if not self._ready.wait(30.0) or self._link_dead:
            raise StoreError(f"the store's writer did not start: {self.last_error}")
        self._start_thread(self._feed_or_stop, "botrace-store-feeder")

    def _start_thread(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _kill_process(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    async def close(self) -> None:
        """Write everything accepted so far, stop the writer, close every connection."""
        if not self._opened:
            return
        self._accepting = False
        if self._send is not None:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            while not self._closed_ev.is_set() and not self._link_dead:
                await asyncio.sleep(0.01)
            for t in self._threads:
                await asyncio.to_thread(t.join, 10.0)
            self._threads = []
            if self._proc is not None:
                try:
                    await asyncio.to_thread(self._proc.wait, 10.0)
                except subprocess.TimeoutExpired:
                    self._kill_process()
                self._proc = None
            if self._link is not None:
                self._link.close()
                self._link = None
            self._send = None
        for conn in self._readers:
            try:
                await conn.close()
            except Exception:  # closing a broken connection: nothing left to save
                pass
        self._readers = []
        self._opened = False

    async def __aenter__(self) -> TraceStore:
        return await self.open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------------ sink hooks

    @hookimpl
    def botrace_startup(self, tracer: Any) -> Any:
        if not self._opened and not self.read_only:
            return self.open()
        return None

    @hookimpl
    def botrace_shutdown(self, tracer: Any) -> Any:
        return self.close()

    @hookimpl
    def botrace_health(self, tracer: Any) -> dict[str, Any]:
        return {"name": "store", **self.health()}

    @hookimpl
    def botrace_trace_started(self, trace: Any) -> None:
        if not self._accepting:
            return
        attrs = trace.attributes
        tid = trace.trace_id
        rec = ("T", tid, trace.start_ns, trace.name, dict(attrs) if attrs else None)
        spans = getattr(trace, "spans", None)
        with self._lock:
            if spans is not None:
                opened = self._open
                opened[tid] = [spans, 0]
                if len(opened) > _MAX_OPEN:  # traces that never end: forget the oldest
                    for old in list(opened)[:_MAX_OPEN // 10]:
                        del opened[old]
            self._put_locked(rec, self._hard_max)

    @hookimpl
    def botrace_span_finished(self, span: Any) -> None:
        if not self._accepting:
            return
        plugin = span.plugin
        if plugin is not None and self._plugins_seen.get(plugin.name) is not plugin:
            self._see_plugin(plugin)
        with self._lock:
            if self._spilling or self._pending >= self.queue_max:
                self._overflow_locked(span_record(span), self.queue_max)
                return
            buf = self._buf
            buf.append(span)  # the span itself: it no longer changes (see module doc)
            self._pending += 1
            self.accepted += 1
            if len(buf) == 1 or len(buf) == _BIG:
                self._cond.notify_all()

    @hookimpl
    def botrace_trace_finished(self, trace: Any) -> None:
        if not self._accepting:
            return
        attrs = trace.attributes
        tid = trace.trace_id
        rec = ("F", tid, trace.start_ns, trace.name, dict(attrs) if attrs else None,
               trace.status, trace.end_ns, getattr(trace, "dropped_spans", 0), trace.truncated)
        with self._lock:
            self._open.pop(tid, None)
            self._put_locked(rec, self._hard_max)

    def _see_plugin(self, plugin: Any) -> None:
        """A plugin's description is stored once (and again when it changes), not per span."""
        before = self._plugins_seen.get(plugin.name)
        self._plugins_seen[plugin.name] = plugin
        if before is not None and before == plugin:
            return
        self._put(("P", plugin.name, plugin.display_name, plugin.plugin_type, plugin.version),
                  self._hard_max)

    def _put(self, rec: tuple, limit: int) -> None:
        with self._lock:
            self._put_locked(rec, limit)

    def _put_locked(self, rec: tuple, limit: int) -> None:
        if self._spilling or self._pending >= limit:
            self._overflow_locked(rec, limit)
            return
        self._buf.append(rec)
        self._pending += 1
        self.accepted += 1
        if len(self._buf) == 1:
            self._cond.notify_all()

    def _overflow_locked(self, rec: tuple, limit: int) -> None:
        """The queue is full (or a spill file is open): wait once for the writer, then
        spill to disk in order (or drop, counted)."""
        if not self._spilling and not self._waited and self.block_timeout > 0:
            # backpressure on the dispatcher thread (never the host's): give the writer
            # a moment to catch up before spilling
            self._waited = True
            self.backpressure_waits += 1
            deadline = time.monotonic() + self.block_timeout
            while self._pending >= limit and self._accepting:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        if not self._spilling and self._pending < limit:
            self._buf.append(rec)
            self._pending += 1
            self.accepted += 1
            return
        self._waited = True
        try:
            if self.spill_max_mb <= 0 or self._spill_bytes > self.spill_max_mb * 1024 * 1024:
                raise OSError("spill file full")
            if self._spill_file is None:
                self._spill_file = open(self._spill_path, "ab")  # noqa: SIM115 - closed at hand-off
            self._spill_bytes += write_spill_frame(self._spill_file, [rec])
            self._spilling = True
            self.spilled += 1
            self._spill_pending += 1
        except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
            self._dropped += 1
            self._note_error_locked("store queue full; record dropped", exc)

    # ------------------------------------------------------------------ feeder

    def _feed_or_stop(self) -> None:
        """The feeder; should it ever fail (a bug: records cannot make it fail), the store
        stops as if its writer had died, so that flush() and close() return."""
        try:
            self._feed()
        except Exception as exc:
            log.exception("botrace store feeder failed")
            if not self._close_sent:
                try:  # the writer writes what it has and ends
                    self._send(self._pack(("close", 0)))
                    self._close_sent = True
                except Exception:  # (the link is gone too: close() stops the process)
                    pass
            self._writer_died(f"the feeder thread failed: {type(exc).__name__}: {exc}")

    def _feed(self) -> None:
        """Take what the hooks gathered every ``flush_interval`` (at once when there is a
        lot), pickle it and send it to the writer, in order, with at most
        ``_inflight_cap`` records unacknowledged. Batches are pickled as soon as they are
        taken: a backlog waits as bytes, not as tuples the garbage collector would walk."""
        cond = self._cond
        outbox: deque[tuple[Any, int]] = deque()  # (message ready to send, records in it)
        while True:
            with cond:
                while True:
                    if self._link_dead:
                        return
                    if outbox and (self._inflight < self._inflight_cap or self._closing):
                        take = False
                        break
                    take = bool(self._control or self._flush_wanted or self._closing
                                or len(self._buf) >= _BIG)
                    if take:
                        break
                    if self._buf or self._open or self._spill_file is not None:
                        now = time.monotonic()
                        if self._gather_until is None:
                            self._gather_until = now + self.flush_interval
                        if now >= self._gather_until:
                            take = True
                            break
                        cond.wait(self._gather_until - now)
                    else:
                        # nothing new: wake on the first record, or on an
                        # acknowledgement making room for what waits in the outbox
                        cond.wait(0.05 if outbox else None)
                control: list[tuple] = []
                batch: list[tuple] = []
                spill = None
                flush = done = False
                if take:
                    self._gather_until = None
                    control, self._control = self._control, []
                    flush = self._flush_wanted
                    self._flush_wanted = False
                    batch = self._take_locked()
                    self._takes += 1
                    self._take_accepted = self.accepted
                    # everything accepted so far is in this batch or an earlier one
                    # (flush waits for its acknowledgement), unless some is still listed
                    upto = 0 if self._buf else self.accepted
                    if self._spill_file is not None and not self._buf:
                        spill = self._hand_off_spill_locked(upto)
                    done = (self._closing and not self._buf
                            and spill is None and self._spill_file is None)
                    self._seq += 1
                    seq = self._seq
                    self._seq += 1
                    spill_seq = self._seq
                closing = self._closing
            for msg in control:  # operations go ahead of queued batches
                self._send(self._pack(msg))
            if batch or flush or done:
                folded, n = self._fold_batch(batch)
                outbox.append((self._pack(("batch", seq, upto, n, folded, flush)), n))
            if spill is not None:
                outbox.append((self._pack(("spill", spill_seq, *spill)), 0))
            while outbox and (self._inflight < self._inflight_cap or closing):
                msg, n = outbox.popleft()
                with cond:
                    self._inflight += n
                self._send(msg)
            if done and not outbox:
                self._send(self._pack(("close", 0)))
                self._close_sent = True
                return

    def _fold_batch(self, batch: list[tuple]) -> tuple[tuple, int]:
        """The batch folded (``botrace.store.folding``) and how many records it holds."""
        others, rows, parts, minutes, lost, error = self._folder.fold(batch)
        if lost:
            with self._cond:
                self._dropped += lost
                self._pending -= lost
                self._note_error_locked(f"{lost} span records could not be read or encoded",
                                       error)
        return (others, rows, parts, minutes), len(batch) - lost

    def _take_locked(self) -> list[tuple]:
        buf = self._buf
        if len(buf) > _MAX_BATCH:
            batch, self._buf = buf[:_MAX_BATCH], buf[_MAX_BATCH:]
        else:
            batch, self._buf = buf, []
        if self._open and not self._buf and not self._spilling \
                and self._pending < self.queue_max * 0.8:
            # (under overload running rows wait: a missing one costs nothing once the
            # span's finished row arrives)
            self._add_running_locked(batch)
        return batch

    def _add_running_locked(self, batch: list[tuple]) -> None:
        """A "running" record for each span added to an open trace since the last look
        that has not finished yet (one that has finished has its record on the way)."""
        n = 0
        for entry in self._open.values():
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
        self._pending += n
        self.accepted += n

    def _hand_off_spill_locked(self, upto: int) -> tuple | None:
        self._spill_file.close()
        self._spill_file = None
        self._spill_seq += 1
        path = self._spill_path.with_name(
            f"{self._spill_path.name}.{os.getpid()}-{self._spill_seq}.draining")
        count = self._spill_pending
        self._spill_pending = 0
        self._spill_bytes = 0
        self._spilling = False
        # (the overload is not over until the queue is half empty again: no second
        # backpressure wait until then, whatever number of spill files it takes)
        try:
            os.replace(self._spill_path, path)
        except OSError as exc:
            self._dropped += count
            self._note_error_locked("spill file lost", exc)
            return None
        self._spill_inflight += count
        return (str(path), count, upto)

    # ------------------------------------------------------------------ from the writer

    def _receive(self) -> None:
        link = self._link
        while True:
            try:
                msg = pickle.loads(link.recv_bytes())
            except (EOFError, OSError):
                self._on_message(("died", "the writer process exited"))
                return
            self._on_message(msg)

    def _on_message(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ack":
            _, _seq, upto, rows, what, stats = msg
            with self._cond:
                if what == "batch":
                    self._inflight -= rows
                    self._pending -= rows
                    if self._pending < self.queue_max // 2:
                        self._waited = False
                else:
                    self._spill_inflight -= rows
                if upto > self._acked_upto:
                    self._acked_upto = upto
                self._wstats = stats
                self._cond.notify_all()
            self._log_writer_error(stats)
        elif kind in ("status", "ready"):
            self._wstats = msg[1]
            self._log_writer_error(msg[1])
            if kind == "ready":
                self._ready.set()
        elif kind == "reply":
            _, seq, result, error = msg
            self._resolve(seq, result, error)
        elif kind == "progress":
            entry = self._replies.get(msg[1])
            if entry is not None and entry[1] is not None:
                self._loop.call_soon_threadsafe(entry[1], msg[2])
        elif kind == "closed":
            self._wstats = msg[1]
            self._closed_ev.set()
        elif kind == "died":
            self._writer_died(msg[1])

    def _log_writer_error(self, stats: dict[str, Any]) -> None:
        ns = stats.get("last_error_ns")
        if ns and (self.last_error_ns is None or ns > self.last_error_ns):
            now = time.monotonic()
            if now - self._last_log > 10.0:  # rate-limited: one line per 10 s
                self._last_log = now
                log.warning("botrace store (%s): %s", self.path, stats.get("last_error"))

    def _writer_died(self, why: str) -> None:
        """The writer should only end on close; if it died, stop accepting and say so."""
        with self._cond:
            if self._link_dead:
                return
            self._link_dead = True
            if self._close_sent and self._closed_ev.is_set():
                return
            self._accepting = False
            lost = self._pending
            self._dropped += lost
            self._pending = self._inflight = 0
            self._buf = []
            self._open = {}
            self._note_error_locked(f"writer died ({why}); store stopped, {lost} records lost",
                                    None)
            self._cond.notify_all()
        self._ready.set()
        for seq in list(self._replies):
            self._resolve(seq, None, f"the writer died ({why})")
        if not self._closing:
            log.error("botrace store writer died (%s); the store stopped accepting", why)

    def _resolve(self, seq: int, result: Any, error: str | None) -> None:
        entry = self._replies.pop(seq, None)
        if entry is None:
            return
        fut = entry[0]

        def settle() -> None:
            if fut.done():
                return
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(sqlite3.OperationalError(error))

        self._loop.call_soon_threadsafe(settle)

    async def _request(self, kind: str, *args: Any, progress: Any = None) -> Any:
        if self._send is None or self._link_dead:
            raise StoreError("the store is not open for writing")
        fut = self._loop.create_future()
        with self._cond:
            self._seq += 1
            seq = self._seq
            self._replies[seq] = (fut, progress)
            self._control.append((kind, seq, *args))
            self._cond.notify_all()
        return await fut

    async def _writer_exec(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run one statement on the writer's connection (operations and fault tests)."""
        return await self._request("exec", sql, tuple(params))

    # ------------------------------------------------------------------ flush, prune

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row accepted so far is written; False if ``timeout`` ran out
        first (a fault is holding the writer back) or the writer died."""
        if self._send is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            takes = self._takes
            target = self.accepted
            self._flush_wanted = True
            self._cond.notify_all()
        taken = False
        while True:
            with self._cond:
                if self._link_dead:
                    return False
                if not taken:
                    if self._takes == takes:  # the feeder has not taken a batch since
                        target = self.accepted
                    else:  # it has, with the running records of the open traces
                        taken = True
                        target = max(target, self._take_accepted)
                if (taken and self._acked_upto >= target and self._spill_file is None
                        and not self._spill_inflight and not self._wstats.get("spill_queue")):
                    return True
                if not self._flush_wanted and self._acked_upto < target and not self._buf:
                    self._flush_wanted = True
                    self._cond.notify_all()
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)

    async def prune(self, retention_days: int | None = None, max_mb: int | None = None,
                    progress: Any = None) -> int:
        """Prune now until nothing is due (``botrace prune``). Returns traces deleted,
        including those the automatic pruning deleted since the store opened (or since
        the last call) -- it starts at open, so a prune right after open shares the work.

        Whole traces, oldest first, ``prune_batch`` per transaction, so writes
        interleave; ``progress(deleted_so_far)`` is called after each batch.
        """
        if self.read_only or self._send is None:
            raise StoreError("the store is not open for writing")
        await self.flush()
        return await self._request("prune", retention_days, max_mb, progress=progress)

    async def _used_bytes(self) -> int:
        pages = (await self._writer_exec("PRAGMA page_count"))[0][0]
        free = (await self._writer_exec("PRAGMA freelist_count"))[0][0]
        size = (await self._writer_exec("PRAGMA page_size"))[0][0]
        return (pages - free) * size

    async def count_prunable(self, retention_days: int | None = None) -> int:
        """How many traces are older than the retention (for ``prune --dry-run``)."""
        days = self.retention_days if retention_days is None else retention_days
        if days <= 0:
            return 0
        cutoff = time.time_ns() - days * 86_400 * 1_000_000_000
        async with (await self._reader()).execute(
                "SELECT count(*) FROM traces WHERE start_ns < ?", (cutoff,)) as cur:
            return (await cur.fetchone())[0]

    async def count_traces(self, since_ns: int | None = None, until_ns: int | None = None) -> int:
        """Traces started in ``[since_ns, until_ns)``."""
        return await _query.count_traces(await self._reader(), since_ns, until_ns)

    # ------------------------------------------------------------------ errors

    def _note_error(self, what: str, exc: BaseException | None) -> None:
        with self._cond:
            self._note_error_locked(what, exc)

    def _note_error_locked(self, what: str, exc: BaseException | None) -> None:
        text = what if exc is None else f"{what}: {type(exc).__name__}: {exc}"
        self.last_error = text
        self.last_error_ns = time.time_ns()
        now = time.monotonic()
        if now - self._last_log > 10.0:  # rate-limited: one line per 10 s
            self._last_log = now
            log.warning("botrace store (%s): %s", self.path, text)

    # ------------------------------------------------------------------ readers

    async def _open_readers(self) -> None:
        uri = self.path.resolve().as_uri() + ("?mode=ro" if self.read_only else "")
        for _ in range(self._n_readers):
            conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            await conn.execute("PRAGMA query_only = 1")
            await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await conn.execute("PRAGMA cache_size = -16000")
            conn.row_factory = sqlite3.Row
            self._readers.append(conn)

    async def _reader(self) -> aiosqlite.Connection:
        if not self._readers:
            raise StoreError("the store is not open")
        gen = self._wstats.get("reopened", 0)
        if gen != self._readers_gen:  # the writer recreated the file: follow it
            self._readers_gen = gen
            old, self._readers = self._readers, []
            for conn in old:
                try:
                    await conn.close()
                except Exception:
                    pass
            await self._open_readers()
        self._reader_i = (self._reader_i + 1) % len(self._readers)
        return self._readers[self._reader_i]

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        """Counters for the web page and ``tracer.health()`` (cheap, sync)."""
        try:
            db_bytes = self.path.stat().st_size
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists():
                db_bytes += wal.stat().st_size
        except OSError:
            db_bytes = 0
        w = self._wstats
        last_error, last_error_ns = self.last_error, self.last_error_ns
        if w.get("last_error_ns") and (last_error_ns is None or w["last_error_ns"] > last_error_ns):
            last_error, last_error_ns = w["last_error"], w["last_error_ns"]
        if not self._opened:
            state = "closed"
        elif self.read_only:
            state = "read_only"
        elif self._link_dead or self._pending >= self.queue_max or (
                last_error_ns and time.time_ns() - last_error_ns < 60_000_000_000):
            state = "degraded"
        else:
            state = "ok"
        return {
            "state": state,
            "db_path": str(self.path),
            "db_bytes": db_bytes,
            "writer": self.writer_mode,
            "queue_depth": self._pending,
            "queue_max": self.queue_max,
            "accepted": self.accepted,
            "backpressure_waits": self.backpressure_waits,
            "written": self.written,
            "dropped": self.dropped,
            "spilled": self.spilled,
            "spill_queue": self._spill_pending + self._spill_inflight + w.get("spill_queue", 0),
            "write_errors": self.write_errors,
            "last_error": last_error,
            "last_error_ns": last_error_ns,
            "pruned_traces": self.pruned_traces,
            "recovered_traces": self.recovered_traces,
            "reopened": self.reopened,
            "schema_version": w.get("schema_version") or self._schema_version,
            # the writer's current commit interval: longer while it is busy
            "commit_interval_ms": round(w.get("commit_interval", 0.1) * 1000),
        }

    # ------------------------------------------------------------------ queries

    async def list_traces(self, filters: Mapping[str, Any] | None = None, limit: Any = 50,
                          cursor: str | None = None) -> dict[str, Any]:
        """Trace summaries, newest first; see docs/QUERY_API.md."""
        return await _query.list_traces(await self._reader(), filters, limit, cursor)

    async def get_trace(self, trace_id: str, *, flat: bool = False,
                        tree_only: bool = False) -> dict[str, Any] | None:
        """One trace: summary, flat spans and the span tree; None when unknown."""
        return await _query.get_trace(await self._reader(), trace_id, flat=flat,
                                      tree_only=tree_only)

    async def stats(self, group_by: str = "stage", since_ns: Any = None, until_ns: Any = None,
                    filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Latency, error and token statistics per stage / plugin / tool / model."""
        return await _query.stats(await self._reader(), group_by, since_ns, until_ns, filters)

    async def sessions(self, filters: Mapping[str, Any] | None = None, limit: Any = 50,
                       cursor: str | None = None) -> dict[str, Any]:
        """Conversations (by session id, else umo) with totals, most recent first."""
        return await _query.sessions(await self._reader(), filters, limit, cursor)

    async def users(self, filters: Mapping[str, Any] | None = None, limit: Any = 50,
                    cursor: str | None = None) -> dict[str, Any]:
        """Per-user totals, most recent first."""
        return await _query.users(await self._reader(), filters, limit, cursor)

    async def iter_traces(self, since_ns: int | None = None, until_ns: int | None = None,
                          batch: int = 200):
        """Every stored trace in a time range with its spans, oldest first (for export)."""
        async for item in _query.iter_traces(await self._reader(), since_ns, until_ns, batch):
            yield item


def _pickle_batch(store: TraceStore, msg: tuple) -> bytes:
    """Pickle a message; a record that will not pickle (an odd value on a span) is
    dropped and counted instead of losing its whole batch."""
    try:
        return pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        if msg[0] != "batch":
            raise
        # span rows are plain text and numbers: the odd value is in a trace's attributes
        kind, seq, upto, n, (others, *folded), flush = msg
        good = []
        for rec in others:
            try:
                pickle.dumps(rec, protocol=pickle.HIGHEST_PROTOCOL)
                good.append(rec)
            except Exception:
                pass
        lost = len(others) - len(good)
        with store._cond:
            store._dropped += lost
            store._inflight -= lost
            store._pending -= lost
            store._note_error_locked(f"{lost} records could not be pickled; dropped", exc)
        # the acknowledgement counts the records sent
        return pickle.dumps((kind, seq, upto, n - lost, (good, *folded), flush),
                            protocol=pickle.HIGHEST_PROTOCOL)
