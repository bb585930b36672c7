"""Reliability figures (docs/RELIABILITY.md): the reference host under load, crashes and faults.

Each scenario sends 1,000 messages over 200 sessions (20 at a time) through the reference
host with the example plugins and the scripted provider, traced into the SQLite store,
and then compares what the tracer recorded with what the store holds and what it counted
as lost::

    /work/venv/bin/python bench/reliability.py                    # every scenario, ~3 min
    /work/venv/bin/python bench/reliability.py --only kill-writer --messages 300

Scenarios: ``load`` (nothing wrong), ``kill-writer`` (kill -9 of the store's writer
process after a third and after two thirds of the messages), ``kill-host`` (kill -9 of
the host process after half of them; the store is opened again afterwards),
``full-disk`` (the database on a 2 MB tmpfs that fills up; it is made bigger after 60 %
of the messages; needs root), ``slow-sink`` (a sink that takes 2 s a trace; the tracer is
closed with ``aclose(timeout=10)``), ``raising-sink`` (a sink that raises on every span).

Per scenario: messages answered, traces the tracer recorded, traces stored complete (as
many spans as the tracer recorded, same status), partial, missing; spans missing; what
was counted (the store's ``dropped`` records, events counted as undelivered to the store,
the tracer's dropped events); and **uncounted** = spans missing beyond what was counted,
which must be 0. A host killed with -9 takes its counters with it: for ``kill-host`` the
figures are what the next open finds (traces marked ``interrupted``) and what the killed
process had answered.

The script also runs against the code before the hardening (it falls back to the old
names), which is how the "before" column of docs/RELIABILITY.md was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from botrace.hookspecs import hookimpl
from botrace.store import TraceStore
from botrace_host_adapter.refhost.event import MessageEvent
from botrace_host_adapter.refhost.host import RefHost
from botrace_host_adapter.refhost.testing import TEST_CONFIG
from botrace_host_adapter.refhost.tracing import connect

MIX = (
    "what's the weather in Paris, London, Tokyo and Oslo?",
    "can you search for asyncio context variables?",
    "what's the weather in Lima, Cairo, Austin and Berlin?",
    "search for sqlite wal mode",
)


class Recorder:
    """Keeps every trace the tracer finished (the reference the store is checked against)."""

    def __init__(self) -> None:
        self.traces: dict[str, Any] = {}

    @hookimpl
    def botrace_trace_finished(self, trace) -> None:
        self.traces[trace.trace_id] = trace


class SlowSink:
    """A sink that takes ``seconds`` for each trace (an exporter posting to a slow server)."""

    def __init__(self, seconds: float = 2.0) -> None:
        self.seconds = seconds
        self.received = 0

    @hookimpl
    def botrace_trace_finished(self, trace) -> None:
        time.sleep(self.seconds)
        self.received += 1


class RaisingSink:
    @hookimpl
    def botrace_span_finished(self, span) -> None:
        raise OSError("this sink always fails")


def writer_pid(store: TraceStore) -> int:
    pid = getattr(store, "writer_pid", None)
    return pid if pid is not None else store._proc.pid  # (the store before issue 17)


async def aclose(tracer: Any, timeout: float) -> None:
    try:
        await tracer.aclose(timeout=timeout)
    except TypeError:  # (the tracer before issue 17 had no timeout)
        await tracer.aclose()


async def open_host(data: Path, store_kw: dict, sinks: list) -> tuple:
    host = RefHost.from_config_file(data / "refhost_config.json", **{
        **TEST_CONFIG, "trace_db_path": str(data / "botrace.db")})
    host.provider.latency_ms = 5
    host.provider.ttft_ms = 2
    await host.start()
    store = TraceStore(str(data / "botrace.db"), **store_kw)
    store.retention_days = 0
    await store.open()
    recorder = Recorder()
    tracer = await connect(host, install=False)
    tracer.register(store, name="store")
    for sink in sinks:
        tracer.register(sink, name=type(sink).__name__)
    tracer.register(recorder, name="recorder")
    return host, tracer, store, recorder


async def send_all(host: RefHost, messages: int, sessions: int, concurrency: int,
                   after: Callable[[int, MessageEvent], Any] | None = None) -> int:
    """Send the messages, ``concurrency`` at a time; ``after(n, event)`` once ``n`` are
    answered, ``event`` the last."""
    gate = asyncio.Semaphore(concurrency)
    answered = 0

    async def one(i: int) -> None:
        nonlocal answered
        ev = MessageEvent.create(MIX[i % len(MIX)], user_id=f"user{i % sessions}",
                                 session_id=f"s{i % sessions}", platform="bench")
        async with gate:
            await host.handle_event(ev)
        answered += 1
        if after is not None:
            result = after(answered, ev)
            if asyncio.iscoroutine(result):
                await result

    await asyncio.gather(*(one(i) for i in range(messages)))
    return answered


def compare(db: Path, recorded: dict[str, Any]) -> dict[str, int]:
    """Stored against recorded: complete, partial and missing traces, spans missing."""
    conn = sqlite3.connect(db)
    try:
        stored = {tid: (status, n, dropped) for tid, status, n, dropped in conn.execute(
            "SELECT trace_id, status, span_count, dropped_spans FROM traces")}
        spans = dict(conn.execute("SELECT trace_id, count(*) FROM spans GROUP BY trace_id"))
    finally:
        conn.close()
    out = {"recorded": len(recorded), "complete": 0, "partial": 0,
           "partial_saying_what_they_lack": 0, "partial_without_end": 0, "missing": 0,
           "spans_recorded": 0,
           "spans_missing": 0, "stored_traces": len(stored)}
    for tid, trace in recorded.items():
        want = len(trace.spans)
        out["spans_recorded"] += want
        got = spans.get(tid, 0)
        out["spans_missing"] += max(0, want - got)
        row = stored.get(tid)
        if row is None:
            out["missing"] += 1
        elif row[:2] == (trace.status, want) and got == want:
            out["complete"] += 1
        else:
            out["partial"] += 1
            if row[0] == "running":  # its end record was lost (counted in `dropped`)
                out["partial_without_end"] += 1
            elif row[2] and got + row[2] >= want:
                out["partial_saying_what_they_lack"] += 1
    return out


def counted(health: dict, tracer_health: dict) -> dict[str, int]:
    return {"store_dropped": health["dropped"],
            "store_undelivered": tracer_health.get("sink_undelivered", {}).get("store", 0),
            "tracer_dropped_events": tracer_health.get("dropped_events", 0)}


def row(name: str, answered: int, cmp: dict, cnt: dict, **notes: Any) -> dict:
    count_all = sum(cnt.values())
    return {"scenario": name, "answered": answered, **cmp, **cnt,
            "uncounted": max(0, cmp["spans_missing"] - count_all), **notes}


async def finish(host: RefHost, tracer: Any, store: TraceStore, timeout: float = 10.0
                 ) -> tuple[dict, dict]:
    await tracer.aflush()
    await store.flush(timeout=60)
    health = store.health()
    started = time.monotonic()
    host.attach_tracer(None)
    await aclose(tracer, timeout)
    health["close_s"] = round(time.monotonic() - started, 2)
    th = tracer.health()
    await host.stop()
    return health, th


# ---------------------------------------------------------------------------- scenarios

async def s_load(data: Path, a: argparse.Namespace) -> dict:
    host, tracer, store, rec = await open_host(data, {}, [])
    t0 = time.monotonic()
    answered = await send_all(host, a.messages, a.sessions, a.concurrency)
    took = time.monotonic() - t0
    health, th = await finish(host, tracer, store)
    return row("load", answered, compare(data / "botrace.db", rec.traces), counted(health, th),
               seconds=round(took, 1), state=health["state"])


async def s_kill_writer(data: Path, a: argparse.Namespace) -> dict:
    host, tracer, store, rec = await open_host(data, {}, [])
    kills = {a.messages // 3, 2 * a.messages // 3}
    noticed: list[float] = []

    async def after(n: int, ev: MessageEvent) -> None:
        if n in kills:
            t0 = time.monotonic()  # (a writer restarted after the last kill, if any)
            while getattr(store, "writer_pid", 0) is None and time.monotonic() - t0 < 10:
                await asyncio.sleep(0.01)
            os.kill(writer_pid(store), signal.SIGKILL)
            t0 = time.monotonic()
            while store.health()["state"] != "degraded" and time.monotonic() - t0 < 5:
                await asyncio.sleep(0.001)
            noticed.append(time.monotonic() - t0)

    answered = await send_all(host, a.messages, a.sessions, a.concurrency, after)
    health, th = await finish(host, tracer, store)
    return row("kill-writer", answered, compare(data / "botrace.db", rec.traces),
               counted(health, th), writer_restarts=health.get("writer_restarts", 0),
               writer=health["writer"], noticed_ms=[round(x * 1000, 1) for x in noticed])


_CHILD = """
import asyncio, sys
sys.path.insert(0, {root!r})
from pathlib import Path
import reliability as r

