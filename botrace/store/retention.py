"""Retention: whole traces, oldest first, deleted a bounded batch per transaction.

The writer loop (``botrace.store.serve``) runs one :func:`prune_step` between batches
when pruning is due, and :func:`prune_all` when ``botrace prune`` asks.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from botrace.store.rollup import spans_aggs

if TYPE_CHECKING:
    from botrace.store.writer import Writer

__all__ = ["prune_all", "prune_step", "used_bytes"]


def prune_step(w: Writer, days: int, cap: int, automatic: bool = True) -> int:
    """Delete about ``prune_batch`` whole traces (oldest first) that are too old, or
    while the database is over its size cap; their spans leave the rollup too."""
    conn = w.conn
    upto = None
    if days > 0:
        upto = _batch_end(w, time.time_ns() - days * 86_400 * 1_000_000_000)
    if upto is None and cap > 0 and used_bytes(w) > cap * 1024 * 1024:
        upto = _batch_end(w, None)
    if upto is None:
        return 0
    # spans and tags are keyed by their trace's start time, so a batch of whole traces
    # is a few key-range deletes: no trace is ever left half-deleted
    conn.execute("BEGIN IMMEDIATE")
    pending = bool(w.cache.pending)
    try:
        if pending:  # written first: what is subtracted next may be in it
            w.cache.write_coarse(conn, {})
        w.cache.apply(conn, spans_aggs(conn, upto), sign=-1)
        conn.execute("DELETE FROM span_chunks WHERE trace_start_ns <= ?", (upto,))
        conn.execute("DELETE FROM trace_tags WHERE tag IN (SELECT tag FROM tag_values) "
                     "AND start_ns <= ?", (upto,))
        deleted = conn.execute("DELETE FROM traces WHERE start_ns <= ?", (upto,)).rowcount
        conn.execute("COMMIT")
    except BaseException:
        w.cache.clear()
        conn.execute("ROLLBACK")
        raise
    if pending:
        w.cache.pending = {}
    w.pruned_traces += deleted
    if automatic:
        w.unreported_pruned += deleted
    # a bounded amount of the freed pages (8 MiB) goes back to the file system
    conn.execute(f"PRAGMA incremental_vacuum({(8 << 20) // w.page_size})")
    return deleted


def prune_all(w: Writer, days: int | None, cap: int | None, progress: Any) -> int:
    """Prune until nothing is due; ``progress(total)`` after each batch that deleted some.
    What the automatic pruning deleted since the store opened counts too (a ``botrace
    prune`` run opens the store and asks at once: both are its work)."""
    days = w.retention_days if days is None else days
    cap = w.max_mb if cap is None else cap
    total, w.unreported_pruned = w.unreported_pruned, 0
    while True:
        n = prune_step(w, days, cap, automatic=False)
        total += n
        if n:
            progress(total)
        if n < w.prune_batch:
            return total


def _batch_end(w: Writer, before_ns: int | None) -> int | None:
    where, params = ("WHERE start_ns < ?", [before_ns]) if before_ns is not None else ("", [])
    row = w.conn.execute(
        f"SELECT max(start_ns) FROM (SELECT start_ns FROM traces {where} "
        "ORDER BY start_ns LIMIT ?)", [*params, w.prune_batch]).fetchone()
    return row[0] if row else None


def used_bytes(w: Writer) -> int:
    """Bytes of the database in use (its pages minus the free ones)."""
    conn = w.conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return (pages - free) * size
