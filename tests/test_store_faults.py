"""Store faults: the host keeps going, losses are counted, the store recovers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from storeutil import count, feed_all, locked_by_another_process, wait_for

from botrace import Tracer
from botrace.store import TraceStore
from botrace.store.synthetic import feed, synthetic_traces


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_disk_full_counts_losses_and_recovers_when_space_returns(tmp_path: Path,
                                                                       writer) -> None:
    db = tmp_path / "full.db"
    store = TraceStore(db, queue_max=3_000, block_timeout=0.0, max_backoff=0.1, spill_max_mb=0,
                       flush_interval=0.0, writer=writer)
    store.retention_days = 0
    await store.open()
    feed_all(store, synthetic_traces(5, seed=1))
    assert await store.flush(timeout=10)
    ((pages,),) = await store._writer_exec("PRAGMA page_count")
    await store._writer_exec(f"PRAGMA max_page_count = {pages + 2}")  # the "disk" is now full

    # the dispatcher thread keeps handing rows over without waiting on the disk
    await asyncio.to_thread(feed_all, store, list(synthetic_traces(400, seed=2)))
    await wait_for(lambda: store.write_errors > 0)
    health = store.health()
    assert health["state"] == "degraded"
    assert "full" in health["last_error"]
    assert health["dropped"] > 0  # more than the queue holds arrived during the fault
    assert health["queue_depth"] <= store.queue_max * 1.25

    await store._writer_exec("PRAGMA max_page_count = 1073741823")  # space is back
    assert await store.flush(timeout=20)
    written_traces = count(db, "SELECT count(*) FROM traces")
    assert written_traces > 5
    # nothing accepted-but-unwritten is left, and every loss is in the counters
    assert store.health()["queue_depth"] == 0
    feed_all(store, synthetic_traces(3, seed=3))
    assert await store.flush(timeout=10)
    assert count(db, "SELECT count(*) FROM traces") == written_traces + 3
    await store.close()



async def test_database_locked_by_another_process_delays_writes_without_loss(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    store = TraceStore(db, busy_timeout_ms=50, max_backoff=0.1, flush_interval=0.0)
    await store.open()
    with locked_by_another_process(db):
        traces = list(synthetic_traces(50))
        await asyncio.to_thread(feed_all, store, traces)
        await wait_for(lambda: store.write_errors > 0)
        assert "locked" in store.health()["last_error"]
        assert not await store.flush(timeout=0.2)  # held back, not lost
    assert await store.flush(timeout=10)
    assert count(db, "SELECT count(*) FROM traces") == 50
    assert count(db, "SELECT count(*) FROM spans") == 50 * 20
    assert store.dropped == 0
    await store.close()


async def test_database_deleted_while_running_is_recreated(tmp_path: Path) -> None:
    db = tmp_path / "gone.db"
    store = TraceStore(db, flush_interval=0.0)
    await store.open()
    feed_all(store, synthetic_traces(10, seed=1))
    assert await store.flush(timeout=10)
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)

    later = list(synthetic_traces(7, seed=2))
    feed_all(store, later)
    assert await store.flush(timeout=10)
    assert db.exists()
    assert store.health()["reopened"] == 1
    assert "recreating" in store.health()["last_error"]
    page = await store.list_traces()  # the readers follow the new file
    assert {t["trace_id"] for t in page["traces"]} == {t.trace_id for t in later}
    await store.close()
    assert count(db, "SELECT count(*) FROM spans") == 7 * 20


async def test_host_keeps_tracing_while_the_store_cannot_write(tmp_path: Path) -> None:
    db = tmp_path / "host.db"
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    store = TraceStore(db, tracer.settings, max_backoff=0.1, flush_interval=0.0)
    tracer.register(store, name="store")
    await tracer.start()
    ((pages,),) = await store._writer_exec("PRAGMA page_count")
    await store._writer_exec(f"PRAGMA max_page_count = {pages}")
    for i in range(50):  # the host's messages, each a small tree
        with tracer.start_trace("message", {"user_id": f"u{i}"}):
            with tracer.span("Process", "pipeline_stage"):
                with tracer.span("llm", "llm_call") as llm:
                    llm.set_usage(input_tokens=10, output_tokens=2)
                    llm.set_input(prompt=f"{i} " + "x" * 3000)  # more than the free pages hold
        await asyncio.sleep(0)
    assert await tracer.aflush()
    await wait_for(lambda: store.write_errors > 0)
    health = tracer.health()
    assert health["sink_errors"] == {}  # nothing reached the dispatcher as an exception
    await store._writer_exec("PRAGMA max_page_count = 1073741823")
    assert await store.flush(timeout=20)
    assert count(db, "SELECT count(*) FROM traces") == 50
    assert count(db, "SELECT count(*) FROM spans") == 150
    await tracer.aclose()


@pytest.mark.parametrize("started", [False, True])
async def test_a_full_queue_applies_backpressure_then_counts_drops(tmp_path: Path, started) -> None:
    db = tmp_path / "queue.db"
    store = TraceStore(db, queue_max=500, block_timeout=0.01, max_backoff=0.1, spill_max_mb=0)
    await store.open()
    await store._writer_exec("PRAGMA max_page_count = 1")  # nothing can be written
    traces = list(synthetic_traces(100, spans=20))
    await asyncio.to_thread(lambda: [feed(store, t, started=started) for t in traces])
    health = store.health()
    assert health["dropped"] > 0
    assert health["queue_depth"] <= 500 * 1.25
    await store._writer_exec("PRAGMA max_page_count = 1073741823")
    assert await store.flush(timeout=20)
    await store.close()
    assert store.accepted >= store.written


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_a_burst_beyond_the_queue_spills_to_disk_and_loses_nothing(tmp_path: Path,
                                                                         writer) -> None:
    db = tmp_path / "burst.db"
    store = TraceStore(db, queue_max=400, block_timeout=0.0, flush_interval=0.0, writer=writer)
    store.retention_days = 0
    await store.open()
    traces = list(synthetic_traces(300, spans=20))  # 6,000 span rows, 15x the queue
    await asyncio.to_thread(feed_all, store, traces)
    assert store.spilled > 0
    assert await store.flush(timeout=30)
    health = store.health()
    assert health["dropped"] == 0 and health["spill_queue"] == 0
    await store.close()
    assert count(db, "SELECT count(*) FROM traces WHERE status != 'running'") == 300
    assert count(db, "SELECT count(*) FROM spans") == 300 * 20
    assert not list(tmp_path.glob("*.spill*"))
    # spilled records came back in order: every trace has its totals and all its spans
    assert count(db, "SELECT count(*) FROM traces WHERE span_count = 20") == 300
    assert count(db, "SELECT sum(n) FROM stats_rollup WHERE grain = 60000000000") == 300 * 20
    # totals folded on either side (feeder, or writer for spilled spans) add up per trace
    assert count(db, "SELECT count(*) FROM traces t WHERE input_tokens + output_tokens != "
                     "(SELECT sum(input_tokens + output_tokens) FROM spans s "
                     " WHERE s.trace_id = t.trace_id)") == 0
    assert count(db, "SELECT sum(input_tokens) FROM traces") > 0


async def test_a_dead_writer_is_logged_and_restarted_and_what_was_queued_is_written(
        tmp_path: Path, caplog) -> None:
    db = tmp_path / "dead.db"
    store = TraceStore(db, flush_interval=30.0)  # what is fed waits in the queue
    store.retention_days = 0
    await store.open()
    feed_all(store, synthetic_traces(3, seed=1))
    assert await store.flush(timeout=10)
    feed_all(store, synthetic_traces(5, seed=2))
    assert store.health()["queue_depth"] > 0
    with caplog.at_level("ERROR", logger="botrace.store"):
        os.kill(store.writer_pid, signal.SIGKILL)
        await wait_for(lambda: store.health()["writer_restarts"] == 1)
        await wait_for(lambda: any("writer died" in r.getMessage() for r in caplog.records))
    health = store.health()
    assert health["state"] == "degraded" and "SIGKILL" in health["reason"]
    accepted = store.accepted
    feed_all(store, synthetic_traces(2, seed=3))  # the hooks go on
    assert store.accepted == accepted + 2 * 22
    assert await store.flush(timeout=20)
    assert store.dropped == 0
    await store.close()
    assert count(db, "SELECT count(*) FROM traces") == 10


def test_a_spill_file_left_by_a_dead_process_is_written_at_the_next_open(tmp_path: Path) -> None:
    db = tmp_path / "left.db"
    script = f"""
import asyncio, os
from botrace.store import TraceStore
from botrace.store.synthetic import feed, synthetic_traces
async def main():
    store = TraceStore({str(db)!r}, queue_max=200, block_timeout=0.0, flush_interval=5.0)
    store.retention_days = 0
    await store.open()
    for t in synthetic_traces(50, spans=20):
        feed(store, t)
    store._intake.spill_file.flush()
    print(store.spilled, flush=True)
    os._exit(1)
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert int(out.stdout.split()[0]) > 0
    assert (tmp_path / "left.db.spill").exists()

    async def reopen() -> None:
        store = TraceStore(db)
        store.retention_days = 0  # the synthetic traces are from 2023: keep them
        async with store:
            assert await store.flush(timeout=20)
            assert store.health()["spill_queue"] == 0

    asyncio.run(reopen())
    assert count(db, "SELECT count(*) FROM spans") > 0
    # trace records spill in order with their spans: whole traces come back
    assert count(db, "SELECT count(*) FROM traces WHERE status = 'ok' AND span_count = 20") > 0
    assert not (tmp_path / "left.db.spill").exists()