async def main():
    data = Path(sys.argv[1])
    host, tracer, store, rec = await r.open_host(data, {{}}, [])
    def after(n, ev):
        print("answered", n, ev.extras.get("trace_id"), flush=True)
    await r.send_all(host, int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), after)
    print("all", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


async def s_kill_host(data: Path, a: argparse.Namespace) -> dict:
    """The host in a process of its own, killed with -9 after half the messages."""
    child = _CHILD.format(root=str(Path(__file__).resolve().parent))
    proc = subprocess.Popen([sys.executable, "-c", child, str(data), str(a.messages),
                             str(a.sessions), str(a.concurrency)],
                            stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).parent))
    answered: list[str] = []
    for line in proc.stdout:
        if line.startswith("answered"):
            answered.append(line.split()[2])
            if len(answered) >= a.messages // 2:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(30)
    # the writer process sees its host's end of the socket close: it writes what it
    # received and ends; the next open marks what was running "interrupted"
    time.sleep(1.0)
    store = TraceStore(str(data / "botrace.db"))
    store.retention_days = 0
    async with store:
        recovered = store.health()["recovered_traces"]
    conn = sqlite3.connect(data / "botrace.db")
    status = dict(conn.execute("SELECT trace_id, status FROM traces"))
    spans = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
    conn.close()
    of_answered = [status.get(tid, "missing") for tid in answered]
    by_status: dict[str, int] = {}
    for st in status.values():
        by_status[st] = by_status.get(st, 0) + 1
    return {"scenario": "kill-host", "answered_before_kill": len(answered),
            "answered_stored": {st: of_answered.count(st) for st in sorted(set(of_answered))},
            "stored_traces": len(status), "by_status": by_status,
            "recovered_as_interrupted": recovered, "spans_stored": spans}


