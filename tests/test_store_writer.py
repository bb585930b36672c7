"""The store's writer: its commit pacing (a busy writer gathers a steady stream into fewer,
bigger transactions, and gives that up again when the load goes; a pause in the stream
always ends a transaction's gathering) and the SQLite and collector configuration of its
process."""

from __future__ import annotations

import ctypes.util
import queue
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_rollup import _folded_batches

from botrace.store import TraceStore
from botrace.store.synthetic import feed, synthetic_traces
from botrace.store.writer import Writer, prepare_database


def test_commit_interval_doubles_while_busy_and_halves_when_idle(tmp_path: Path) -> None:
    w = Writer({"path": str(tmp_path / "p.db"), "min_interval": 0.1, "max_interval": 1.0},
               lambda m: None)
    w._duty_since = now = 0.0
    seen = []
    for _ in range(6):  # busy 0.3 s of every second
        now += 1.0
        w.pace(0.3, now)
        seen.append(w.interval)
    assert seen == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    now += 1.0
    w.pace(0.2, now)  # between a tenth and a quarter: stays
    assert w.interval == 1.0
    seen = []
    for _ in range(6):  # idle most of the time
        now += 1.0
        w.pace(0.05, now)
        seen.append(w.interval)
    assert seen == [0.5, 0.25, 0.125, 0.1, 0.1, 0.1]
    # less than a second since the last look: only added up
    w.pace(0.9, now + 0.5)
    assert w.interval == 0.1
    w.pace(0.0, now + 1.0)
    assert w.interval == 0.2


def test_busy_writer_gathers_a_steady_stream_and_a_pause_ends_the_gathering(
        tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    prepare_database(db)
    batches = _folded_batches(list(synthetic_traces(120, spans=20, seed=5)), 2)  # 60 batches
    inbox: queue.Queue = queue.Queue()
    emitted: queue.Queue = queue.Queue()

    def recv(timeout):
        try:
            msg = inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if msg is None:
            raise EOFError
        return msg

    # as if it had been busy for a while: gather for up to a minute, unless the stream
    # pauses for 0.3 s
    w = Writer({"path": str(db), "min_interval": 0.3, "max_interval": 60.0}, emitted.put)
    w.interval = 60.0
    transactions = []
    write = w.write

    def counting_write(payload, flush_rollup=False):
        transactions.append(payload[-1])
        return write(payload, flush_rollup)

    w.write = counting_write
    w.pace = lambda busy, now: None  # keep the interval where the test put it
    thread = threading.Thread(target=w.run, args=(recv,), daemon=True)
    thread.start()
    try:
        for seq, folded in enumerate(batches):
            inbox.put(("batch", seq, seq + 1, len(folded[0]) + len(folded[1]), folded, False))
            threading.Event().wait(0.02)  # a steady stream for 1.2 s: a batch every 20 ms
        acked = []
        while len(acked) < len(batches):  # all confirmed, without the minute's wait
            msg = emitted.get(timeout=30)
            if msg[0] == "ack":
                acked.append(msg[1])
        assert acked == list(range(len(batches)))
    finally:
        inbox.put(None)
        thread.join(10)
    # the first batch had no commit to wait for; the other 59 went in together (a
    # scheduling hiccup of 0.3 s may split them once; gathering for min_interval only
    # would have made five or more transactions)
    with_rows = [rows for rows in transactions if rows]
    assert 2 <= len(with_rows) <= 3, with_rows
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM traces").fetchone()[0] == 120
    assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == 120 * 20
    conn.close()


_MEMORY_USED = """
import sys
from botrace._writer_process import tune_sqlite
tuned = tune_sqlite() if sys.argv[1] == "tune" else False
import ctypes, ctypes.util, sqlite3
conn = sqlite3.connect(":memory:")
conn.execute("CREATE TABLE t (x)")
conn.executemany("INSERT INTO t VALUES (?)", [(str(i) * 20,) for i in range(2000)])
lib = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
lib.sqlite3_memory_used.restype = ctypes.c_int64
print(tuned, lib.sqlite3_memory_used())
"""


def _memory_used(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _MEMORY_USED, mode], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0], int(out[1])


# (where no shared SQLite library exists, the writer process runs SQLite as it comes)
needs_shared_sqlite = pytest.mark.skipif(ctypes.util.find_library("sqlite3") is None,
                                         reason="no shared SQLite library here")


@needs_shared_sqlite
def test_writer_process_runs_sqlite_without_memory_statistics() -> None:
    tuned, used = _memory_used("plain")
    if used == 0:  # the sqlite3 module does not use that library (linked in statically)
        pytest.skip("the sqlite3 module has its own SQLite")
    tuned, used = _memory_used("tune")
    assert (tuned, used) == ("True", 0)  # nothing counted: no global mutex per allocation


@needs_shared_sqlite
async def test_the_store_starts_its_writer_process_with_sqlite_tuned(tmp_path: Path) -> None:
    async with TraceStore(tmp_path / "t.db", writer="process") as store:
        assert store._supervisor.stats["sqlite_tuned"] is True
        for trace in synthetic_traces(20, spans=5, seed=3):
            feed(store, trace)
        await store.flush()
    assert sqlite3.connect(tmp_path / "t.db").execute(
        "SELECT count(*) FROM spans").fetchone()[0] == 100


async def test_the_writer_process_collector_does_not_walk_every_batch(tmp_path: Path) -> None:
    """40,000 span rows unpickled and written: at the default threshold (700 net
    allocations) that set off dozens of collector passes in the writer process."""
    store = TraceStore(tmp_path / "g.db", writer="process", flush_interval=0.05)
    store.retention_days = 0  # (the synthetic traces are from 2023: none pruned meanwhile)
    async with store:
        for trace in synthetic_traces(2_000, spans=20, seed=4):
            feed(store, trace)
        assert await store.flush(timeout=60)
        assert store._supervisor.stats["written"] >= 40_000
        passes = store._supervisor.stats["gc_collections"]
    assert passes is not None and passes < 5, passes
    assert sqlite3.connect(tmp_path / "g.db").execute(
        "SELECT count(*) FROM spans").fetchone()[0] == 40_000


async def test_a_writer_thread_leaves_the_host_collector_alone(tmp_path: Path) -> None:
    import gc

    before = gc.get_threshold()
    async with TraceStore(tmp_path / "h.db", writer="thread") as store:
        for trace in synthetic_traces(20, spans=5, seed=3):
            feed(store, trace)
        assert await store.flush()
        assert store._supervisor.stats["gc_collections"] is None  # not the writer's to report
    assert gc.get_threshold() == before
