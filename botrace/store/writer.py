"""The store's writer: folded batches in, SQLite rows out (one transaction per batch).

The sink hooks (``botrace.store.intake``) only queue finished spans and cheap tuples;
what reaches the writer are the *records* below (a queued span is read as its ``"S"``
record, ``botrace.store.folding.span_record``). The feeder thread folds each batch
(``botrace.store.folding``: each trace's spans as one JSON chunk, with self time and
cost, per-trace totals, minute statistics) and hands it over. Here the rest happens:
trace rows and tags, the statistics rollup, the SQLite writes (one ``span_chunks`` row
per trace and batch). When to write, retry, prune and stop is ``botrace.store.serve``'s
business; the database file's creation and recovery ``botrace.store.database``'s.

Records (first item is the kind)::

    ("T", trace_id, start_ns, name, attributes)                       trace started
    ("S", trace_id, trace_start_ns, span_id, parent_id, name, span_type, plugin_name,
          start_ns, end_ns, status, error, input, output, meta, events, truncated)  span finished
    ("R", trace_id, trace_start_ns, span_id, parent_id, name, span_type, plugin_name,
          start_ns)          span still running when its batch was taken (folded into its chunk)
    ("F", trace_id, start_ns, name, attributes, status, end_ns, dropped_spans, truncated)
    ("P", name, display_name, plugin_type, version)                   a plugin's description

A trace's totals are added up here from the parts each batch brings, from its start
record to its end record. Two kinds of trace fall outside that, and are written from
what is stored instead:

- a trace whose start this writer did not see (it began before the store opened, or
  before this writer was restarted after the last one died): at its end its totals are
  counted again from its stored spans (*recount*);
- spans that finish after their trace's end was written (a task that outlives its
  message): their part is added to the stored row (*late* spans), so the stored summary
  says what the tracer's in-memory summary says.
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import threading
import time
from itertools import chain
from pathlib import Path
from typing import Any

from botrace.pricing import PriceTable
from botrace.span import TRACE_FIELDS
from botrace.store.database import (
    INSERT_CHUNK,
    PAGE_SIZE,
    StoreError,
    inspect_read_only,
    prepare_database,
    stored_totals,
)
from botrace.store.folding import (
    CACHED,
    COST,
    DROPPED,
    ERRORS,
    INPUT,
    LLM,
    MODELS,
    OUTPUT,
    PLUGINS,
    SPANS,
    TOOL_CALLS,
    SpanFolder,
    merge_totals,
    new_totals,
    tag_pairs,
)
from botrace.store.jsontext import encode, encode_value
from botrace.store.rollup import COARSE, MINUTE, RollupCache, fold, merge_aggs
from botrace.store.spill import read_spill, write_spill_frame

# (StoreError, prepare_database, inspect_read_only and the spill functions moved to
# botrace.store.database and botrace.store.spill; they are still importable from here)
__all__ = ["StoreError", "Writer", "inspect_read_only", "prepare_database", "read_spill",
           "write_spill_frame"]

_NO_TOTALS = new_totals()  # (read only)
NOTHING = ({}, {}, [], [], {}, {}, {}, {}, 0)  # a processed batch of no records

TRACE_COLS = (
    "trace_id", "name", "start_ns", "end_ns", "duration_ns", "status", "umo", "sender",
    "user_id", "session_id", "outline", "agent_type", "platform", "input_tokens",
    "output_tokens", "cached_tokens", "span_count", "llm_calls", "tool_calls", "error_count",
    "dropped_spans", "truncated", "plugins", "models", "attributes", "cost_usd",
)
_INSERT_PLUGIN = ("INSERT OR REPLACE INTO plugins (name, display_name, plugin_type, version) "
                  "VALUES (?, ?, ?, ?)")
_INSERT_TRACE = (f"INSERT OR REPLACE INTO traces ({', '.join(TRACE_COLS)}) "
                 f"VALUES ({', '.join('?' * len(TRACE_COLS))})")
# a "running" trace row never overwrites what is there (a finished row written before)
_INSERT_TRACE_START = _INSERT_TRACE.replace("INSERT OR REPLACE", "INSERT OR IGNORE")
_INSERT_TAG = "INSERT OR IGNORE INTO trace_tags (tag, start_ns, trace_id) VALUES (?, ?, ?)"
_INSERT_TAG_VALUE = "INSERT OR IGNORE INTO tag_values (kind, value) VALUES (?, ?)"
_ADD_LATE = """UPDATE traces SET span_count = span_count + ?, llm_calls = llm_calls + ?,
    tool_calls = tool_calls + ?, error_count = error_count + ?,
    input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,
    cached_tokens = cached_tokens + ?, cost_usd = cost_usd + ?,
    dropped_spans = dropped_spans + ?, plugins = ?, models = ?,
    status = CASE WHEN ? > 0 AND status = 'ok' THEN 'error' ELSE status END{late}
    WHERE trace_id = ?"""


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


_insert_chunks = _ManyRows(INSERT_CHUNK, 3)
_insert_traces = _ManyRows(_INSERT_TRACE, len(TRACE_COLS))
_insert_tags = _ManyRows(_INSERT_TAG, 3)


def gc_passes() -> int:
    """Collector passes so far in this process (all generations)."""
    return sum(g["collections"] for g in gc.get_stats())


def _merged_names(stored: str | None, more: dict) -> str:
    """A stored JSON list of names (plugins, models) with ``more`` added, first seen first."""
    names = dict.fromkeys(decode_names(stored))
    names.update(more)
    return encode(list(names))


def decode_names(text: str | None) -> list:
    """A stored JSON list of names; [] for nothing or for what is not a list."""
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


class Writer:
    """Turns records into rows and writes them; one instance per store, one thread of control."""

    def __init__(self, cfg: dict[str, Any], emit: Any) -> None:
        self.cfg = cfg
        self.path = Path(cfg["path"])
        self.busy_timeout_ms = int(cfg.get("busy_timeout_ms", 2_000))
        self.prices = PriceTable(cfg.get("prices") or {})
        self.retention_days = int(cfg.get("retention_days", 0) or 0)
        self.max_mb = int(cfg.get("max_mb", 0) or 0)
        self.prune_batch = int(cfg.get("prune_batch", 500))
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
        self.conn: sqlite3.Connection | None = None
        self.file_id: tuple[int, int] | None = None
        self.acc: dict[str, list] = {}  # trace id -> its totals so far (folding.new_totals)
        self.folder = SpanFolder(self.prices, encode_value)  # for records from spill files
        self.running_traces: dict[str, tuple] = {}  # started rows, re-written if the file is lost
        self.plugins: dict[str, tuple] = {}
        self.tag_ids: dict[tuple[str, str], int] = {}  # (kind, value) -> its tag number
        self.late_column = False  # does `traces` have a late_spans column (a later schema)?
        self.lost_file = False
        self.cache = RollupCache()
        self.rollup_interval = float(cfg.get("rollup_interval", 1.0))  # s, hour and day rows
        self.rollup_due = 0.0
        self.stop_checkpoints = threading.Event()
        self.committed = threading.Event()  # wakes the checkpoint thread
        self.closing = False  # (set by the loop: write the rollup's coarse rows at once)
        self.retrying = False  # a write failed and is being retried (disk full, locked)
        self.written = 0
        self.write_errors = 0
        self.pruned_traces = 0
        self.unreported_pruned = 0  # deleted by automatic pruning, not yet told to prune()
        self.reopened = 0
        self.dropped = 0
        self.late_spans = 0  # spans added to a trace after its end was written
        self.spill_queue = 0
        self.schema_version = 0
        self.page_size = PAGE_SIZE
        self.last_error: str | None = None
        self.last_error_ns: int | None = None

    def stats(self) -> dict[str, Any]:
        """What the host's store shows in its health (sent with every acknowledgement)."""
        return {"written": self.written, "write_errors": self.write_errors,
                "pruned_traces": self.pruned_traces, "reopened": self.reopened,
                "dropped": self.dropped, "spill_queue": self.spill_queue,
                "late_spans": self.late_spans, "retrying": self.retrying,
                "schema_version": self.schema_version, "last_error": self.last_error,
                "last_error_ns": self.last_error_ns, "commit_interval": self.interval,
                "sqlite_tuned": self.sqlite_tuned,
                "gc_collections": (None if self.gc_passes_before is None
                                   else gc_passes() - self.gc_passes_before)}

    def note_error(self, what: str, exc: BaseException | None) -> None:
        self.last_error = what if exc is None else f"{what}: {type(exc).__name__}: {exc}"
        self.last_error_ns = time.time_ns()

    def run(self, recv: Any) -> None:
        """Serve messages from ``recv(timeout)`` until closed (``botrace.store.serve``)."""
        from botrace.store.serve import WriterLoop

        WriterLoop(self).run(recv)

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
        self.late_column = any(r[1] == "late_spans"
                               for r in conn.execute("PRAGMA table_info(traces)"))
        self.conn = conn
        self._read_tag_ids()
        self.file_id = self._stat_id()

    def _read_tag_ids(self) -> None:
        self.tag_ids = {(kind, value): tag for tag, kind, value in
                        self.conn.execute("SELECT tag, kind, value FROM tag_values")}

    def checkpoints(self) -> None:
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
            except sqlite3.Error:  # (busy, or the file is being recreated: next time)
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
        except sqlite3.Error as exc:  # (a connection to a file that is gone)
            self.note_error("closing the lost database", exc)
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
        recount: dict[str, tuple] = {}  # trace id -> its end record (totals from the file)
        late: dict[str, list] = {}  # trace id -> the part of spans ended after its end
        accs = self.acc
        dropped = 0
        rows = 0
        for others, folded_chunks, parts, mins, *_ in folds:
            for rec in others:  # (a trace's start comes before its spans)
                if rec[0] == "T" and rec[1] not in accs:
                    accs[rec[1]] = new_totals()
            for tid, part in parts.items():
                acc = accs.get(tid)
                if acc is not None:
                    merge_totals(acc, part)
                elif tid not in recount:  # (a recount reads this transaction's spans too)
                    into = late.get(tid)
                    if into is None:
                        into = late[tid] = new_totals()
                    merge_totals(into, part)
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
                    acc = accs.pop(tid, None)
                    self.running_traces.pop(tid, None)
                    try:
                        if acc is None:  # its start went by before this writer: recount
                            self._trace_row(tid, name, start, attrs, status, end, _NO_TOTALS,
                                            dropped_spans, trunc)  # (will it encode?)
                            late.pop(tid, None)
                            starts.pop(tid, None)
                            recount[tid] = rec
                            continue
                        if acc[ERRORS] and status == "ok":
                            status = "error"
                        row = self._trace_row(tid, name, start, attrs, status, end, acc,
                                              dropped_spans, trunc)
                    except Exception:  # (attributes JSON cannot hold: counted)
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
            except Exception:  # (attributes JSON cannot hold: counted)
                del starts[tid]
                dropped += 1
        self.dropped += dropped
        rows += len(ends) + len(starts) + len(recount)
        return (ends, starts, chunks, tags, plugins, minutes, recount, late, rows)

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
            acc[ERRORS], int(dropped_spans or 0) + acc[DROPPED], int(bool(truncated)),
            encode(list(acc[PLUGINS])) if acc[PLUGINS] else "[]",
            encode(list(acc[MODELS])) if acc[MODELS] else "[]",
            encode(attrs) if attrs else None, acc[COST],
        )

    def _recount(self, conn: sqlite3.Connection, recount: dict[str, tuple]) -> list[tuple]:
        """Trace rows for ends whose totals this writer did not gather, from the spans
        stored for them (this transaction's included); returns their tags."""
        rows = []
        tags: list[tuple] = []
        for tid, (_, _, start, name, attrs, status, end, dropped_spans, trunc) in recount.items():
            acc = stored_totals(conn, start, tid)
            if acc[ERRORS] and status == "ok":
                status = "error"
            rows.append(self._trace_row(tid, name, start, attrs, status, end, acc,
                                        dropped_spans, trunc))
            tags += [(start, tid, kind, v) for kind, v in tag_pairs(acc)]
        _insert_traces(conn, rows)
        return tags

    def _add_late(self, conn: sqlite3.Connection, late: dict[str, list]) -> tuple[list, int]:
        """Add the spans that ended after their trace's end to its stored row; returns their
        tags and how many spans were added. A trace whose row is missing or still running
        has its end still to come, and its totals then (a recount when this writer did not
        see it begin)."""
        sql = _ADD_LATE.format(late=", late_spans = late_spans + ?" if self.late_column else "")
        tags: list[tuple] = []
        added = 0
        for tid, part in late.items():
            row = conn.execute("SELECT status, start_ns, plugins, models FROM traces "
                               "WHERE trace_id = ?", (tid,)).fetchone()
            if row is None or row[0] == "running":
                continue
            _, start, plugins, models = row
            params = [part[SPANS], part[LLM], part[TOOL_CALLS], part[ERRORS], part[INPUT],
                      part[OUTPUT], part[CACHED], part[COST], part[DROPPED],
                      _merged_names(plugins, part[PLUGINS]), _merged_names(models, part[MODELS]),
                      part[ERRORS]]
            if self.late_column:
                params.append(part[SPANS])
            conn.execute(sql, (*params, tid))
            tags += [(start, tid, kind, v) for kind, v in tag_pairs(part)]
            added += part[SPANS]
        return tags, added

    # ------------------------------------------------------------------ writing

    def write(self, payload: tuple, flush_rollup: bool = False) -> bool:
        """One attempt at writing a processed batch in one transaction. The rollup's
        minute rows go in with it; its hour and day rows when a second has passed since
        they were last written, or ``flush_rollup`` (a host's flush, close) asks."""
        ends, starts, chunks, tags, plugins, minutes, recount, late, rows = payload
        cache = self.cache
        coarse = fold(minutes, COARSE) if minutes else None
        write_coarse = bool(coarse or cache.pending) and (
            flush_rollup or self.closing or time.monotonic() >= self.rollup_due)
        late_added = 0
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
                if recount:  # (after the chunks: their spans count)
                    tags = tags + self._recount(conn, recount)
                if late:  # (after the ends: a trace that ended in this batch is one)
                    more, late_added = self._add_late(conn, late)
                    tags = tags + more
                if tags:
                    self._insert_tags(conn, tags)
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
                except sqlite3.Error:  # (no transaction left to roll back)
                    pass
                raise
        except (sqlite3.Error, OSError, ValueError) as exc:
            self.write_errors += 1
            self.note_error("write failed", exc)
            if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
                try:
                    self._reopen()
                except sqlite3.Error as again:
                    self.note_error("recreating the malformed database failed", again)
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
        self.late_spans += late_added
        return True

    def _insert_tags(self, conn: sqlite3.Connection, tags: list[tuple]) -> None:
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

    def pace(self, busy: float, now: float) -> None:
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