async def s_full_disk(data: Path, a: argparse.Namespace) -> dict:
    disk = data / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return {"scenario": "full-disk", "skipped": "needs root (mount -t tmpfs)"}
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        host, tracer, store, rec = await open_host(disk, {}, [])
        grow_at = int(a.messages * 0.6)
        seen: dict[str, Any] = {"deepest": 0, "reason": None, "dropped_while_full": 0}

        def after(n: int, ev: MessageEvent) -> None:
            h = store.health()
            seen["deepest"] = max(seen["deepest"], h["queue_depth"])
            if h["state"] == "degraded" and seen["reason"] is None and h["write_errors"]:
                seen["reason"] = h.get("reason") or h.get("last_error")
            if n == grow_at:
                seen["dropped_while_full"] = h["dropped"]
                seen["write_errors"] = h["write_errors"]
                subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)

        answered = await send_all(host, a.messages, a.sessions, a.concurrency, after)
        health, th = await finish(host, tracer, store)
        result = row("full-disk", answered, compare(disk / "botrace.db", rec.traces),
                     counted(health, th), **seen)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    return result


async def s_slow_sink(data: Path, a: argparse.Namespace) -> dict:
    slow = SlowSink(2.0)
    host, tracer, store, rec = await open_host(data, {}, [slow])
    answered = await send_all(host, a.messages, a.sessions, a.concurrency)
    await asyncio.sleep(0.5)  # (the dispatcher's last pass; the store then writes them)
    await store.flush(timeout=30)
    health = store.health()
    started = time.monotonic()
    host.attach_tracer(None)
    await aclose(tracer, 10.0)
    close_s = time.monotonic() - started
    await asyncio.sleep(2.5)  # the call the slow sink is in ends; the rest is counted
    th = tracer.health()
    await host.stop()
    return row("slow-sink", answered, compare(data / "botrace.db", rec.traces),
               counted(health, th), aclose_s=round(close_s, 2),
               slow_received=slow.received,
               slow_undelivered=th.get("sink_undelivered", {}).get("SlowSink", 0))


async def s_raising_sink(data: Path, a: argparse.Namespace) -> dict:
    raising = RaisingSink()
    host, tracer, store, rec = await open_host(data, {}, [raising])
    answered = await send_all(host, a.messages, a.sessions, a.concurrency)
    health, th = await finish(host, tracer, store)
    return row("raising-sink", answered, compare(data / "botrace.db", rec.traces),
               counted(health, th), sink_errors=th.get("sink_errors", {}))


SCENARIOS = {"load": s_load, "kill-writer": s_kill_writer, "kill-host": s_kill_host,
             "full-disk": s_full_disk, "slow-sink": s_slow_sink, "raising-sink": s_raising_sink}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=1_000)
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--only", action="append", choices=list(SCENARIOS))
    a = p.parse_args()
    bad = 0
    for name in a.only or list(SCENARIOS):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.monotonic()
            result = asyncio.run(SCENARIOS[name](Path(tmp), a))
            result["wall_s"] = round(time.monotonic() - t0, 1)
        print(json.dumps(result), flush=True)
        bad += bool(result.get("uncounted"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
