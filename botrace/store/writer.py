"""The store's writer: folded batches in, SQLite rows out (one transaction per batch).

The sink hooks (``botrace.store.TraceStore``) only queue finished spans and cheap tuples;
what reaches this module are the *records* below (a queued span is read as its ``"S"``
record, ``botrace.store.folding.span_record``). The feeder thread folds each batch
(``botrace.store.folding``: each trace's spans as one JSON chunk, with self time and
cost, per-trace totals, minute statistics) and hands it over. Here the rest happens:
trace rows and tags, the statistics rollup, the SQLite writes (one ``span_chunks`` row
per trace and batch), retention, spill files. By default this runs in a process of its
own (:func:`main`, ``python -c ... FD``: a fresh interpreter, as multiprocessing's *spawn*
makes, but started with ``subprocess`` so the host's ``__main__`` is never imported
again), fed pickled batches over a socket, so SQLite holds its own GIL on another
core; ``trace_store_writer = "thread"`` runs the same code in a thread.

Records (first item is the kind)::

    ("T", trace_id, start_ns, name, attributes)                       trace started
    ("S", trace_id, trace_start_ns, span_id, parent_id, name, span_type, plugin_name,
          start_ns, end_ns, status, error, input, output, meta, events, truncated)  span finished
    ("R", trace_id, trace_start_ns, span_id, parent_id, name, span_type, plugin_name,
          start_ns)          span still running when its batch was taken (folded into its chunk)
    ("F", trace_id, start_ns, name, attributes, status, end_ns, dropped_spans, truncated)
    ("P", name, display_name, plugin_type, version)                   a plugin's description

Messages in: ``("batch", seq, upto, n, (others, chunks, parts, minutes), flush)`` (a
batch of ``n`` records, folded; ``flush``: a host's flush asked for it), ``("spill", seq,
path, count, upto)`` (a spill file of records not folded), ``("exec", seq, sql,
params)``, ``("prune", seq, days, max_mb)``, ``("close", seq)``.
Messages out: ``("ready", stats)``, ``("ack", seq, upto, rows, kind, stats)``,
``("status", stats)``, ``("reply", seq, result, error)``, ``("progress", seq, n)``,
``("closed", stats)``, ``("died", text)``.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import queue
import sqlite3
import threading
import time
from collections import deque
from itertools import chain
from pathlib import Path
from typing import Any

from botrace.pricing import PriceTable
from botrace.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
)
from botrace.span import TRACE_FIELDS
from botrace.store import chunks as E
from botrace.store.chunks import latest_spans
from botrace.store.folding import (
    CACHED,
    COST,
    ERRORS,
    INPUT,
    LLM,
    MODELS,
    OUTPUT,
    PLUGINS,
    SPANS,
    TOOL_CALLS,
    SpanFolder,
    entry_totals,
    merge_totals,
    new_totals,
    tag_pairs,
)
from botrace.store.jsontext import encode, encode_value
from botrace.store.rollup import (
    COARSE,
    MINUTE,
    RollupCache,
    fold,
    merge_aggs,
    repair_coarse,
    spans_aggs,
)

__all__ = ["StoreError", "Writer", "prepare_database", "read_spill"]

_NO_TOTALS = new_totals()  # (read only)
_GC_GEN0 = 200_000  # the writer process's first collector threshold (see main)
_NOTHING = ({}, {}, [], [], {}, {}, 0)  # a processed batch of no records
PAGE_SIZE = 16_384  # new databases only

TRACE_COLS = (
    "trace_id", "name", "start_ns", "end_ns", "duration_ns", "status", "umo", "sender",
    "user_id", "session_id", "outline", "agent_type", "platform", "input_tokens",
    "output_tokens", "cached_tokens", "span_count", "llm_calls", "tool_calls", "error_count",
    "dropped_spans", "truncated", "plugins", "models", "attributes", "cost_usd",
)
_INSERT_CHUNK = "INSERT INTO span_chunks (trace_start_ns, trace_id, spans) VALUES (?, ?, ?)"
_INSERT_PLUGIN = ("INSERT OR REPLACE INTO plugins (name, display_name, plugin_type, version) "
                  "VALUES (?, ?, ?, ?)")
_INSERT_TRACE = (f"INSERT OR REPLACE INTO traces ({', '.join(TRACE_COLS)}) "
                 f"VALUES ({', '.join('?' * len(TRACE_COLS))})")
# a "running" trace row never overwrites what is there (a finished row written before)
_INSERT_TRACE_START = _INSERT_TRACE.replace("INSERT OR REPLACE", "INSERT OR IGNORE")
_INSERT_TAG = "INSERT OR IGNORE INTO trace_tags (tag, start_ns, trace_id) VALUES (?, ?, ?)"
_INSERT_TAG_VALUE = "INSERT OR IGNORE INTO tag_values (kind, value) VALUES (?, ?)"


class _ManyRows:
    """An INSERT that takes ``per`` rows a statement (``VALUES (...), (...), ...``).

    ``executemany`` pays pysqlite's per-row price for every row: a Python loop turn, a
    ``sqlite3_step`` and a reset. Here it is paid once for ``per`` rows, which takes a
    seventh off a span row and a third off a tag row (docs/PERFORMANCE.md). Rows keep
    their order, so ``OR IGNORE`` / ``OR REPLACE`` act as they would row by row.
    ``per * width`` stays under 999, SQLite's oldest limit on parameters.
    """

    __slots__ = ("many", "one", "per")

    def __init__(self, one: str, width: int) -> None:
        self.one = one
        self.per = max(1, 999 // width)
        head, _, values = one.partition(" VALUES ")
        self.many = f"{head} VALUES {', '.join([values] * self.per)}"

    def __call__(self, conn: sqlite3.Connection, rows: list[tuple]) -> None:
        per = self.per
        full = len(rows) - len(rows) % per
        if full:
            run = conn.cursor().execute
            many = self.many
            flat = chain.from_iterable
            for i in range(0, full, per):
                run(many, tuple(flat(rows[i:i + per])))
        if full < len(rows):
            conn.executemany(self.one, rows[full:])


_insert_chunks = _ManyRows(_INSERT_CHUNK, 3)
_insert_traces = _ManyRows(_INSERT_TRACE, len(TRACE_COLS))
_insert_tags = _ManyRows(_INSERT_TAG, 3)


class StoreError(Exception):
    """The database cannot be opened or used (corrupt, foreign, newer version, missing)."""


# ---------------------------------------------------------------------------- database file

def _inspect(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version; StoreError when it is not ours."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a readable SQLite database ({exc}); "
            "it was left untouched - move it away or point trace_db_path elsewhere"
        ) from None
    if tables == 0 and app_id == 0:
        return 0
    if app_id != APPLICATION_ID:
        raise StoreError(
            f"{path} is a SQLite database of another application "
            f"(application_id={app_id:#x}); it was left untouched"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this botrace "
            f"understands ({SCHEMA_VERSION}); upgrade botrace"
        )
    return version


def inspect_read_only(path: Path) -> int:
    if not path.exists():
        raise StoreError(f"{path} does not exist")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = _inspect(conn, path)
    finally:
        conn.close()
    if version == 0:
        raise StoreError(f"{path} is an empty database, not a botrace store")
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}; open it once read-write "
            f"(any botrace command but serve) to migrate it to {SCHEMA_VERSION}"
        )
    return version


def prepare_database(path: Path, busy_timeout_ms: int = 2_000) -> tuple[int, int]:
    """Create or migrate the database and recover interrupted traces.

    Returns ``(schema_version, traces_recovered)``; a foreign or corrupt file raises
    :class:`StoreError` and stays byte-for-byte as it was.
    """
    if path.exists() and path.stat().st_size > 0:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            _inspect(probe, path)
        finally:
            probe.close()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        version = _inspect(conn, path)
        if version == 0:
            # bigger pages than SQLite's 4 KiB: fewer b-tree pages touched per appended
            # row (-0.4 us a span in bench_store); fixed once the file has tables
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
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
        repair_coarse(conn)  # a writer that died with hour / day rows not written yet
        return version, _recover_interrupted(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    finally:
        conn.close()


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
            spans = latest_spans(r[0] for r in conn.execute(
                "SELECT spans FROM span_chunks WHERE trace_start_ns = ? AND trace_id = ? "
                "ORDER BY rowid", (start, tid)))
            cut = [[*e[:E.STATUS], "interrupted", *e[E.STATUS + 1:]] for e in spans
                   if e[E.STATUS] == "running"]
            if cut:  # their latest version, after the running one
                conn.execute(_INSERT_CHUNK, (start, tid, encode(cut)))
            ends = [e[E.END] for e in spans if e[E.END] is not None]
            end = max(ends) if ends else None
            acc = entry_totals(spans)
            conn.execute(
                """UPDATE traces SET status = 'interrupted', span_count = ?, input_tokens = ?,
                          output_tokens = ?, cached_tokens = ?, llm_calls = ?, tool_calls = ?,
                          error_count = ?, cost_usd = ?, end_ns = ?,
                          duration_ns = CASE WHEN ? IS NULL THEN NULL ELSE ? - start_ns END,
                          plugins = ?, models = ?
                   WHERE trace_id = ?""",
                (acc[SPANS], acc[INPUT], acc[OUTPUT], acc[CACHED], acc[LLM], acc[TOOL_CALLS],
                 acc[ERRORS], acc[COST], end, end, end, json.dumps(list(acc[PLUGINS])),
                 json.dumps(list(acc[MODELS])), tid),
            )
            pairs = tag_pairs(acc)
            conn.executemany("INSERT OR IGNORE INTO tag_values (kind, value) VALUES (?, ?)", pairs)
            conn.executemany(
                "INSERT OR IGNORE INTO trace_tags (tag, start_ns, trace_id) "
                "SELECT tag, ?, ? FROM tag_values WHERE kind = ? AND value = ?",
                [(start, tid, kind, value) for kind, value in pairs])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(found)


def write_spill_frame(file: Any, records: list[tuple]) -> int:
    blob = pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
    file.write(len(blob).to_bytes(4, "little") + blob)
    return len(blob) + 4


def read_spill(path: Path) -> list[tuple]:
    """The records of a spill file; a frame cut short (a process killed mid-write) ends it."""
    records: list[tuple] = []
    with open(path, "rb") as f:
        while True:
            head = f.read(4)
            if len(head) < 4:
                return records
            size = int.from_bytes(head, "little")
            blob = f.read(size)
            if len(blob) < size:
                return records
            try:
                records.extend(pickle.loads(blob))  # our own file, written by a botrace store
            except (pickle.UnpicklingError, EOFError, ValueError):
                return records


def leftover_spills(spill_path: Path) -> list[Path]:
    """Spill files a previous process left: handed-off ones first (oldest first)."""
    found = [p for p in spill_path.parent.glob(spill_path.name + ".*.draining")]
    old = spill_path.with_name(spill_path.name + ".draining")  # an older botrace's name
    if old.exists():
        found.append(old)
    found.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    if spill_path.exists():
        found.append(spill_path)
    return found


# ---------------------------------------------------------------------------- the writer

class Writer:
    """Turns records into rows and writes them; one instance per store, one thread of control."""

    def __init__(self, cfg: dict[str, Any], emit: Any) -> None:
        self.path = Path(cfg["path"])
        self.busy_timeout_ms = int(cfg.get("busy_timeout_ms", 2_000))
        self.prices = PriceTable(cfg.get("prices") or {})
        self.retention_days = int(cfg.get("retention_days", 0) or 0)
        self.max_mb = int(cfg.get("max_mb", 0) or 0)
        self.prune_interval = float(cfg.get("prune_interval", 300.0))
        self.prune_batch = int(cfg.get("prune_batch", 500))
        self.first_prune = float(cfg.get("first_prune", 2.0))  # s after start
        self.max_backoff = float(cfg.get("max_backoff", 5.0))
        self.spill_chunk = int(cfg.get("spill_chunk", 50_000))
        self.coalesce = int(cfg.get("coalesce", 60_000))  # records in one transaction at most
        # A steady stream is written at most every `interval` seconds: a commit writes every
        # page its transaction touched to the WAL, and the trace indexes keyed by user,
        # session and umo touch a page per key. The interval is `min_interval` while the
        # writer has time to spare and doubles, up to `max_interval`, while it is busy more
        # than a quarter of the time (halving again below a tenth: a commit's pages cost
        # ~15 % of the writer's CPU at 100 ms and 5,000 traces/s, ninth session): under
        # heavy load one commit serves thousands of traces. Under a chatbot's rates (a
        # message every few tens of ms) a commit costs about as much as the spans in it,
        # so `min_interval` (the store's `commit_interval`) is 0.5 s: a trace is
        # queryable within half a second (the page sees it live at once, from the hub).
        self.min_interval = float(cfg.get("min_interval", 0.5))
        self.max_interval = max(self.min_interval, float(cfg.get("max_interval", 1.0)))
        self.interval = self.min_interval
        self.last_commit = 0.0
        self.sqlite_tuned = False  # (see botrace._writer_process)
        # collector passes before serving, when the collector is this process's own (main)
        self.gc_passes_before: int | None = None
        self._busy = 0.0  # seconds spent processing and writing batches since _duty_since
        self._duty_since = time.monotonic()
        self.spill_path = Path(cfg.get("spill_path") or str(self.path) + ".spill")
        self.emit = emit
        self.recv: Any = None
        self.conn: sqlite3.Connection | None = None
        self.file_id: tuple[int, int] | None = None
        self.acc: dict[str, list] = {}  # trace id -> its totals so far (folding.new_totals)
        self.folder = SpanFolder(self.prices, encode_value)  # for records from spill files
        self.running_traces: dict[str, tuple] = {}  # started rows, re-written if the file is lost
        self.plugins: dict[str, tuple] = {}
        self.tag_ids: dict[tuple[str, str], int] = {}  # (kind, value) -> its tag number
        self.lost_file = False
        self.cache = RollupCache()
        self.rollup_interval = float(cfg.get("rollup_interval", 1.0))  # s, hour and day rows
        self.rollup_due = 0.0
        self.inbox: deque = deque()
        self.stop_checkpoints = threading.Event()
        self.committed = threading.Event()  # wakes the checkpoint thread
        self.closing = False
        self.host_gone = False
        self.abandon = False
        self.prune_due = False
        self.next_prune = 0.0
        self.last_log = 0.0
        self.written = 0
        self.write_errors = 0
        self.pruned_traces = 0
        self.unreported_pruned = 0  # deleted by automatic pruning, not yet told to prune()
        self.reopened = 0
        self.dropped = 0
        self.spill_queue = 0
        self.schema_version = 0
        self.page_size = PAGE_SIZE
        self.last_error: str | None = None
        self.last_error_ns: int | None = None

    def stats(self) -> dict[str, Any]:
        return {"written": self.written, "write_errors": self.write_errors,
                "pruned_traces": self.pruned_traces, "reopened": self.reopened,
                "dropped": self.dropped, "spill_queue": self.spill_queue,
                "schema_version": self.schema_version, "last_error": self.last_error,
                "last_error_ns": self.last_error_ns, "commit_interval": self.interval,
                "sqlite_tuned": self.sqlite_tuned,
                "gc_collections": (None if self.gc_passes_before is None
                                   else _gc_passes() - self.gc_passes_before)}

    def note_error(self, what: str, exc: BaseException | None) -> None:
        self.last_error = what if exc is None else f"{what}: {type(exc).__name__}: {exc}"
        self.last_error_ns = time.time_ns()

    # ------------------------------------------------------------------ connection

    def _stat_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def connect(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=self.busy_timeout_ms / 1000)
        for pragma in (
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
            f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}",
            "PRAGMA temp_store = MEMORY",
            "PRAGMA cache_size = -32000",
            "PRAGMA journal_size_limit = 67108864",
            # checkpoints run in a thread of their own (they release the GIL), this is
            # only the safety net should that thread fall behind
            "PRAGMA wal_autocheckpoint = 16384",
        ):
            conn.execute(pragma)
        self.schema_version = conn.execute("PRAGMA user_version").fetchone()[0]
        self.page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        # A transaction's dirty pages stay in memory up to 128 MB (a busy writer's
        # transaction dirties ~50 MB). Spilled to the WAL earlier, as SQLite does past
        # cache_size, a page dirtied again is rewritten in place at commit, and SQLite
        # then reads back every frame after it to redo the WAL checksums.
        conn.execute(f"PRAGMA cache_spill = {(128 << 20) // self.page_size}")
        self.conn = conn
        self._read_tag_ids()
        self.file_id = self._stat_id()

    def _read_tag_ids(self) -> None:
        self.tag_ids = {(kind, value): tag for tag, kind, value in
                        self.conn.execute("SELECT tag, kind, value FROM tag_values")}

    def _checkpoints(self) -> None:
        """Copy the WAL into the database in the background (PASSIVE: never blocks the
        writer or a reader), so a commit does not pay for it.

        It runs as soon as a transaction commits (and every 0.25 s): SQLite starts the WAL
        again from its beginning only when a transaction begins after a checkpoint that
        copied all of it. Checkpoints that lag the commits let the WAL grow until a commit
        runs the autocheckpoint itself, on the writer's thread."""
        conn = None
        gen = -1
        while True:
            self.committed.wait(0.25)
            self.committed.clear()
            if self.stop_checkpoints.is_set():
                break
            try:
                if conn is None or gen != self.reopened:
                    if conn is not None:
                        conn.close()
                    gen = self.reopened
                    conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True,
                                           isolation_level=None, check_same_thread=False,
                                           timeout=0.1)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _check_file(self) -> None:
        """The database file was deleted or replaced under us: start a fresh one."""
        if self._stat_id() == self.file_id:
            return
        self.note_error("database file vanished or was replaced; recreating", None)
        self._reopen()

    def _reopen(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass
        self.reopened += 1
        self.cache.clear()
        self.cache.pending = {}  # (the spans they described were in the lost file)
        self.lost_file = True
        try:
            self.schema_version, _ = prepare_database(self.path, self.busy_timeout_ms)
        except StoreError as exc:
            # a foreign file now sits at the path: leave it alone, keep failing
            self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            self.file_id = self._stat_id()
            raise sqlite3.OperationalError(str(exc)) from None
        self.connect()

    # ------------------------------------------------------------------ records -> rows

    def process(self, folds: list[tuple]) -> tuple:
        """Rows for one transaction from folded batches (``SpanFolder.fold`` results, in
        order). Trace totals are updated here, once, whatever happens to the write."""
        ends: dict[str, tuple] = {}
        starts: dict[str, tuple] = {}
        chunks: list[tuple] = []
        tags: list[tuple] = []
        plugins: dict[str, tuple] = {}
        minutes: dict[tuple, list] = {}
        accs = self.acc
        dropped = 0
        rows = 0
        for others, folded_chunks, parts, mins, *_ in folds:
            for rec in others:  # (a trace's start comes before its spans)
                if rec[0] == "T" and rec[1] not in accs:
                    accs[rec[1]] = new_totals()
            for tid, part in parts.items():
                acc = accs.get(tid)
                if acc is not None:  # (else a straggler after its trace's end, or a trace
                    merge_totals(acc, part)  # started before the store: its row has no totals)
            for chunk in folded_chunks:
                chunks.append(chunk[:3])
                rows += chunk[3]
            if not minutes:
                minutes = mins
            else:
                merge_aggs(minutes, mins)
            for rec in others:
                kind = rec[0]
                if kind == "T":
                    starts[rec[1]] = rec  # its "running" row is made below unless it ends here
                elif kind == "F":
                    _, tid, start, name, attrs, status, end, dropped_spans, trunc = rec
                    acc = accs.pop(tid, None) or _NO_TOTALS
                    self.running_traces.pop(tid, None)
                    if acc[ERRORS] and status == "ok":
                        status = "error"
                    try:
                        row = self._trace_row(tid, name, start, attrs, status, end, acc,
                                              dropped_spans, trunc)
                    except Exception:
                        dropped += 1
                        continue
                    starts.pop(tid, None)
                    ends[tid] = row
                    tags += [(start, tid, kind, v) for kind, v in tag_pairs(acc)]
                elif kind == "P":
                    plugins[rec[1]] = self.plugins[rec[1]] = rec[1:]
        if len(accs) > 200_000:  # traces that never end: forget the oldest
            for old in list(accs)[:20_000]:
                del accs[old]
        for tid, (_, _, start, name, attrs) in list(starts.items()):
            try:
                starts[tid] = self.running_traces[tid] = self._trace_row(
                    tid, name, start, attrs, "running", None, _NO_TOTALS, 0, False)
            except Exception:
                del starts[tid]
                dropped += 1
        self.dropped += dropped
        rows += len(ends) + len(starts)
        return (ends, starts, chunks, tags, plugins, minutes, rows)

    def fold_and_process(self, records: list[tuple]) -> tuple:
        """:meth:`process` for records not folded yet (a spill file's)."""
        folded = self.folder.fold(records)
        if folded[4]:
            self.dropped += folded[4]
            self.note_error(f"{folded[4]} span records could not be encoded", folded[5])
        return self.process([folded])

    @staticmethod
    def _trace_row(tid: str, name: str, start: int, attrs: Any, status: str,
                   end: int | None, acc: list, dropped_spans: Any, truncated: Any) -> tuple:
        attrs = dict(attrs) if attrs else {}
        pop = attrs.pop
        cols = [None if (v := pop(key, None)) is None else str(v) for key in TRACE_FIELDS]
        return (
            tid, name, start, end, None if end is None else end - start, status, *cols,
            acc[INPUT], acc[OUTPUT], acc[CACHED], acc[SPANS], acc[LLM], acc[TOOL_CALLS],
            acc[ERRORS], int(dropped_spans or 0), int(bool(truncated)),
            encode(list(acc[PLUGINS])) if acc[PLUGINS] else "[]",
            encode(list(acc[MODELS])) if acc[MODELS] else "[]",
            encode(attrs) if attrs else None, acc[COST],
        )

    # ------------------------------------------------------------------ writing

    def write(self, payload: tuple, flush_rollup: bool = False) -> bool:
        """One attempt at writing a processed batch in one transaction. The rollup's
        minute rows go in with it; its hour and day rows when a second has passed since
        they were last written, or ``flush_rollup`` (a host's flush, close) asks."""
        ends, starts, chunks, tags, plugins, minutes, rows = payload
        cache = self.cache
        coarse = fold(minutes, COARSE) if minutes else None
        write_coarse = bool(coarse or cache.pending) and (
            flush_rollup or self.closing or time.monotonic() >= self.rollup_due)
        try:
            self._check_file()
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if ends:
                    _insert_traces(conn, list(ends.values()))
                if starts:
                    conn.executemany(_INSERT_TRACE_START, list(starts.values()))
                if self.lost_file:  # what the lost file held that is still needed
                    conn.executemany(_INSERT_TRACE_START, list(self.running_traces.values()))
                    conn.executemany(_INSERT_PLUGIN, list(self.plugins.values()))
                if chunks:
                    _insert_chunks(conn, chunks)
                if tags:
                    ids = self.tag_ids
                    tag_rows = []
                    for start, tid, kind, value in tags:
                        tag = ids.get((kind, value))
                        if tag is None:  # a new plugin, model, tool or span type
                            conn.execute(_INSERT_TAG_VALUE, (kind, value))
                            tag = ids[kind, value] = conn.execute(
                                "SELECT tag FROM tag_values WHERE kind = ? AND value = ?",
                                (kind, value)).fetchone()[0]
                        tag_rows.append((tag, start, tid))
                    _insert_tags(conn, tag_rows)
                if plugins:
                    conn.executemany(_INSERT_PLUGIN, list(plugins.values()))
                if minutes:
                    cache.apply(conn, fold(minutes, (MINUTE,)))
                if write_coarse:
                    cache.write_coarse(conn, coarse or {})
                elif coarse:
                    cache.hold_coarse(conn, coarse)
                conn.execute("COMMIT")
            except BaseException:
                cache.clear()  # rows were merged in place: read them again
                self.tag_ids = {}  # numbers given in the failed transaction are void
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
        except (sqlite3.Error, OSError, ValueError) as exc:
            self.write_errors += 1
            self.note_error("write failed", exc)
            if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
                try:
                    self._reopen()
                except sqlite3.Error:
                    pass
            return False
        self.lost_file = False
        self.last_commit = time.monotonic()
        self.committed.set()
        if write_coarse:
            cache.pending = {}
            self.rollup_due = time.monotonic() + self.rollup_interval
        elif coarse:
            cache.stage(coarse)
        self.written += rows
        return True

    def _pace(self, busy: float, now: float) -> None:
        """Adapt the commit interval to how busy the writer has been over the last second
        (``busy`` seconds of work just done, ``now`` the monotonic clock)."""
        self._busy += busy
        elapsed = now - self._duty_since
        if elapsed < 1.0:
            return
        duty = self._busy / elapsed
        if duty > 0.25:
            self.interval = min(self.max_interval, self.interval * 2)
        elif duty < 0.1:
            self.interval = max(self.min_interval, self.interval / 2)
        self._busy = 0.0
        self._duty_since = now

    def write_retrying(self, payload: tuple, flush_rollup: bool = False) -> bool:
        """Write, waiting out a fault (locked, disk full) with a growing pause; while
        closing, give up (rows counted as dropped) once the pause is at its longest."""
        if self.abandon:
            self.dropped += payload[-1]
            return False
        backoff = 0.0
        while not self.write(payload, flush_rollup):
            self.emit(("status", self.stats()))
            if self.closing and backoff >= self.max_backoff:
                self.dropped += payload[-1]
                self.abandon = True
                return False
            backoff = min(self.max_backoff, max(0.05, backoff * 2))
            self._wait(backoff)
        return True

    def _wait(self, seconds: float) -> None:
        """Pause, but keep reading: run ``exec`` now (a test lifts its fault that way), keep
        the rest in order for later."""
        end = time.monotonic() + seconds
        while not self.host_gone:
            left = end - time.monotonic()
            if left <= 0:
                return
            msg = self._recv(left)
            if msg is None:
                continue
            if msg[0] == "exec":
                self._exec(msg)
            else:
                if msg[0] == "close":
                    self.closing = True
                self.inbox.append(msg)
        time.sleep(min(seconds, 0.05))

    def _recv(self, timeout: float | None) -> Any:
        try:
            return self.recv(timeout)
        except (EOFError, OSError):
            self.host_gone = self.closing = True
            return None

    # ------------------------------------------------------------------ messages

    def run(self, recv: Any) -> None:
        self.recv = recv
        self.connect()
        checkpointer = threading.Thread(target=self._checkpoints, daemon=True,
                                        name="botrace-store-checkpoint")
        checkpointer.start()
        try:
            self._serve()
        finally:
            self.stop_checkpoints.set()
            self.committed.set()
            checkpointer.join(5.0)

    def _serve(self) -> None:
        # the first pruning a moment after start, not at once: a `botrace prune` run
        # counts the traces first, and the first batches of a host go ahead of it
        self.next_prune = time.monotonic() + min(self.first_prune, self.prune_interval)
        leftovers: list[tuple[Path, list]] = []
        for path in leftover_spills(self.spill_path):
            try:
                records = read_spill(path)
            except OSError as exc:
                self.note_error("unreadable spill file left as it was", exc)
                continue
            leftovers.append((path, records))
            self.spill_queue += len(records)
        self.emit(("ready", self.stats()))
        for path, records in leftovers:  # a previous process died with overflow on disk
            self._drain(path, records)
            self.spill_queue -= len(records)
        if leftovers:
            self.emit(("status", self.stats()))
        while True:
            if self.inbox:
                msg = self.inbox.popleft()
            elif self.host_gone:
                break
            else:
                if not self.prune_due and time.monotonic() >= self.next_prune:
                    self.prune_due = True
                timeout = 0.0 if self.prune_due else max(0.0, self.next_prune - time.monotonic())
                if self.cache.pending:  # idle: the rollup's hour and day rows within a second
                    timeout = min(timeout, max(0.0, self.rollup_due - time.monotonic()))
                msg = self._recv(timeout)
            if msg is None:
                if self.cache.pending and time.monotonic() >= self.rollup_due:
                    self.write_retrying(_NOTHING)
                if self.prune_due and not self.closing:
                    self._prune_tick()
                continue
            kind = msg[0]
            if kind == "batch":
                # behind? take the batches already waiting into the same transaction:
                # the rollup rows and the commit are paid once for all of them
                msgs = [msg]
                total = msg[3]
                # and under a steady stream, wait for more up to `interval` after the
                # last commit, as long as the stream does not pause for min_interval
                until = self.last_commit + self.interval
                while total < self.coalesce:
                    nxt = self.inbox.popleft() if self.inbox else self._recv(0)
                    if nxt is None:
                        wait = until - time.monotonic()
                        if wait <= 0 or self.closing or any(m[5] for m in msgs):
                            break
                        nxt = self._recv(min(wait, self.min_interval))
                        if nxt is None:
                            break
                    if nxt[0] != "batch":
                        self.inbox.appendleft(nxt)
                        break
                    msgs.append(nxt)
                    total += nxt[3]
                # (a host's flush asks for everything to be queryable: the rollup too)
                began = time.monotonic()
                self.write_retrying(self.process([m[4] for m in msgs]),
                                    flush_rollup=any(m[5] for m in msgs))
                now = time.monotonic()
                self._pace(now - began, now)
                for _, seq, upto, n, _folded, _flush in msgs:
                    self.emit(("ack", seq, upto, n, "batch", self.stats()))
            elif kind == "spill":
                _, seq, path, count, upto = msg
                path = Path(path)
                try:
                    records = read_spill(path)
                except OSError as exc:
                    self.note_error("unreadable spill file left as it was", exc)
                    records = None
                if records is not None:
                    if self.abandon:  # closing with the fault on: it stays for the next open
                        pass
                    else:
                        self._drain(path, records)
                self.emit(("ack", seq, upto, count, "spill", self.stats()))
            elif kind == "exec":
                self._exec(msg)
            elif kind == "prune":
                _, seq, days, cap = msg
                try:
                    total = self._prune_all(days, cap, seq)
                    self.emit(("reply", seq, total, None))
                except (sqlite3.Error, OSError) as exc:
                    self.emit(("reply", seq, None, f"{type(exc).__name__}: {exc}"))
            elif kind == "close":
                self._finish()
                self.emit(("closed", self.stats()))
                return
            if self.prune_due and not self.inbox and not self.closing:
                self._prune_tick()
        self._finish()

    def _drain(self, path: Path, records: list) -> None:
        """Write a spill file's records, ``spill_chunk`` to a transaction, then delete it."""
        wrote = False
        for i in range(0, len(records), self.spill_chunk):
            wrote |= self.write_retrying(
                self.fold_and_process(records[i:i + self.spill_chunk]))
        if wrote or not self.abandon:  # (untouched while closing on a fault: kept for next open)
            path.unlink(missing_ok=True)

    def _exec(self, msg: tuple) -> None:
        _, seq, sql, params = msg
        try:
            result = self.conn.execute(sql, params).fetchall()
            self.emit(("reply", seq, result, None))
        except sqlite3.Error as exc:
            self.emit(("reply", seq, None, f"{type(exc).__name__}: {exc}"))

    def _finish(self) -> None:
        if self.conn is None:
            return
        if self.cache.pending:
            self.write_retrying(_NOTHING, flush_rollup=True)
        if not self.abandon:
            try:  # fresh planner statistics for the next reader (sampled: milliseconds)
                self.conn.execute("PRAGMA analysis_limit = 400")
                self.conn.execute("ANALYZE")
            except sqlite3.Error:
                pass
        try:
            self.conn.close()
        except sqlite3.Error:
            pass
        self.conn = None

    # ------------------------------------------------------------------ retention

    def _prune_tick(self) -> None:
        """One bounded prune step between batches; the round ends with a sampled ANALYZE."""
        try:
            n = self.prune_step(self.retention_days, self.max_mb)
        except (sqlite3.Error, OSError) as exc:
            self.write_errors += 1
            self.note_error("prune failed", exc)
            n = 0
        if n < self.prune_batch:
            self.prune_due = False
            self.next_prune = time.monotonic() + self.prune_interval
            try:
                self.conn.execute("PRAGMA analysis_limit = 400")
                self.conn.execute("ANALYZE")
            except sqlite3.Error as exc:
                self.note_error("analyze failed", exc)
        self.emit(("status", self.stats()))

    def _prune_all(self, days: int | None, cap: int | None, seq: int) -> int:
        days = self.retention_days if days is None else days
        cap = self.max_mb if cap is None else cap
        # what the automatic pruning deleted since the store opened counts too (a
        # `botrace prune` run opens the store and asks at once: both are its work)
        total, self.unreported_pruned = self.unreported_pruned, 0
        while True:
            n = self.prune_step(days, cap, automatic=False)
            total += n
            if n:
                self.emit(("progress", seq, total))
            if n < self.prune_batch:
                self.emit(("status", self.stats()))
                return total

    def prune_step(self, days: int, cap: int, automatic: bool = True) -> int:
        """Delete about ``prune_batch`` whole traces (oldest first) that are too old, or
        while the database is over its size cap; their spans leave the rollup too."""
        conn = self.conn
        upto = None
        if days > 0:
            upto = self._batch_end(time.time_ns() - days * 86_400 * 1_000_000_000)
        if upto is None and cap > 0 and self.used_bytes() > cap * 1024 * 1024:
            upto = self._batch_end(None)
        if upto is None:
            return 0
        # spans and tags are keyed by their trace's start time, so a batch of whole traces
        # is a few key-range deletes: no trace is ever left half-deleted
        conn.execute("BEGIN IMMEDIATE")
        pending = bool(self.cache.pending)
        try:
            if pending:  # written first: what is subtracted next may be in it
                self.cache.write_coarse(conn, {})
            self.cache.apply(conn, spans_aggs(conn, upto), sign=-1)
            conn.execute("DELETE FROM span_chunks WHERE trace_start_ns <= ?", (upto,))
            conn.execute("DELETE FROM trace_tags WHERE tag IN (SELECT tag FROM tag_values) "
                         "AND start_ns <= ?", (upto,))
            deleted = conn.execute("DELETE FROM traces WHERE start_ns <= ?", (upto,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            self.cache.clear()
            conn.execute("ROLLBACK")
            raise
        if pending:
            self.cache.pending = {}
        self.pruned_traces += deleted
        if automatic:
            self.unreported_pruned += deleted
        # a bounded amount of the freed pages (8 MiB) goes back to the file system
        conn.execute(f"PRAGMA incremental_vacuum({(8 << 20) // self.page_size})")
        return deleted

    def _batch_end(self, before_ns: int | None) -> int | None:
        where, params = ("WHERE start_ns < ?", [before_ns]) if before_ns is not None else ("", [])
        row = self.conn.execute(
            f"SELECT max(start_ns) FROM (SELECT start_ns FROM traces {where} "
            "ORDER BY start_ns LIMIT ?)", [*params, self.prune_batch]).fetchone()
        return row[0] if row else None

    def used_bytes(self) -> int:
        conn = self.conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size


# ---------------------------------------------------------------------------- process entry

def _gc_passes() -> int:
    return sum(g["collections"] for g in gc.get_stats())


def main(argv: list[str], sqlite_tuned: bool = False) -> int:
    """The writer process: serve one store over the socket whose descriptor is ``argv[1]``
    (``sqlite_tuned``: botrace._writer_process configured SQLite before it was imported)."""
    import signal
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the host's; it closes us
    conn = Connection(int(argv[1]))
    cfg = pickle.loads(conn.recv_bytes())

    def emit(msg: tuple) -> None:
        conn.send_bytes(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))

    # A thread of its own empties the socket while a transaction runs, so the host's
    # feeder never waits on a full socket buffer (it would stop folding meanwhile, and
    # the two sides would take turns instead of working side by side). It only reads
    # bytes (without the GIL); unpickling stays on this thread. The host keeps what is
    # in flight bounded (its unacknowledged-records cap).
    inbox: queue.SimpleQueue = queue.SimpleQueue()

    def read() -> None:
        try:
            while True:
                inbox.put(conn.recv_bytes())
        except (EOFError, OSError):
            inbox.put(None)  # the host closed its end

    threading.Thread(target=read, name="botrace-writer-reader", daemon=True).start()

    def recv(timeout: float | None) -> Any:
        try:
            data = inbox.get(timeout=timeout) if timeout != 0 else inbox.get_nowait()
        except queue.Empty:
            return None
        if data is None:
            inbox.put(None)  # (every later call says so too)
            raise EOFError("the host closed the connection")
        return pickle.loads(data)

    # The collector: this process is the writer's alone, and what it holds is acyclic
    # (rows unpickled, written, freed at the commit). At the default threshold (700
    # net allocations) a batch of 20,000 rows set off ~30 passes that walked the rows
    # still held, again at each older generation: ~8 % of the writer's CPU at 5,000
    # traces/s. Passes now come every _GC_GEN0 net allocations, which a steady stream
    # barely reaches, and what was loaded at start is left out of them (freeze).
    gc.freeze()
    gc.set_threshold(_GC_GEN0, 10, 10)
    writer = Writer(cfg, emit)
    writer.sqlite_tuned = sqlite_tuned
    writer.gc_passes_before = _gc_passes()
    try:
        writer.run(recv)
    except BaseException as exc:
        try:
            emit(("died", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
        raise
    return 0

