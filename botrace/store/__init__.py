"""The durable store: a sink that persists traces to SQLite, and the queries the web page asks.

Write path (never on the host's path)::

    dispatcher thread: botrace_span_started / _finished / botrace_trace_* hooks
        └─ turn the span into a row (JSON of input/output/meta), put it in a
           pending map keyed by id, wake the writer once per batch
    event loop: writer task
        └─ swap the pending maps, write them in one transaction (aiosqlite, WAL),
           between batches prune old traces a bounded batch at a time

A span that starts and finishes within one batch is written once; a span
still running at flush time is written as ``running`` and replaced when it
finishes. So a process killed mid-message leaves its trace and every span
flushed so far; the next :meth:`TraceStore.open` marks them ``interrupted``.

Read path: separate read connections, see ``botrace.query`` and
docs/QUERY_API.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiosqlite

from botrace import query as _query
from botrace.hookspecs import hookimpl
from botrace.pricing import PriceTable
from botrace.query import QueryError
from botrace.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    TAGS_FROM_SPANS_ONE,
    duration_bucket,
)
from botrace.span import TRACE_FIELDS

__all__ = ["QueryError", "StoreError", "TraceStore"]

log = logging.getLogger("botrace.store")

_SPAN_COLS = (
    "trace_start_ns", "trace_id", "span_id", "parent_id", "name", "span_type", "plugin", "gkey",
    "start_ns", "end_ns", "status", "input_tokens", "output_tokens", "cached_tokens",
    "self_ns", "dur_bucket", "cost_usd", "data",
)
_TRACE_COLS = (
    "trace_id", "name", "start_ns", "end_ns", "duration_ns", "status", "umo", "sender",
    "user_id", "session_id", "outline", "agent_type", "platform", "input_tokens",
    "output_tokens", "cached_tokens", "span_count", "llm_calls", "tool_calls", "error_count",
    "dropped_spans", "truncated", "plugins", "models", "attributes", "cost_usd",
)
_INSERT_SPAN = (
    f"INSERT INTO spans ({', '.join(_SPAN_COLS)}) VALUES ({', '.join('?' * len(_SPAN_COLS))})"
)
# a span whose "running" row was written by an earlier batch: finish that row
_UPDATE_SPAN = (
    "UPDATE spans SET parent_id = ?, name = ?, span_type = ?, plugin = ?, gkey = ?, "
    "start_ns = ?, end_ns = ?, status = ?, input_tokens = ?, output_tokens = ?, "
    "cached_tokens = ?, self_ns = ?, dur_bucket = ?, cost_usd = ?, data = ? "
    "WHERE trace_start_ns = ? AND trace_id = ? AND span_id = ?"
)
_INSERT_PLUGIN = ("INSERT OR REPLACE INTO plugins (name, display_name, plugin_type, version) "
                  "VALUES (?, ?, ?, ?)")
_INSERT_TRACE = (
    f"INSERT OR REPLACE INTO traces ({', '.join(_TRACE_COLS)}) "
    f"VALUES ({', '.join('?' * len(_TRACE_COLS))})"
)
# a "running" trace row (its start) never overwrites what is there: a spilled start
# may be written after its finish
_INSERT_TRACE_START = _INSERT_TRACE.replace("INSERT OR REPLACE", "INSERT OR IGNORE")
_INSERT_TAG = "INSERT OR IGNORE INTO trace_tags (start_ns, trace_id, kind, value) VALUES (?, ?, ?, ?)"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr).encode


class StoreError(Exception):
    """The database cannot be opened or used (corrupt, foreign, newer version, missing)."""


class _TraceAcc:
    """Running totals of one trace, kept by the dispatcher thread until the trace ends."""

    __slots__ = (
        "cached",
        "cost",
        "end",
        "errors",
        "input",
        "llm",
        "models",
        "output",
        "plugins",
        "spans",
        "tool_calls",
        "tools",
        "types",
    )

    def __init__(self) -> None:
        self.input = self.output = self.cached = 0
        self.spans = self.llm = self.tool_calls = self.errors = 0
        self.cost = 0.0
        self.end = 0
        self.plugins: dict[str, None] = {}
        self.models: dict[str, None] = {}
        self.tools: dict[str, None] = {}
        self.types: dict[str, None] = {}


def _tok(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


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
        queue_max: int = 500_000,
        flush_interval: float = 0.05,
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
        self.retention_days = int(getattr(settings, "trace_retention_days", 7) or 0)
        self.max_mb = int(getattr(settings, "trace_db_max_mb", 0) or 0)
        self.prices = PriceTable(getattr(settings, "trace_price_table", None) or {})
        self.queue_max = queue_max
        # trace rows and their tags may use a reserve above queue_max, so that a
        # trace is not lost for want of room its spans took
        self._hard_max = queue_max + queue_max // 4
        self.flush_interval = flush_interval
        self.prune_interval = prune_interval
        self.prune_batch = prune_batch
        self.block_timeout = block_timeout
        self.busy_timeout_ms = busy_timeout_ms
        self._n_readers = max(1, readers)
        self.spill_max_mb = spill_max_mb
        self.spill_chunk = 50_000
        self._spill_path = self.path.with_name(self.path.name + ".spill")
        self._spill_file: Any = None
        self._spill_bytes = 0
        self._spill_pending = 0
        self._draining = False
        self.spilled = 0
        self.unspilled = 0
        self.max_backoff = max_backoff

        # shared between the dispatcher thread and the writer (guarded by _cond)
        self._cond = threading.Condition()
        self._p_spans: dict[str, tuple] = {}
        self._p_traces: dict[str, tuple] = {}
        self._p_tags: list[tuple] = []
        self._p_plugins: dict[str, tuple] = {}
        self._plugins_seen: dict[str, Any] = {}  # dispatcher thread
        # span ids whose "running" row is on disk (writer only); their end is an UPDATE
        self._running_on_disk: dict[str, None] = {}
        self._pending = 0
        self._wake_scheduled = False
        self._shedding = False
        self._running_traces: dict[str, tuple] = {}  # started rows, re-queued if the file is lost
        # dispatcher thread only
        self._acc: dict[str, _TraceAcc] = {}
        self._child_ns: dict[str, int] = {}

        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._writer_task: asyncio.Task | None = None
        self._wconn: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._reader_i = 0
        self._file_id: tuple[int, int] | None = None
        self._accepting = False
        self._closing = False
        self._opened = False
        self._prune_due = False
        self._next_prune = 0.0
        self._last_log = 0.0
        self._schema_version = 0
        self._writing = False
        self._settled_upto = 0
        self._wlock = asyncio.Lock()

        self.accepted = 0
        self.backpressure_waits = 0
        self.written = 0
        self.dropped = 0
        self.write_errors = 0
        self.pruned_traces = 0
        self.recovered_traces = 0
        self.reopened = 0
        self.last_error: str | None = None
        self.last_error_ns: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> TraceStore:
        """Open (create, migrate, recover) the database and start the writer task.

        Raises :class:`StoreError` when the file is not a usable botrace
        database; such a file is left exactly as it was.
        """
        if self._opened:
            return self
        self._loop = asyncio.get_running_loop()
        if self.read_only:
            self._schema_version = await asyncio.to_thread(self._inspect_read_only)
        else:
            self._schema_version, self.recovered_traces = await asyncio.to_thread(self._prepare)
            self._wconn = await self._connect_writer()
            self._file_id = self._stat_id()
            self._wake = asyncio.Event()
            self._accepting = True
            self._prune_due = True  # prune at start
            self._next_prune = time.monotonic() + self.prune_interval
            self._writer_task = asyncio.create_task(self._writer(), name="botrace-store-writer")
            self._writer_task.add_done_callback(self._writer_ended)
            self._wake.set()
        await self._open_readers()
        self._opened = True
        return self

    def _writer_ended(self, task: asyncio.Task) -> None:
        """The writer should only end on close; if it died, stop accepting and say so."""
        if task.cancelled() or task.exception() is None:
            return
        self._accepting = False
        with self._cond:
            self.dropped += self._pending
            self._note_error_locked("writer task died; store stopped", task.exception())
        log.error("botrace store writer died", exc_info=task.exception())

    async def close(self) -> None:
        """Write everything accepted so far, stop the writer, close every connection."""
        if not self._opened:
            return
        self._accepting = False
        self._closing = True
        if self._writer_task is not None:
            self._wake.set()
            try:
                await self._writer_task
            except Exception as exc:  # pragma: no cover - the writer catches its own
                self._note_error("writer ended", exc)
            self._writer_task = None
        if self._wconn is not None:
            try:  # leave fresh planner statistics for the next reader (sampled: milliseconds)
                await self._wconn.execute("PRAGMA analysis_limit = 400")
                await self._wconn.execute("ANALYZE")
            except sqlite3.Error:
                pass
        for conn in [*self._readers, self._wconn]:
            if conn is not None:
                try:
                    await conn.close()
                except Exception:  # closing a broken connection: nothing left to save
                    pass
        self._readers = []
        self._wconn = None
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
        acc = self._acc[trace.trace_id] = _TraceAcc()
        row = self._trace_row(trace, trace.attributes, "running", None, acc)
        with self._cond:
            self._running_traces[trace.trace_id] = row
            if self._pending >= self._hard_max:
                self._spill_or_drop_locked([("t", row)], "trace")
                return
            self._put_locked(self._p_traces, trace.trace_id, row)

    @hookimpl
    def botrace_span_started(self, span: Any) -> None:
        if not self._accepting:
            return
        # Keep the span itself: its "running" row is made at flush time, and only
        # if it is still running then (most spans start and end within a batch).
        with self._cond:
            if self._pending >= self.queue_max * 0.8:
                # keep room for what finishes: a missing "running" row costs nothing
                # once the span's finished row arrives
                return
            if span.span_id not in self._p_spans:
                self._put_locked(self._p_spans, span.span_id, span)

    @hookimpl
    def botrace_span_finished(self, span: Any) -> None:
        if not self._accepting:
            return
        try:
            row = self._span_row(span)
        except Exception as exc:  # a value the encoder cannot handle: count, never raise
            self._drop(1, "span serialisation failed", exc)
            return
        self._put_span(span.span_id, row)

    @hookimpl
    def botrace_trace_finished(self, trace: Any) -> None:
        if not self._accepting:
            return
        acc = self._acc.pop(trace.trace_id, None) or _TraceAcc()
        try:
            status = trace.status
            if acc.errors and status == "ok":
                status = "error"
            row = self._trace_row(trace, trace.attributes, status, trace.end_ns, acc)
        except Exception as exc:
            self._drop(1, "trace serialisation failed", exc)
            return
        tid, start = trace.trace_id, trace.start_ns
        tags = [(start, tid, "span_type", v) for v in acc.types]
        tags += [(start, tid, "plugin", v) for v in acc.plugins]
        tags += [(start, tid, "model", v) for v in acc.models]
        tags += [(start, tid, "tool", v) for v in acc.tools]
        with self._cond:
            self._running_traces.pop(tid, None)
            if self._pending + len(tags) >= self._hard_max:
                self._spill_or_drop_locked([("t", row), *(("g", t) for t in tags)], "trace")
                return
            self._put_locked(self._p_traces, tid, row)
            self._p_tags.extend(tags)
            self._pending += len(tags)

    # ------------------------------------------------------------------ rows

    def _span_row(self, span: Any) -> tuple:
        trace_id = span.trace.trace_id
        meta = span.meta
        plugin = span.plugin
        span_type = span.span_type
        start, end = span.start_ns, span.end_ns
        duration = None if end is None else end - start
        model = tool = None
        tin = tout = tcached = 0
        cost = 0.0
        acc = self._acc.get(trace_id)
        if acc is None:  # a straggler of a finished trace, or one started before we were
            acc = _TraceAcc()
        if span_type == "llm_call":
            acc.llm += 1
            if meta:
                model = meta.get("model")
                model = str(model) if model is not None else None
                tin = _tok(meta.get("input_tokens"))
                tout = _tok(meta.get("output_tokens"))
                tcached = _tok(meta.get("cached_tokens"))
                if self.prices:
                    cost = self.prices.cost(model, tin, tout, tcached)
        elif span_type == "tool_call":
            acc.tool_calls += 1
            tool = meta.get("tool_name") if meta else None
            tool = str(tool) if tool is not None else span.name
        children = self._child_ns.pop(span.span_id, 0)
        self_ns = None if duration is None else max(0, duration - children)
        if duration is not None and span.parent_id is not None:
            self._child_ns[span.parent_id] = self._child_ns.get(span.parent_id, 0) + duration
        data: dict[str, Any] = {}
        if span.input:
            data["input"] = span.input
        if span.output:
            data["output"] = span.output
        if meta:
            data["meta"] = meta
        if span.events:
            data["events"] = span.events
        if span.error:
            data["error"] = span.error
        if plugin is not None and self._plugins_seen.get(plugin.name) is not plugin:
            self._see_plugin(plugin)
        if span.truncated:
            data["truncated"] = True
        status = span.status
        acc.spans += 1
        acc.input += tin
        acc.output += tout
        acc.cached += tcached
        acc.cost += cost
        if status == "error":
            acc.errors += 1
        if end is not None and end > acc.end:
            acc.end = end
        acc.types[span_type] = None
        if plugin is not None:
            acc.plugins[plugin.name] = None
        if model is not None:
            acc.models[model] = None
        if tool is not None:
            acc.tools[tool] = None
        return (
            span.trace.start_ns, trace_id, span.span_id, span.parent_id, span.name, span_type,
            plugin.name if plugin is not None else None,
            model if span_type == "llm_call" else tool if span_type == "tool_call" else
            (plugin.name if plugin is not None else None) if span_type == "plugin_call" else span.name,
            start, end, status, tin, tout, tcached, self_ns, duration_bucket(duration), cost,
            _dumps(data) if data else None,
        )

    def _see_plugin(self, plugin: Any) -> None:
        """A plugin's description is stored once (and again when it changes), not per span."""
        before = self._plugins_seen.get(plugin.name)
        self._plugins_seen[plugin.name] = plugin
        if before is not None and before == plugin:
            return
        with self._cond:
            self._p_plugins[plugin.name] = (plugin.name, plugin.display_name,
                                            plugin.plugin_type, plugin.version)

    @staticmethod
    def _running_row(span: Any) -> tuple:
        plugin = span.plugin
        return (
            span.trace.start_ns, span.trace.trace_id, span.span_id, span.parent_id, span.name,
            span.span_type, plugin.name if plugin is not None else None,
            span.name if span.span_type not in ("llm_call", "tool_call", "plugin_call") else
            (plugin.name if plugin is not None else None) if span.span_type == "plugin_call" else None,
            span.start_ns, None, "running", 0, 0, 0, None, None, 0.0, None,
        )

    def _trace_row(self, trace: Any, attrs: Mapping[str, Any], status: str,
                   end_ns: int | None, acc: _TraceAcc) -> tuple:
        attrs = dict(attrs)
        cols = []
        for key in TRACE_FIELDS:
            value = attrs.pop(key, None)
            cols.append(None if value is None else str(value))
        start = trace.start_ns
        return (
            trace.trace_id, trace.name, start, end_ns,
            None if end_ns is None else end_ns - start, status, *cols,
            acc.input, acc.output, acc.cached, acc.spans, acc.llm, acc.tool_calls, acc.errors,
            int(getattr(trace, "dropped_spans", 0) or 0), int(bool(trace.truncated)),
            _dumps(list(acc.plugins)), _dumps(list(acc.models)),
            _dumps(attrs) if attrs else None, acc.cost,
        )

    def _put_span(self, key: str, row: tuple) -> None:
        # self._p_spans is read under the lock: the writer swaps it for a new dict
        with self._cond:
            if self._pending >= self.queue_max:
                if not self._shedding:
                    # backpressure on the dispatcher thread (never the host's): give
                    # the writer a moment to catch up before counting a loss
                    self.backpressure_waits += 1
                    deadline = time.monotonic() + self.block_timeout
                    while self._pending >= self.queue_max and self._accepting:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                if self._pending >= self.queue_max:
                    # still full: spill to disk (or shed) without waiting again until
                    # the writer has taken the queue (one wait per overload, not per event)
                    self._shedding = True
                    self._spill_or_drop_locked([("s", row)], "span")
                    return
            self._put_locked(self._p_spans, key, row)

    def _spill_or_drop_locked(self, records: list[tuple[str, tuple]], what: str) -> None:
        """Overflow goes to a spill file next to the database, read back by the writer
        when it has caught up; past ``spill_max_mb`` (or on any error) it is dropped."""
        try:
            if self.spill_max_mb <= 0 or self._spill_bytes > self.spill_max_mb * 1024 * 1024:
                raise OSError("spill file full")
            if self._spill_file is None:
                self._spill_file = open(self._spill_path, "ab")  # noqa: SIM115 - closed on drain
            blob = pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
            self._spill_file.write(len(blob).to_bytes(4, "little") + blob)
            self._spill_bytes += len(blob) + 4
            self.spilled += len(records)
            self._spill_pending += len(records)
        except (OSError, pickle.PicklingError) as exc:
            self.dropped += len(records)
            self._note_error_locked(f"store queue full; {what} dropped", exc)

    def _take_spill(self) -> Path | None:
        """Hand the spill file to the writer (a new one starts if overflow goes on)."""
        with self._cond:
            if self._spill_file is None:
                return None
            self._spill_file.close()
            self._spill_file = None
            draining = self._spill_path.with_name(self._spill_path.name + ".draining")
            os.replace(self._spill_path, draining)
            self._spill_bytes = 0
            self._spill_pending = 0
            return draining

    async def _drain_spill(self, path: Path | None = None) -> bool:
        """Write what was spilled, in transactions of ``spill_chunk`` records."""
        path = path or self._take_spill()
        if path is None:
            return True
        self._draining = True
        try:
            return await self._drain_file(path)
        finally:
            self._draining = False

    async def _drain_file(self, path: Path) -> bool:
        records = await asyncio.to_thread(_read_spill, path)
        ok = True
        for i in range(0, len(records), self.spill_chunk):
            spans: dict = {}
            traces: dict = {}
            tags: list = []
            for kind, row in records[i:i + self.spill_chunk]:
                if kind == "s":
                    spans[row[2]] = row
                elif kind == "t":
                    traces[row[0]] = row
                else:
                    tags.append(row)
            if ok:
                ok = await self._write_batch(spans, traces, tags, {})
            if not ok:  # the fault: back into the queue (bounded, losses counted)
                self._give_back(spans, traces, tags, {})
        self.unspilled += len(records)
        path.unlink(missing_ok=True)
        return ok

    def _put_locked(self, table: dict, key: str, row: tuple) -> None:
        if key not in table:
            self._pending += 1
        table[key] = row
        self.accepted += 1
        if not self._wake_scheduled and self._loop is not None:
            self._wake_scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop is closed: close() already flushed
                pass

    def _drop(self, n: int, what: str, exc: BaseException | None) -> None:
        with self._cond:
            self.dropped += n
            self._note_error_locked(what, exc)

    # ------------------------------------------------------------------ writer

    def _take(self) -> tuple[dict, dict, list, dict]:
        with self._cond:
            batch = self._p_spans, self._p_traces, self._p_tags, self._p_plugins
            self._p_spans, self._p_traces, self._p_tags, self._p_plugins = {}, {}, [], {}
            self._pending = 0
            self._wake_scheduled = False
            self._shedding = False
            self._cond.notify_all()
        return batch

    def _give_back(self, spans: dict, traces: dict, tags: list, plugins: dict) -> None:
        """A failed batch goes back in front of what arrived since (newer rows win)."""
        with self._cond:
            spans.update(self._p_spans)
            traces.update(self._p_traces)
            tags.extend(self._p_tags)
            plugins.update(self._p_plugins)
            self._p_plugins = plugins
            over = len(spans) + len(traces) + len(tags) - self._hard_max
            if over > 0:  # the fault lasts: keep the bound, count what is lost
                for key in list(spans)[:over]:
                    del spans[key]
                    self.dropped += 1
            self._p_spans, self._p_traces, self._p_tags = spans, traces, tags
            self._pending = len(spans) + len(traces) + len(tags)

    async def _writer(self) -> None:
        backoff = 0.0
        # a previous process died with overflow on disk: those rows are still worth writing
        for leftover in (self._spill_path.with_name(self._spill_path.name + ".draining"),
                         self._spill_path):
            if leftover.exists() and self._spill_file is None:
                try:
                    await self._drain_spill(leftover)
                except (OSError, pickle.UnpicklingError, EOFError) as exc:
                    self._note_error("unreadable spill file left as it was", exc)
        while True:
            if backoff:
                # a fault: wait it out (new rows do not shorten the wait), unless closing
                end = time.monotonic() + backoff
                while not self._closing and time.monotonic() < end:
                    await asyncio.sleep(min(0.05, backoff))
            elif not self._prune_due:
                timeout = None if self._closing else max(0.0, self._next_prune - time.monotonic())
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    self._prune_due = True
            self._wake.clear()
            if not self._closing and self.flush_interval and self._pending < 10_000:
                await asyncio.sleep(self.flush_interval)  # let a batch gather
            with self._cond:
                upto = self.accepted
                batch = self._take()
                self._writing = True
            ok = True
            try:
                if any(batch):
                    ok = await self._write_batch(*batch)
                    if not ok:
                        self._give_back(*batch)
            finally:
                self._writing = False
            if ok:
                self._settled_upto = upto
                if self._spill_pending and self._pending < self.queue_max // 2:
                    ok = await self._drain_spill()
            if ok and self._prune_due and not self._closing:
                n = await self._guard(self._prune_step(), "prune")
                if n is None or n < self.prune_batch:
                    self._prune_due = False
                    self._next_prune = time.monotonic() + self.prune_interval
                    await self._guard(self._analyze(), "analyze")
            backoff = 0.0 if ok else min(self.max_backoff, max(0.05, backoff * 2))
            if self._closing:
                if ok and not self._pending and not self._spill_pending:
                    return
                if not ok and backoff >= self.max_backoff:
                    # the fault did not clear while closing: count what is lost
                    with self._cond:
                        self.dropped += self._pending
                    self._take()
                    return

    async def _write_batch(self, spans: dict, traces: dict, tags: list, plugins: dict) -> bool:
        on_disk = self._running_on_disk
        inserts: list[tuple] = []
        updates: list[tuple] = []
        started: list[str] = []
        for span_id, value in spans.items():
            if type(value) is tuple:  # finished
                if span_id in on_disk:
                    updates.append((*value[3:], value[0], value[1], value[2]))
                else:
                    inserts.append(value)
            elif value.end_ns is None and span_id not in on_disk:  # still running now
                inserts.append(self._running_row(value))
                started.append(span_id)
            # (ended but its finished event not dispatched yet: that event brings the row)
        try:
            async with self._wlock:
                await self._check_file()
                conn = self._wconn
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    if traces:
                        starts = [r for r in traces.values() if r[5] == "running"]
                        ends = [r for r in traces.values() if r[5] != "running"]
                        if ends:
                            await conn.executemany(_INSERT_TRACE, ends)
                        if starts:
                            await conn.executemany(_INSERT_TRACE_START, starts)
                    if inserts:
                        await conn.executemany(_INSERT_SPAN, inserts)
                    if updates:
                        await conn.executemany(_UPDATE_SPAN, updates)
                    if tags:
                        await conn.executemany(_INSERT_TAG, tags)
                    if plugins:
                        await conn.executemany(_INSERT_PLUGIN, list(plugins.values()))
                    await conn.commit()
                except BaseException:
                    try:
                        await conn.rollback()
                    except Exception:
                        pass
                    raise
        except (sqlite3.Error, OSError, ValueError) as exc:
            self.write_errors += 1
            self._note_error("write failed", exc)
            if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
                await self._reopen_writer()
            return False
        for row in updates:
            on_disk.pop(row[-1], None)
        for span_id in started:
            on_disk[span_id] = None
        if len(on_disk) > 200_000:  # spans that never end: forget the oldest
            for span_id in list(on_disk)[:50_000]:
                del on_disk[span_id]
        self.written += len(inserts) + len(updates) + len(traces)
        return True

    async def _guard(self, coro: Any, what: str) -> Any:
        try:
            return await coro
        except (sqlite3.Error, OSError) as exc:
            self.write_errors += 1
            self._note_error(f"{what} failed", exc)
            return None

    # ------------------------------------------------------------------ retention

    async def _prune_step(self, retention_days: int | None = None,
                          max_mb: int | None = None) -> int:
        """Delete about ``prune_batch`` whole traces (oldest first) that are too old, or
        while the database is over its size cap. Returns how many traces went."""
        days = self.retention_days if retention_days is None else retention_days
        cap = self.max_mb if max_mb is None else max_mb
        conn = self._wconn
        upto = None
        if days > 0:
            cutoff = time.time_ns() - days * 86_400 * 1_000_000_000
            upto = await self._batch_end(cutoff)
        if upto is None and cap > 0 and await self._used_bytes() > cap * 1024 * 1024:
            upto = await self._batch_end(None)
        if upto is None:
            return 0
        # Spans and tags are keyed by their trace's start time, so a batch of whole
        # traces is three key-range deletes: no trace is ever left half-deleted.
        async with self._wlock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                await conn.execute("DELETE FROM spans WHERE trace_start_ns <= ?", (upto,))
                await conn.execute("DELETE FROM trace_tags WHERE start_ns <= ?", (upto,))
                cur = await conn.execute("DELETE FROM traces WHERE start_ns <= ?", (upto,))
                deleted = cur.rowcount
                await conn.commit()
            except BaseException:
                await conn.rollback()
                raise
            self.pruned_traces += deleted
            # give freed pages back to the file system a bounded amount at a time
            await conn.execute("PRAGMA incremental_vacuum(2000)")
        return deleted

    async def _analyze(self) -> None:
        """Sampled planner statistics (milliseconds even on a big file), so the readers
        pick the right index for a filter (e.g. a rare duration versus the time order)."""
        async with self._wlock:
            await self._wconn.execute("PRAGMA analysis_limit = 400")
            await self._wconn.execute("ANALYZE")

    async def _batch_end(self, before_ns: int | None) -> int | None:
        """Start time of the newest trace in the next batch to prune (None: nothing)."""
        where, params = ("WHERE start_ns < ?", [before_ns]) if before_ns is not None else ("", [])
        async with self._wconn.execute(
            f"SELECT max(start_ns) FROM (SELECT start_ns FROM traces {where} "
            "ORDER BY start_ns LIMIT ?)", [*params, self.prune_batch],
        ) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def _used_bytes(self) -> int:
        conn = self._wconn
        async with conn.execute("PRAGMA page_count") as cur:
            pages = (await cur.fetchone())[0]
        async with conn.execute("PRAGMA freelist_count") as cur:
            free = (await cur.fetchone())[0]
        async with conn.execute("PRAGMA page_size") as cur:
            size = (await cur.fetchone())[0]
        return (pages - free) * size

    async def prune(self, retention_days: int | None = None, max_mb: int | None = None,
                    progress: Any = None) -> int:
        """Prune now until nothing is due (``botrace prune``). Returns traces deleted.

        Whole traces, oldest first, ``prune_batch`` per transaction, so writes
        interleave; ``progress(deleted_so_far)`` is called after each batch.
        """
        if self.read_only or self._wconn is None:
            raise StoreError("the store is not open for writing")
        await self.flush()
        total = 0
        while True:
            n = await self._prune_step(retention_days, max_mb)
            total += n
            if progress is not None and n:
                progress(total)
            if n < self.prune_batch:
                return total

    async def count_prunable(self, retention_days: int | None = None) -> int:
        """How many traces are older than the retention (for ``prune --dry-run``)."""
        days = self.retention_days if retention_days is None else retention_days
        if days <= 0:
            return 0
        cutoff = time.time_ns() - days * 86_400 * 1_000_000_000
        async with self._reader().execute(
                "SELECT count(*) FROM traces WHERE start_ns < ?", (cutoff,)) as cur:
            return (await cur.fetchone())[0]

    async def count_traces(self, since_ns: int | None = None, until_ns: int | None = None) -> int:
        """Traces started in ``[since_ns, until_ns)``."""
        return await _query.count_traces(self._reader(), since_ns, until_ns)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row accepted so far is written; False if ``timeout`` ran out
        first (a fault is holding the writer back)."""
        task = self._writer_task
        if task is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        target = self.accepted
        while not task.done():
            with self._cond:
                settled = not self._pending
            if (settled and not self._writing and self._settled_upto >= target
                    and not self._spill_pending and not self._draining):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._wake.set()
            await asyncio.sleep(0.005)
        return not self._pending

    # ------------------------------------------------------------------ faults

    def _stat_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    async def _check_file(self) -> None:
        """The database file was deleted or replaced under us: start a fresh one."""
        if self._stat_id() == self._file_id:
            return
        self._note_error("database file vanished or was replaced; recreating", None)
        await self._reopen_writer()

    async def _reopen_writer(self) -> None:
        for conn in [self._wconn, *self._readers]:
            try:
                await conn.close()
            except Exception:
                pass
        self._readers = []
        self.reopened += 1
        self._running_on_disk.clear()
        self._plugins_seen = {}
        try:
            self._schema_version, _ = await asyncio.to_thread(self._prepare)
        except StoreError as exc:
            # a foreign file now sits at the path: leave it alone, keep failing
            self._wconn = await self._connect_memory()
            self._file_id = self._stat_id()
            raise sqlite3.OperationalError(str(exc)) from None
        self._wconn = await self._connect_writer()
        self._file_id = self._stat_id()
        await self._open_readers()
        with self._cond:  # traces still running lost their started row with the file
            for tid, row in self._running_traces.items():
                if tid not in self._p_traces:
                    self._p_traces[tid] = row
                    self._pending += 1

    async def _connect_memory(self) -> aiosqlite.Connection:
        return await aiosqlite.connect(":memory:", isolation_level=None)

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

    # ------------------------------------------------------------------ connections

    def _inspect(self, conn: sqlite3.Connection) -> int:
        """The file's schema version; StoreError when it is not ours."""
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is not a readable SQLite database ({exc}); "
                "it was left untouched - move it away or point trace_db_path elsewhere"
            ) from None
        if tables == 0 and app_id == 0:
            return 0
        if app_id != APPLICATION_ID:
            raise StoreError(
                f"{self.path} is a SQLite database of another application "
                f"(application_id={app_id:#x}); it was left untouched"
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this botrace "
                f"understands ({SCHEMA_VERSION}); upgrade botrace"
            )
        return version

    def _inspect_read_only(self) -> int:
        if not self.path.exists():
            raise StoreError(f"{self.path} does not exist")
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            version = self._inspect(conn)
        finally:
            conn.close()
        if version == 0:
            raise StoreError(f"{self.path} is an empty database, not a botrace store")
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}; open it once read-write "
                f"(any botrace command but serve) to migrate it to {SCHEMA_VERSION}"
            )
        return version

    def _prepare(self) -> tuple[int, int]:
        """Create or migrate the database, recover interrupted traces (worker thread)."""
        path = self.path
        if path.exists() and path.stat().st_size > 0:
            # look before touching: a foreign or corrupt file must stay byte-for-byte as it is
            probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                self._inspect(probe)
            finally:
                probe.close()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=self.busy_timeout_ms / 1000)
        try:
            version = self._inspect(conn)
            if version == 0:
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("BEGIN IMMEDIATE")
                for stmt in _statements(SCHEMA):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute("PRAGMA user_version = 1")
                conn.execute("COMMIT")
                version = 1
            else:
                conn.execute("PRAGMA journal_mode = WAL")
            while version < SCHEMA_VERSION:
                script, step = MIGRATIONS[version]
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in _statements(script):
                        conn.execute(stmt)
                    if step is not None:
                        step(conn)
                    conn.execute(f"PRAGMA user_version = {version + 1}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                version += 1
            recovered = _recover_interrupted(conn)
            return version, recovered
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        finally:
            conn.close()

    async def _connect_writer(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in (
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
            f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}",
            "PRAGMA temp_store = MEMORY",
            "PRAGMA cache_size = -32000",
            "PRAGMA journal_size_limit = 67108864",
        ):
            await conn.execute(pragma)
        return conn

    async def _open_readers(self) -> None:
        uri = self.path.resolve().as_uri() + ("?mode=ro" if self.read_only else "")
        for _ in range(self._n_readers):
            conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            await conn.execute("PRAGMA query_only = 1")
            await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await conn.execute("PRAGMA cache_size = -16000")
            conn.row_factory = sqlite3.Row
            self._readers.append(conn)

    def _reader(self) -> aiosqlite.Connection:
        if not self._readers:
            raise StoreError("the store is not open")
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
        if not self._opened:
            state = "closed"
        elif self.read_only:
            state = "read_only"
        elif self._pending >= self.queue_max or (
            self.last_error_ns and time.time_ns() - self.last_error_ns < 60_000_000_000
        ):
            state = "degraded"
        else:
            state = "ok"
        return {
            "state": state,
            "db_path": str(self.path),
            "db_bytes": db_bytes,
            "queue_depth": self._pending,
            "queue_max": self.queue_max,
            "accepted": self.accepted,
            "backpressure_waits": self.backpressure_waits,
            "written": self.written,
            "dropped": self.dropped,
            "spilled": self.spilled,
            "spill_queue": self._spill_pending,
            "write_errors": self.write_errors,
            "last_error": self.last_error,
            "last_error_ns": self.last_error_ns,
            "pruned_traces": self.pruned_traces,
            "recovered_traces": self.recovered_traces,
            "reopened": self.reopened,
            "schema_version": self._schema_version,
        }

    # ------------------------------------------------------------------ queries

    async def list_traces(self, filters: Mapping[str, Any] | None = None, limit: Any = 50,
                          cursor: str | None = None) -> dict[str, Any]:
        """Trace summaries, newest first; see docs/QUERY_API.md."""
        return await _query.list_traces(self._reader(), filters, limit, cursor)

    async def get_trace(self, trace_id: str, *, flat: bool = False,
                        tree_only: bool = False) -> dict[str, Any] | None:
        """One trace: summary, flat spans and the span tree; None when unknown."""
        return await _query.get_trace(self._reader(), trace_id, flat=flat, tree_only=tree_only)

    async def stats(self, group_by: str = "stage", since_ns: Any = None, until_ns: Any = None,
                    filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Latency, error and token statistics per stage / plugin / tool / model."""
        return await _query.stats(self._reader(), group_by, since_ns, until_ns, filters)

    async def sessions(self, filters: Mapping[str, Any] | None = None, limit: Any = 50,
                       cursor: str | None = None) -> dict[str, Any]:
        """Conversations (by session id, else umo) with totals, most recent first."""
        return await _query.sessions(self._reader(), filters, limit, cursor)

    async def users(self, filters: Mapping[str, Any] | None = None, limit: Any = 50,
                    cursor: str | None = None) -> dict[str, Any]:
        """Per-user totals, most recent first."""
        return await _query.users(self._reader(), filters, limit, cursor)

    async def iter_traces(self, since_ns: int | None = None, until_ns: int | None = None,
                          batch: int = 200):
        """Every stored trace in a time range with its spans, oldest first (for export)."""
        async for item in _query.iter_traces(self._reader(), since_ns, until_ns, batch):
            yield item


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _recover_interrupted(conn: sqlite3.Connection) -> int:
    """Traces left ``running`` by a process that died: mark them (and their running
    spans) ``interrupted`` and rebuild their totals and tags from the spans kept."""
    found = conn.execute("SELECT trace_id, start_ns FROM traces WHERE status = 'running'").fetchall()
    if not found:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for tid, start in found:
            key = {"start": start, "tid": tid}
            conn.execute(
                "UPDATE spans SET status = 'interrupted' WHERE trace_start_ns = :start "
                "AND trace_id = :tid AND status = 'running'", key)
            (n, tin, tout, tcached, llm, tools, errors, cost, end) = conn.execute(
                """SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
                          coalesce(sum(cached_tokens), 0), coalesce(sum(span_type = 'llm_call'), 0),
                          coalesce(sum(span_type = 'tool_call'), 0),
                          coalesce(sum(status = 'error'), 0), coalesce(sum(cost_usd), 0),
                          max(end_ns)
                   FROM spans WHERE trace_start_ns = :start AND trace_id = :tid""", key,
            ).fetchone()
            plugins = [r[0] for r in conn.execute(
                "SELECT DISTINCT plugin FROM spans WHERE trace_start_ns = :start "
                "AND trace_id = :tid AND plugin IS NOT NULL", key)]
            models = [r[0] for r in conn.execute(
                "SELECT DISTINCT gkey FROM spans WHERE trace_start_ns = :start "
                "AND trace_id = :tid AND span_type = 'llm_call' AND gkey IS NOT NULL", key)]
            conn.execute(
                """UPDATE traces SET status = 'interrupted', span_count = ?, input_tokens = ?,
                          output_tokens = ?, cached_tokens = ?, llm_calls = ?, tool_calls = ?,
                          error_count = ?, cost_usd = ?, end_ns = ?,
                          duration_ns = CASE WHEN ? IS NULL THEN NULL ELSE ? - start_ns END,
                          plugins = ?, models = ?
                   WHERE trace_id = ?""",
                (n, tin, tout, tcached, llm, tools, errors, cost, end, end, end,
                 json.dumps(plugins), json.dumps(models), tid),
            )
            conn.execute(TAGS_FROM_SPANS_ONE, key)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(found)


def _read_spill(path: Path) -> list[tuple[str, tuple]]:
    records: list[tuple[str, tuple]] = []
    with open(path, "rb") as f:
        while True:
            head = f.read(4)
            if len(head) < 4:
                return records
            blob = f.read(int.from_bytes(head, "little"))
            records.extend(pickle.loads(blob))  # our own file, written by this process
