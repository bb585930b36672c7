"""The durable store: a sink that persists traces to SQLite, and the queries the web page asks.

Write path (never on the host's path)::

    dispatcher thread: botrace_span_finished / botrace_trace_* hooks
        └─ intake.py: append the finished span itself (it no longer changes once ended)
           to a list under a lock; a trace's start and end and a plugin's description
           as small tuples (*records*, writer.py); bounded, overflow spilled to disk
           (spill.py), every loss counted
    feeder thread "botrace-store-feeder" (feeder.py; every flush_interval, sooner under load)
        └─ takes the list, adds a "running" record for each span of an open trace
           that is still running, folds the batch (folding.py: each trace's spans as one
           JSON chunk with self time and cost worked out, per-trace totals, minute
           statistics), pickles it and sends it to the writer; keeps it until confirmed
    writer process (serve.py + writer.py; or a thread, ``trace_store_writer``)
        └─ trace rows and tags, the statistics rollup; one SQLite transaction per
           batch (WAL); retention between batches (retention.py); spill files
    supervisor.py: starts the writer, notices at once when it dies, restarts it (a
        thread after repeated deaths), hands it what the dead one had not confirmed

A span that starts and finishes within one batch is written once; a span still
running when its batch is taken is written as ``running`` and written again, in a later
chunk that supersedes it, when it finishes (``botrace.store.chunks``). So a process
killed mid-message leaves its trace and every span flushed so far; the next
:meth:`TraceStore.open` marks them ``interrupted`` (database.py). The store has no
``botrace_span_started`` hook: the feeder finds running spans in the span lists of the
traces still open (looking only at the spans added since the last batch), so the
dispatcher calls nothing per span start for the store.

Read path: aiosqlite read connections in this process, see ``botrace.query`` and
docs/QUERY_API.md. Health: health.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
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
from botrace.store.database import StoreError, inspect_read_only, prepare_database
from botrace.store.feeder import Feeder
from botrace.store.folding import SpanFolder
from botrace.store.health import ErrorLog, store_health
from botrace.store.intake import Intake
from botrace.store.jsontext import encode_value
from botrace.store.supervisor import Supervisor

__all__ = ["QueryError", "StoreError", "TraceStore"]

log = logging.getLogger("botrace.store")

WRITER_MODES = ("process", "thread")


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
        fault_queue_max: int = 10_000,
        flush_interval: float = 0.2,
        commit_interval: float = 0.5,
        prune_interval: float = 300.0,
        prune_batch: int = 500,
        block_timeout: float = 0.2,
        busy_timeout_ms: int = 2_000,
        readers: int = 2,
        max_backoff: float = 5.0,
        spill_max_mb: int = 1024,
        max_writer_deaths: int = 3,
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
        self._mode = mode
        self.retention_days = int(getattr(settings, "trace_retention_days", 7) or 0)
        self.max_mb = int(getattr(settings, "trace_db_max_mb", 0) or 0)
        self.price_table = dict(getattr(settings, "trace_price_table", None) or {})
        self.queue_max = queue_max
        self.flush_interval = flush_interval
        self.commit_interval = commit_interval
        self.prune_interval = prune_interval
        self.prune_batch = prune_batch
        self.busy_timeout_ms = busy_timeout_ms
        self._n_readers = max(1, readers)
        self.max_backoff = max_backoff
        self.max_writer_deaths = max_writer_deaths
        self.spill_chunk = 50_000
        self._spill_path = self.path.with_name(self.path.name + ".spill")

        self._errors = ErrorLog(log, self.path)
        self._intake = Intake(self._spill_path, self._errors.note, queue_max=queue_max,
                              fault_queue_max=fault_queue_max, block_timeout=block_timeout,
                              spill_max_mb=spill_max_mb)
        # The per-span hook is the intake's own method, bound here rather than wrapped by
        # the one below: a wrapper is a Python call more per span (~0.1 us, a tenth of
        # the hook's cost on the dispatcher thread).
        self.botrace_span_finished = self._intake.span_finished
        inflight_cap = max(1_000, min(queue_max // 2, 100_000))
        self._folder = SpanFolder(PriceTable(self.price_table), encode_value)  # feeder thread
        self._feeder = Feeder(self._intake, self._folder, flush_interval=flush_interval,
                              inflight_cap=inflight_cap,
                              fault_inflight_cap=max(1_000, fault_queue_max // 5))
        self._supervisor: Supervisor | None = None
        self._feeder_thread: threading.Thread | None = None

        self._loop: asyncio.AbstractEventLoop | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._reader_i = 0
        self._readers_gen = 0
        self._opened = False
        self._schema_version = 0
        self.recovered_traces = 0

    # ------------------------------------------------------------------ counters

    @property
    def writer_mode(self) -> str:
        """``process`` or ``thread``: who writes now (a thread after a fallback)."""
        return self._supervisor.mode if self._supervisor is not None else self._mode

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id (None with a writer thread, or no writer)."""
        return self._supervisor.pid if self._supervisor is not None else None

    def _stat(self, key: str) -> int:
        return self._supervisor.stat(key) if self._supervisor is not None else 0

    @property
    def accepted(self) -> int:
        """Records the hooks queued in memory (a spilled record is counted in ``spilled``)."""
        return self._intake.accepted

    @property
    def spilled(self) -> int:
        return self._intake.spilled

    @property
    def backpressure_waits(self) -> int:
        return self._intake.backpressure_waits

    @property
    def dropped(self) -> int:
        """Records lost: here (queue and spill full, a value that will not encode, a
        store stopped or closed) and in the writer (a fault that outlasted close)."""
        return self._intake.dropped + self._stat("dropped")

    @property
    def written(self) -> int:
        return self._stat("written")

    @property
    def write_errors(self) -> int:
        return self._stat("write_errors")

    @property
    def pruned_traces(self) -> int:
        return self._stat("pruned_traces")

    @property
    def reopened(self) -> int:
        return self._stat("reopened")

    @property
    def last_error(self) -> str | None:
        return self._errors.last

    # (the hooks' queue, for benchmarks and tests that feed a store they did not open)
    @property
    def _accepting(self) -> bool:
        return self._intake.accepting

    @_accepting.setter
    def _accepting(self, value: bool) -> None:
        self._intake.accepting = value

    @property
    def _buf(self) -> list:
        return self._intake.buf

    @_buf.setter
    def _buf(self, value: list) -> None:
        self._intake.buf = value

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
        feeder = self._feeder
        feeder.closing = feeder.close_queued = feeder.close_sent = feeder.stopped = False
        sup = Supervisor(self._writer_config(), self._mode, self._intake, feeder,
                         self._errors.note, max_deaths=self.max_writer_deaths,
                         max_backoff=self.max_backoff)
        sup.loop = self._loop
        feeder.on_failure = sup.give_up
        await asyncio.to_thread(sup.start)
        self._supervisor = sup
        self._feeder_thread = threading.Thread(target=feeder.run, name="botrace-store-feeder",
                                               daemon=True)
        self._feeder_thread.start()
        self._intake.refusing = False
        self._intake.accepting = True

    async def close(self) -> None:
        """Write everything accepted so far, stop the writer, close every connection."""
        if not self._opened:
            return
        q = self._intake
        q.accepting = False
        sup = self._supervisor
        if sup is not None:
            q.refusing = True  # (what arrives now is lost: counted)
            with q.cond:
                self._feeder.closing = True
                q.cond.notify_all()
            while not sup.closed.is_set():
                await asyncio.sleep(0.01)
            if self._feeder_thread is not None:
                await asyncio.to_thread(self._feeder_thread.join, 10.0)
                self._feeder_thread = None
            await asyncio.to_thread(sup.shutdown, 10.0)
        for conn in self._readers:
            try:
                await conn.close()
            except (sqlite3.Error, ValueError):  # a broken connection: nothing left to save
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
        self._intake.trace_started(trace)

    @hookimpl
    def botrace_span_finished(self, span: Any) -> None:
        """(Replaced per instance by the intake's method: see ``__init__``.)"""
        self._intake.span_finished(span)

    @hookimpl
    def botrace_trace_finished(self, trace: Any) -> None:
        self._intake.trace_finished(trace)

    # ------------------------------------------------------------------ requests to the writer

    async def _request(self, kind: str, *args: Any, progress: Any = None) -> Any:
        sup = self._supervisor
        if sup is None or sup.stopped or not self._opened:
            raise StoreError("the store is not open for writing")
        return await sup.request(kind, args, progress)

    async def _writer_exec(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run one statement on the writer's connection (operations and fault tests)."""
        return await self._request("exec", sql, tuple(params))

    # ------------------------------------------------------------------ flush, prune

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row accepted so far is written; False if ``timeout`` ran out
        first (a fault is holding the writer back) or the store stopped for good."""
        sup = self._supervisor
        if sup is None or not self._opened:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        state = self._feeder.flush_begin()
        while True:
            if sup.stopped:
                return False
            if self._feeder.flush_done(state, sup.stats.get("spill_queue", 0)):
                return True
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
        if self.read_only or self._supervisor is None:
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
        gen = self.reopened
        if gen != self._readers_gen:  # the writer recreated the file: follow it
            self._readers_gen = gen
            old, self._readers = self._readers, []
            for conn in old:
                try:
                    await conn.close()
                except sqlite3.Error:  # (a connection to the lost file: nothing to save)
                    pass
            await self._open_readers()
        self._reader_i = (self._reader_i + 1) % len(self._readers)
        return self._readers[self._reader_i]

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        """Counters for the web page and ``tracer.health()`` (cheap, sync)."""
        return store_health(self)

    # ------------------------------------------------------------------ queries

    async def list_traces(self, filters: Mapping[str, Any] | None = None, limit: Any = 50,
                          cursor: str | None = None, sort: str | None = None) -> dict[str, Any]:
        """Trace summaries, newest first (or by ``sort``); see docs/QUERY_API.md."""
        return await _query.list_traces(await self._reader(), filters, limit, cursor, sort)

    async def trace_points(self, filters: Mapping[str, Any] | None = None,
                           limit: Any = 500) -> dict[str, Any]:
        """The newest finished traces matching ``filters`` as latency points."""
        return await _query.trace_points(await self._reader(), filters, limit)

    async def get_trace(self, trace_id: str, *, flat: bool = False,
                        tree_only: bool = False) -> dict[str, Any] | None:
        """One trace: summary, flat spans and the span tree; None when unknown."""
        return await _query.get_trace(await self._reader(), trace_id, flat=flat,
                                      tree_only=tree_only)

    async def stats(self, group_by: str = "stage", since_ns: Any = None, until_ns: Any = None,
                    filters: Mapping[str, Any] | None = None, *,
                    percentiles: bool = True) -> dict[str, Any]:
        """Latency, error and token statistics per stage / plugin / tool / model."""
        return await _query.stats(await self._reader(), group_by, since_ns, until_ns, filters,
                                  percentiles=percentiles)

    async def sessions(self, filters: Mapping[str, Any] | None = None, limit: Any = 50,
                       cursor: str | None = None) -> dict[str, Any]:
        """Conversations (by session id, else umo) with totals, most recent first."""
        return await _query.sessions(await self._reader(), filters, limit, cursor)

    async def users(self, filters: Mapping[str, Any] | None = None, limit: Any = 50,
                    cursor: str | None = None) -> dict[str, Any]:
        """Per-user totals, most recent first."""
        return await _query.users(await self._reader(), filters, limit, cursor)

    async def spend(self, by: str = "user", since_ns: Any = None, until_ns: Any = None,
                    limit: Any = 20) -> dict[str, Any]:
        """Tokens and cost per user or conversation in a window, the top spenders first."""
        return await _query.spend(await self._reader(), by, since_ns, until_ns, limit)

    async def iter_traces(self, since_ns: int | None = None, until_ns: int | None = None,
                          batch: int = 200):
        """Every stored trace in a time range with its spans, oldest first (for export)."""
        async for item in _query.iter_traces(await self._reader(), since_ns, until_ns, batch):
            yield item
