"""The statistics rollup (table ``stats_rollup``, see ``botrace.schema``): kept by the writer.

Each finished span is added to a per-minute aggregate when its batch is folded
(``botrace.store.folding``, on the feeder), then the writer's :func:`fold` spreads the
minute aggregates over the three grains and :class:`RollupCache` merges them into the
stored rows: the minute rows in the batch's transaction, the hour and day rows at most
once a second (and at a host's flush, at close, before pruning), the hours they lag
listed in ``rollup_dirty`` meanwhile (:func:`repair_coarse` catches them up after a
crash). Retention subtracts what it deletes the same way (``sign=-1``), so the rollup
describes exactly the finished spans stored; the hour and day rows up to a second
late.

Row layout in memory (a list, mutated in place)::

    [n, dur_ns, self_ns, max_ns, input_tokens, output_tokens, cached_tokens, cost_usd,
     min_trace_start_ns, {bucket: count}]
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from botrace.schema import GRAINS, ROLLUP_COLS, bucket_value_ns
from botrace.store import chunks as E
from botrace.store.chunks import latest_spans
from botrace.store.jsontext import encode_hist

__all__ = ["RollupCache", "fold", "merge_agg", "merge_aggs", "new_agg", "rebuild_rollup",
           "repair_coarse"]

DAY, HOUR, MINUTE = GRAINS
COARSE = (DAY, HOUR)
_UPSERT = (f"INSERT OR REPLACE INTO stats_rollup ({', '.join(ROLLUP_COLS)}) "
           f"VALUES ({', '.join('?' * len(ROLLUP_COLS))})")
_DELETE = ("DELETE FROM stats_rollup WHERE grain = ? AND t0 = ? AND span_type = ? AND gkey = ? "
           "AND name = ? AND plugin = ? AND status = ?")
_LOAD = ("SELECT span_type, gkey, name, plugin, status, n, dur_ns, self_ns, max_ns, input_tokens, "
         "output_tokens, cached_tokens, cost_usd, min_trace_start_ns, hist FROM stats_rollup "
         "WHERE grain = ? AND t0 = ?")


def new_agg(trace_start_ns: int) -> list:
    return [0, 0, 0, 0, 0, 0, 0, 0.0, trace_start_ns, {}]


def decode_hist(text: str) -> dict[int, int]:
    flat = json.loads(text) if text else []
    return dict(zip(flat[::2], flat[1::2]))


def merge_agg(row: list, agg: list) -> None:
    row[0] += agg[0]
    row[1] += agg[1]
    row[2] += agg[2]
    if agg[3] > row[3]:
        row[3] = agg[3]
    row[4] += agg[4]
    row[5] += agg[5]
    row[6] += agg[6]
    row[7] += agg[7]
    if agg[8] < row[8]:
        row[8] = agg[8]
    hist = row[9]
    for bucket, count in agg[9].items():
        hist[bucket] = hist.get(bucket, 0) + count


def _subtract(row: list, agg: list) -> None:
    for i in (0, 1, 2, 4, 5, 6, 7):
        row[i] -= agg[i]
    hist = row[9]
    for bucket, count in agg[9].items():
        left = hist.get(bucket, 0) - count
        if left > 0:
            hist[bucket] = left
        else:
            hist.pop(bucket, None)
    if agg[3] >= row[3] and hist:
        # the longest span may have gone: the top of the highest bucket left (within
        # one bucket's width, 3 %) is the best bound the rollup still knows
        row[3] = min(row[3], int(bucket_value_ns(max(hist)) * 1.015) + 1)


def merge_aggs(into: dict[tuple, list], aggs: dict[tuple, list]) -> None:
    """Add ``aggs`` to ``into`` key by key (an aggregate new to ``into`` is taken as is)."""
    for key, agg in aggs.items():
        have = into.get(key)
        if have is None:
            into[key] = agg
        else:
            merge_agg(have, agg)


def fold(minutes: dict[tuple, list], grains: tuple[int, ...] = GRAINS) -> dict[tuple, list]:
    """Minute aggregates ``(minute_t0, span_type, gkey, name, plugin, status) -> agg``
    spread over ``grains``: ``(grain, t0, span_type, gkey, name, plugin, status) -> agg``."""
    out: dict[tuple, list] = {}
    for (m, *rest), agg in minutes.items():
        for grain in grains:
            key = (grain, m - m % grain, *rest)
            have = out.get(key)
            if have is None:
                out[key] = [*agg[:9], dict(agg[9])]
            else:
                merge_agg(have, agg)
    return out


class RollupCache:
    """The writer's copy of the rollup rows it touched recently.

    Rows are read from SQLite once per (grain, t0) bucket, merged in memory and written
    back whole; the writer is the only one writing the table, so the copy stays true.
    After a failed transaction the caller calls :meth:`clear` (rows were changed in place).
    """

    MAX_ROWS = 200_000

    def __init__(self) -> None:
        self.rows: dict[tuple, list] = {}
        self.loaded: set[tuple[int, int]] = set()
        # hour and day aggregates of committed batches not written yet (their hours are
        # listed in rollup_dirty): the writer writes them at most once a second
        self.pending: dict[tuple, list] = {}

    def clear(self) -> None:
        """Forget the rows read (they may hold a failed transaction's changes); what is
        pending stays: it was committed to the minute rows."""
        self.rows.clear()
        self.loaded.clear()

    def stage(self, aggs: dict[tuple, list]) -> None:
        """Keep hour / day aggregates of a committed batch for the next :meth:`with_pending`."""
        merge_aggs(self.pending, aggs)

    def write_coarse(self, conn: sqlite3.Connection, aggs: dict[tuple, list]) -> None:
        """Write hour / day ``aggs`` with everything pending and empty ``rollup_dirty``
        (the caller empties ``pending`` once the transaction commits)."""
        self.apply(conn, self.with_pending(aggs))
        conn.execute("DELETE FROM rollup_dirty")

    def hold_coarse(self, conn: sqlite3.Connection, aggs: dict[tuple, list]) -> None:
        """List the hours of hour / day ``aggs`` not written now in ``rollup_dirty`` (the
        caller passes them to :meth:`stage` once the transaction commits)."""
        conn.executemany("INSERT OR IGNORE INTO rollup_dirty (t0) VALUES (?)",
                         {(key[1],) for key in aggs if key[0] == HOUR})

    def with_pending(self, aggs: dict[tuple, list]) -> dict[tuple, list]:
        """``aggs`` plus everything pending, as new aggregates (``pending`` is left as it
        is until the transaction writing them commits)."""
        if not self.pending:
            return aggs
        out = {key: [*agg[:9], dict(agg[9])] for key, agg in self.pending.items()}
        merge_aggs(out, aggs)
        return out

    def _load(self, conn: sqlite3.Connection, grain: int, t0: int) -> None:
        for r in conn.execute(_LOAD, (grain, t0)):
            self.rows[(grain, t0, *r[:5])] = [*r[5:14], decode_hist(r[14])]
        self.loaded.add((grain, t0))

    def apply(self, conn: sqlite3.Connection, aggs: dict[tuple, list], sign: int = 1) -> int:
        """Merge (``sign=1``) or subtract (``sign=-1``) ``aggs`` into the stored rows.
        Returns how many rows were written or deleted."""
        if len(self.rows) > self.MAX_ROWS:
            self.clear()
        rows = self.rows
        upserts: list[tuple] = []
        deletes: list[tuple] = []
        for key, agg in aggs.items():
            if (key[0], key[1]) not in self.loaded:
                self._load(conn, key[0], key[1])
            row = rows.get(key)
            if sign > 0:
                if row is None:
                    row = rows[key] = [*agg[:9], dict(agg[9])]
                else:
                    merge_agg(row, agg)
            else:
                if row is None:
                    continue
                _subtract(row, agg)
                if row[0] <= 0:
                    del rows[key]
                    deletes.append(key)
                    continue
            upserts.append((*key, *row[:9], encode_hist(row[9])))
        if upserts:
            conn.executemany(_UPSERT, upserts)
        if deletes:
            conn.executemany(_DELETE, deletes)
        return len(upserts) + len(deletes)


_FROM_SPANS = """
SELECT start_ns - (start_ns % {minute}), coalesce(span_type, ''), coalesce(gkey, ''),
       coalesce(name, ''), coalesce(plugin, ''), status, coalesce(dur_bucket, 0), count(*),
       sum(end_ns - start_ns), coalesce(sum(self_ns), 0), max(end_ns - start_ns),
       sum(input_tokens), sum(output_tokens), sum(cached_tokens), sum(cost_usd),
       min(trace_start_ns)
FROM spans WHERE end_ns IS NOT NULL {where}
GROUP BY 1, 2, 3, 4, 5, 6, 7
""".format(minute=MINUTE, where="{where}")


def minute_aggs(rows: Any) -> dict[tuple, list]:
    """Minute aggregates from ``_FROM_SPANS`` rows (one per key and duration bucket)."""
    minutes: dict[tuple, list] = {}
    for (m, st, gk, nm, pl, ss, bucket, n, dur, self_ns, mx, tin, tout, tc, cost,
         tstart) in rows:
        key = (m, st, gk, nm, pl, ss)
        agg = minutes.get(key)
        if agg is None:
            agg = minutes[key] = new_agg(tstart)
        merge_agg(agg, [n, dur, self_ns, mx, tin, tout, tc, cost, tstart, {bucket: n}])
    return minutes


def rebuild_rollup(conn: sqlite3.Connection) -> int:
    """(Re)build the whole rollup from the stored spans (migration to schema 3, where
    ``spans`` is still a table; the ``spans`` view of schema 6 answers the same SQL).
    Returns rows written."""
    conn.execute("DELETE FROM stats_rollup")
    aggs = fold(minute_aggs(conn.execute(_FROM_SPANS.format(where=""))))
    conn.executemany(_UPSERT, [(*key, *agg[:9], encode_hist(agg[9]))
                               for key, agg in aggs.items()])
    return len(aggs)


def spans_aggs(conn: sqlite3.Connection, upto_trace_start_ns: int) -> dict[tuple, list]:
    """The rollup contribution of every finished span of traces started at or before
    ``upto_trace_start_ns`` (what a retention batch is about to delete)."""
    rows = []
    trace = None
    texts: list[str] = []
    for tstart, tid, text in conn.execute(
            "SELECT trace_start_ns, trace_id, spans FROM span_chunks WHERE trace_start_ns <= ? "
            "ORDER BY trace_start_ns, trace_id, rowid", (upto_trace_start_ns,)):
        if (tstart, tid) != trace:
            rows += _finished_rows(trace, texts)
            trace, texts = (tstart, tid), []
        texts.append(text)
    rows += _finished_rows(trace, texts)
    return fold(minute_aggs(rows))


def _finished_rows(trace: tuple[int, str] | None, texts: list[str]) -> list[tuple]:
    """``_FROM_SPANS``-shaped rows (one span each) of one trace's finished spans."""
    if trace is None:
        return []
    tstart = trace[0]
    return [(e[E.START] - e[E.START] % MINUTE, e[E.TYPE] or "", e[E.GKEY] or "",
             e[E.NAME] or "", e[E.PLUGIN] or "", e[E.STATUS], e[E.BUCKET] or 0, 1,
             e[E.END] - e[E.START], e[E.SELF] or 0, e[E.END] - e[E.START], e[E.TIN],
             e[E.TOUT], e[E.TCACHED], e[E.COST], tstart)
            for e in latest_spans(texts) if e[E.END] is not None]


def repair_coarse(conn: sqlite3.Connection) -> int:
    """Rebuild the hour and day rows of the hours listed in ``rollup_dirty`` from their
    minute rows (a writer died before writing them), in one transaction. Returns how
    many hours were listed."""
    hours = sorted(r[0] for r in conn.execute("SELECT t0 FROM rollup_dirty"))
    if not hours:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        days = sorted({h - h % DAY for h in hours})
        for grain, fine, starts in ((HOUR, MINUTE, hours), (DAY, HOUR, days)):
            for t0 in starts:
                aggs: dict[tuple, list] = {}
                for r in conn.execute(_LOAD.replace("t0 = ?", "t0 >= ? AND t0 < ?"),
                                      (fine, t0, t0 + grain)):
                    merge_aggs(aggs, {(grain, t0, *r[:5]): [*r[5:14], decode_hist(r[14])]})
                conn.execute("DELETE FROM stats_rollup WHERE grain = ? AND t0 = ?", (grain, t0))
                conn.executemany(_UPSERT, [(*key, *agg[:9], encode_hist(agg[9]))
                                           for key, agg in aggs.items()])
        conn.execute("DELETE FROM rollup_dirty")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(hours)
