"""The writer's loop: messages from the host in, transactions out, faults waited out.

The loop runs in the store's writer process (:func:`main`, started by
``botrace.store.links.ProcessLink``) or in a thread of the host
(``botrace.store.links.ThreadLink``); either way one :class:`WriterLoop` serves one
:class:`botrace.store.writer.Writer`.

Messages in: ``("batch", seq, upto, n, (others, chunks, parts, minutes), flush)`` (a
batch of ``n`` records, folded; ``flush``: a host's flush asked for it), ``("spill", seq,
path, count, upto)`` (a spill file of ``count`` records not folded), ``("exec", seq, sql,
params)``, ``("prune", seq, days, max_mb)``, ``("close", seq)``.
Messages out: ``("ready", stats)``, ``("ack", seq, upto, rows, kind, stats)``,
``("status", stats)``, ``("reply", seq, result, error)``, ``("progress", seq, n)``,
``("closed", stats)``, ``("died", text)``.

A write that fails (disk full, database locked) is retried with a growing pause, up to
``max_backoff``; ``retrying`` in the stats says so meanwhile, and the host bounds what it
keeps in memory then (``botrace.store.intake``). While closing, a write still failing at
the longest pause is given up and its rows counted as dropped.

A writer started again after the last one died (``resume`` in its configuration) leaves
the spill files alone (the host hands them over again, in order, with the batches the
dead writer had not confirmed) and rebuilds the statistics' hour and day rows the dead
one had not written yet.
"""

from __future__ import annotations

import gc
import pickle
import queue
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from botrace.store.retention import prune_all, prune_step
from botrace.store.rollup import repair_coarse
from botrace.store.spill import (
    clear_progress,
    leftover_spills,
    read_progress,
    read_spill,
    write_progress,
)
from botrace.store.writer import NOTHING, Writer, gc_passes

__all__ = ["WriterLoop", "main"]

_GC_GEN0 = 200_000  # the writer process's first collector threshold (see main)


class WriterLoop:
    """Serves one writer: batches coalesced into transactions, retries, spill files,
    pruning between batches, ``exec`` and ``prune`` requests, close."""

    def __init__(self, writer: Writer) -> None:
        cfg = writer.cfg
        self.w = writer
        self.resume = bool(cfg.get("resume"))
        self.prune_interval = float(cfg.get("prune_interval", 300.0))
        self.first_prune = float(cfg.get("first_prune", 2.0))  # s after start
        self.max_backoff = float(cfg.get("max_backoff", 5.0))
        self.spill_chunk = int(cfg.get("spill_chunk", 50_000))
        self.recv: Any = None
        self.inbox: deque = deque()
        self.host_gone = False
        self.abandon = False  # closing with a fault on: what is left is given up, counted
        self.prune_due = False
        self.next_prune = 0.0

    # ------------------------------------------------------------------ lifecycle

    def run(self, recv: Any) -> None:
        """Serve until a ``close`` message or the host's end of the link closes."""
        w = self.w
        self.recv = recv
        w.connect()
        if self.resume:  # the hour and day rows the dead writer held back
            repair_coarse(w.conn)
        checkpointer = threading.Thread(target=w.checkpoints, daemon=True,
                                        name="botrace-store-checkpoint")
        checkpointer.start()
        try:
            self._serve()
        finally:
            w.stop_checkpoints.set()
            w.committed.set()
            checkpointer.join(5.0)

    def _serve(self) -> None:
        w = self.w
        # the first pruning a moment after start, not at once: a `botrace prune` run
        # counts the traces first, and the first batches of a host go ahead of it
        self.next_prune = time.monotonic() + min(self.first_prune, self.prune_interval)
        leftovers: list[tuple[Path, list]] = []
        for path in ([] if self.resume else leftover_spills(w.spill_path)):
            try:
                records = read_spill(path)
            except OSError as exc:
                w.note_error("unreadable spill file left as it was", exc)
                continue
            leftovers.append((path, records))
            w.spill_queue += len(records)
        w.emit(("ready", w.stats()))
        for path, records in leftovers:  # a previous process died with overflow on disk
            self._drain(path, records)
            w.spill_queue -= len(records)
        if leftovers:
            w.emit(("status", w.stats()))
        while True:
            if self.inbox:
                msg = self.inbox.popleft()
            elif self.host_gone:
                break
            else:
                if not self.prune_due and time.monotonic() >= self.next_prune:
                    self.prune_due = True
                timeout = 0.0 if self.prune_due else max(0.0, self.next_prune - time.monotonic())
                if w.cache.pending:  # idle: the rollup's hour and day rows within a second
                    timeout = min(timeout, max(0.0, w.rollup_due - time.monotonic()))
                msg = self._recv(timeout)
            if msg is None:
                if w.cache.pending and time.monotonic() >= w.rollup_due:
                    self.write_retrying(NOTHING)
                if self.prune_due and not w.closing:
                    self._prune_tick()
                continue
            kind = msg[0]
            if kind == "batch":
                self._batches(msg)
            elif kind == "spill":
                self._spill(msg)
            elif kind == "exec":
                self._exec(msg)
            elif kind == "prune":
                _, seq, days, cap = msg
                try:
                    total = prune_all(w, days, cap,
                                      lambda n, seq=seq: w.emit(("progress", seq, n)))
                    w.emit(("status", w.stats()))
                    w.emit(("reply", seq, total, None))
                except (sqlite3.Error, OSError) as exc:
                    w.emit(("reply", seq, None, f"{type(exc).__name__}: {exc}"))
            elif kind == "close":
                self._finish()
                w.emit(("closed", w.stats()))
                return
            if self.prune_due and not self.inbox and not w.closing:
                self._prune_tick()
        self._finish()

    def _batches(self, msg: tuple) -> None:
        """Write a batch, with those already waiting (and, under a steady stream, those
        arriving within the commit interval) in the same transaction; acknowledge each."""
        w = self.w
        # behind? take the batches already waiting into the same transaction: the
        # rollup rows and the commit are paid once for all of them
        msgs = [msg]
        total = msg[3]
        # and under a steady stream, wait for more up to `interval` after the last
        # commit, as long as the stream does not pause for min_interval
        until = w.last_commit + w.interval
        while total < w.coalesce:
            nxt = self.inbox.popleft() if self.inbox else self._recv(0)
            if nxt is None:
                wait = until - time.monotonic()
                if wait <= 0 or w.closing or any(m[5] for m in msgs):
                    break
                nxt = self._recv(min(wait, w.min_interval))
                if nxt is None:
                    break
            if nxt[0] != "batch":
                self.inbox.appendleft(nxt)
                break
            msgs.append(nxt)
            total += nxt[3]
        # (a host's flush asks for everything to be queryable: the rollup too)
        began = time.monotonic()
        self.write_retrying(w.process([m[4] for m in msgs]),
                            flush_rollup=any(m[5] for m in msgs))
        now = time.monotonic()
        w.pace(now - began, now)
        for _, seq, upto, n, _folded, _flush in msgs:
            w.emit(("ack", seq, upto, n, "batch", w.stats()))

    def _spill(self, msg: tuple) -> None:
        """Write a spill file handed over by the host; what it lacks of the ``count``
        records the host put in it (frames a full disk cut short) is counted as dropped."""
        w = self.w
        _, seq, path, count, upto = msg
        path = Path(path)
        try:
            records = read_spill(path)
        except FileNotFoundError as exc:
            records = None
            if not self.resume:  # (resumed: the dead writer had written and deleted it)
                w.dropped += count
                w.note_error("spill file vanished; its records are lost", exc)
        except OSError as exc:
            w.note_error("unreadable spill file left as it was", exc)
            records = None
        if records is not None:
            if len(records) < count:
                w.dropped += count - len(records)
                w.note_error(f"spill file held {len(records)} of its {count} records "
                             "(cut short); the rest are lost", None)
            if not self.abandon:  # (closing with the fault on: it stays for the next open)
                self._drain(path, records)
        w.emit(("ack", seq, upto, count, "spill", w.stats()))

    def _drain(self, path: Path, records: list) -> None:
        """Write a spill file's records, ``spill_chunk`` to a transaction, then delete it;
        the progress noted after each transaction lets a restarted writer go on from there."""
        w = self.w
        wrote = False
        start = min(read_progress(path), len(records))
        for i in range(start, len(records), self.spill_chunk):
            part = records[i:i + self.spill_chunk]
            if self.write_retrying(w.fold_and_process(part)):
                wrote = True
                try:
                    write_progress(path, i + len(part))
                except OSError as exc:  # (only a writer restarted now would write it twice)
                    w.note_error("spill progress not noted", exc)
        if wrote or not self.abandon:  # (untouched while closing on a fault: kept for next open)
            path.unlink(missing_ok=True)
            clear_progress(path)

    def _exec(self, msg: tuple) -> None:
        w = self.w
        _, seq, sql, params = msg
        try:
            result = w.conn.execute(sql, params).fetchall()
            w.emit(("reply", seq, result, None))
        except sqlite3.Error as exc:
            w.emit(("reply", seq, None, f"{type(exc).__name__}: {exc}"))

    def _finish(self) -> None:
        w = self.w
        if w.conn is None:
            return
        if w.cache.pending:
            self.write_retrying(NOTHING, flush_rollup=True)
        if not self.abandon:
            try:  # fresh planner statistics for the next reader (sampled: milliseconds)
                w.conn.execute("PRAGMA analysis_limit = 400")
                w.conn.execute("ANALYZE")
            except sqlite3.Error as exc:  # (only the planner's statistics are older)
                w.note_error("analyze failed", exc)
        try:
            w.conn.close()
        except sqlite3.Error as exc:
            w.note_error("closing the database failed", exc)
        w.conn = None

    # ------------------------------------------------------------------ faults

    def write_retrying(self, payload: tuple, flush_rollup: bool = False) -> bool:
        """Write, waiting out a fault (locked, disk full) with a growing pause; while
        closing, give up (rows counted as dropped) once the pause is at its longest."""
        w = self.w
        if self.abandon:
            w.dropped += payload[-1]
            return False
        backoff = 0.0
        while not w.write(payload, flush_rollup):
            w.retrying = True
            w.emit(("status", w.stats()))
            if w.closing and backoff >= self.max_backoff:
                w.dropped += payload[-1]
                self.abandon = True
                w.retrying = False
                return False
            backoff = min(self.max_backoff, max(0.05, backoff * 2))
            self._wait(backoff)
        w.retrying = False
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
                    self.w.closing = True
                self.inbox.append(msg)
        time.sleep(min(seconds, 0.05))

    def _recv(self, timeout: float | None) -> Any:
        try:
            return self.recv(timeout)
        except (EOFError, OSError):
            self.host_gone = self.w.closing = True
            return None

    # ------------------------------------------------------------------ retention

    def _prune_tick(self) -> None:
        """One bounded prune step between batches; the round ends with a sampled ANALYZE."""
        w = self.w
        try:
            n = prune_step(w, w.retention_days, w.max_mb)
        except (sqlite3.Error, OSError) as exc:
            w.write_errors += 1
            w.note_error("prune failed", exc)
            n = 0
        if n < w.prune_batch:
            self.prune_due = False
            self.next_prune = time.monotonic() + self.prune_interval
            try:
                w.conn.execute("PRAGMA analysis_limit = 400")
                w.conn.execute("ANALYZE")
            except sqlite3.Error as exc:
                w.note_error("analyze failed", exc)
        w.emit(("status", w.stats()))


# ---------------------------------------------------------------------------- process entry

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
    writer.gc_passes_before = gc_passes()
    try:
        writer.run(recv)
    except BaseException as exc:
        try:  # (the host notices the closed socket anyway; this says why)
            emit(("died", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
        raise
    return 0
