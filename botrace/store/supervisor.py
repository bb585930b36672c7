"""Who starts the store's writer, notices when it dies, and starts it again.

At open the supervisor starts a writer process (``trace_store_writer = "process"``),
or a writer thread when that is asked for or a process cannot start
(``botrace.store.links``). A writer should only end when the store closes. When it
ends otherwise (its process killed, a fault it does not survive) the link says so at
once, and the supervisor:

1. takes the link away from the feeder, which keeps queueing (the intake now bounds what
   it keeps in memory by ``fault_queue_max`` and spills the rest, counted);
2. fails the requests (``exec``, ``prune``) the dead writer had not answered;
3. waits a growing pause (0.1 s, then doubling, up to ``max_backoff``) and starts a new
   writer; after ``max_deaths`` deaths of writer processes within ``death_window``
   seconds it starts a writer thread instead, and after as many deaths of writer threads
   it stops the store for good (everything queued, and everything that arrives later,
   counted as dropped);
4. finds out which of the messages the dead writer had not confirmed it wrote all the
   same (it commits, then confirms: a death in between leaves a batch written and not
   confirmed) by looking for each batch's first span chunk in the database, confirms
   those itself, and sends the others again, in order, before anything new; a
   ``close`` sent to the dead writer is sent again too.

The new writer is told it *resumes*: it leaves spill files to the host, which hands
them over again in order, and rebuilds the statistics' hour and day rows the dead one
had not written. It adds up trace totals from what it sees; a trace that began before
it ends with its totals counted from its stored spans (``botrace.store.writer``), so no
trace is left with the totals of half its spans.

Counters that the writer keeps (``written``, ``dropped``, ``write_errors``, ...) start
again at zero in a new writer; :meth:`Supervisor.stat` adds those of the writers that
died.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botrace.store.feeder import Feeder
from botrace.store.intake import Intake
from botrace.store.links import START_ERRORS, ProcessLink, ThreadLink

__all__ = ["Supervisor"]

log = logging.getLogger("botrace.store")

# writer counters that add up across writers (the others describe the live one)
_SUMMED = ("written", "write_errors", "pruned_traces", "reopened", "dropped", "late_spans")


class Supervisor:
    """Starts, watches and restarts the store's writer; routes its messages."""

    def __init__(self, cfg: dict[str, Any], mode: str, intake: Intake, feeder: Feeder,
                 note_error: Callable[[str, BaseException | None], None], *,
                 max_deaths: int = 3, death_window: float = 600.0,
                 max_backoff: float = 5.0) -> None:
        self.cfg = cfg
        self.mode = mode
        self.q = intake
        self.feeder = feeder
        self.note_error = note_error
        self.max_deaths = max_deaths
        self.death_window = death_window
        self.max_backoff = max_backoff
        self.link: Any = None
        self.stats: dict[str, Any] = {}  # the live writer's latest counters
        self.base: dict[str, int] = dict.fromkeys(_SUMMED, 0)  # the dead writers' counters
        self.deaths: deque[tuple[float, str]] = deque()  # (monotonic time, mode)
        self.restarts = 0
        self.down: str | None = None  # why there is no writer now (restarting)
        self.stopped: str | None = None  # why the store stopped for good
        self.closed = threading.Event()  # the writer closed (or the store stopped)
        self.replies: dict[int, tuple[Any, Any]] = {}  # seq -> (future, progress callback)
        self.loop: Any = None
        self._last_log = 0.0
        self._logged_ns: int | None = None
        self._restarter: threading.Thread | None = None
        self._retired: Any = None  # the link of a store that stopped, to close

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the first writer (a blocking call: run it in a worker thread)."""
        link = None
        if self.mode == "process":
            try:
                link = ProcessLink(self.cfg, self.on_message, self.on_lost)
            except START_ERRORS as exc:
                self.note_error("writer process did not start; writing from a thread", exc)
                log.warning("botrace store: writer process did not start (%s); using a thread",
                            exc)
                self.mode = "thread"
        if link is None:
            link = ThreadLink(self.cfg, self.on_message, self.on_lost)  # StoreError if not
        self._attach(link)

    def _attach(self, link: Any, expected: Any = None) -> None:
        """Make ``link`` the feeder's, if the store's link is still ``expected``. A writer
        that died before its link was the store's went unnoticed (see :meth:`on_lost`):
        its death is handled now."""
        feeder = self.feeder
        with feeder.send_lock:
            if self.link is not expected:
                return  # (it died meanwhile, and its death was handled)
            feeder.mode = link.kind
            self.link = feeder.link = link
        self.down = None
        self._fault_from_stats()
        with feeder.cond:
            feeder.cond.notify_all()
        if link.lost is not None:
            self.on_lost(link, link.lost)

    def shutdown(self, timeout: float = 10.0) -> None:
        """After close: let the writer (process) end, close the link (blocking)."""
        with self.feeder.send_lock:
            link = self.link or self._retired
            self.link = self.feeder.link = self._retired = None
        if link is not None:
            link.close(timeout)
        thread = self._restarter
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def pid(self) -> int | None:
        """The writer process's id (None for a thread, or while there is no writer)."""
        return getattr(self.link, "pid", None)

    def stat(self, key: str, default: Any = 0) -> Any:
        """A writer counter: the live writer's, plus the dead ones' for a count."""
        value = self.stats.get(key, default)
        if key in self.base:
            value = (value or 0) + self.base[key]
        return value

    # ------------------------------------------------------------------ messages

    def on_message(self, msg: tuple) -> None:
        """A message from the writer (its link's receiving thread, or the writer thread)."""
        kind = msg[0]
        if kind == "ack":
            _, seq, upto, rows, what, stats = msg
            self._set_stats(stats)
            self.feeder.on_ack(seq, upto, rows, what)
        elif kind in ("status", "ready"):
            self._set_stats(msg[1])
        elif kind == "reply":
            _, seq, result, error = msg
            self.resolve(seq, result, error)
        elif kind == "progress":
            entry = self.replies.get(msg[1])
            if entry is not None and entry[1] is not None:
                self.loop.call_soon_threadsafe(entry[1], msg[2])
        elif kind == "closed":
            self._set_stats(msg[1])
            self.closed.set()

    def _set_stats(self, stats: dict[str, Any]) -> None:
        before = self.stats.get("retrying")
        self.stats = stats
        if stats.get("retrying") != before:
            self._fault_from_stats()
        ns = stats.get("last_error_ns")
        if ns and ns != self._logged_ns and time.monotonic() - self._last_log > 10.0:
            self._logged_ns = ns
            self._last_log = time.monotonic()  # rate-limited: one line per 10 s
            log.warning("botrace store (%s): %s", self.cfg["path"], stats.get("last_error"))

    def _fault_from_stats(self) -> None:
        """Tell the intake whether the writer can take records now."""
        if self.down:
            reason = self.down
        elif self.stats.get("retrying"):
            reason = f"writes failing: {self.stats.get('last_error')}"
        else:
            reason = None
        self.q.set_fault(reason)

    def request(self, kind: str, args: tuple, progress: Any = None) -> Any:
        """Send ``(kind, seq, *args)`` ahead of queued batches; a future for its reply."""
        fut = self.loop.create_future()
        with self.feeder.cond:
            seq = self.feeder.next_seq_locked()
            self.replies[seq] = (fut, progress)
            self.feeder.control.append((kind, seq, *args))
            self.feeder.cond.notify_all()
        return fut

    def resolve(self, seq: int, result: Any, error: str | None) -> None:
        entry = self.replies.pop(seq, None)
        if entry is None:
            return
        fut = entry[0]

        def settle() -> None:
            if fut.done():
                return
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(sqlite3.OperationalError(error))

        self.loop.call_soon_threadsafe(settle)

    def _fail_requests(self, why: str, unsent_too: bool = False) -> None:
        """Fail the requests sent to a writer that died; those not sent yet wait for the
        next one (unless ``unsent_too``: the store stopped)."""
        with self.feeder.cond:
            if unsent_too:
                self.feeder.control = []
            unsent = {msg[1] for msg in self.feeder.control}
        for seq in list(self.replies):
            if seq not in unsent:
                self.resolve(seq, None, why)

    # ------------------------------------------------------------------ death and restart

    def on_lost(self, link: Any, why: str) -> None:
        """The writer behind ``link`` ended without being asked to (or after ``closed``)."""
        feeder = self.feeder
        with feeder.send_lock:
            if link is not self.link:  # an old link, or one being started
                return
            self.link = feeder.link = None
        if self.closed.is_set():  # it had closed as asked: nothing lost
            return
        now = time.monotonic()
        self.deaths.append((now, link.kind))
        for key in _SUMMED:
            self.base[key] += self.stats.get(key, 0) or 0
        self.stats = {k: v for k, v in self.stats.items() if k not in _SUMMED}
        self.down = f"writer died ({why}); restarting it"
        self._fault_from_stats()
        self.note_error(f"writer died ({why}); restarting it", None)
        log.error("botrace store writer died (%s); restarting it", why)
        self._fail_requests(f"the writer died ({why})")
        self._restarter = threading.Thread(target=self._restart, args=(why,),
                                           name="botrace-store-restart", daemon=True)
        self._restarter.start()

    def _recent(self, mode: str) -> int:
        cutoff = time.monotonic() - self.death_window
        while self.deaths and self.deaths[0][0] < cutoff:
            self.deaths.popleft()
        return sum(1 for _, m in list(self.deaths) if m == mode)  # (a copy: see on_lost)

    def _restart(self, why: str) -> None:
        """Start writers until one runs, then hand it what the dead one had not confirmed."""
        while True:
            if self.mode == "process" and self._recent("process") >= self.max_deaths:
                self.mode = "thread"
                self.note_error(f"the writer process died {self.max_deaths} times; "
                                "writing from a thread now", None)
                log.error("botrace store: the writer process died %d times in %g s; "
                          "writing from a thread now", self.max_deaths, self.death_window)
            deaths = self._recent(self.mode)
            if self.mode == "thread" and deaths >= self.max_deaths:
                self.give_up(f"the writer died {len(self.deaths)} times (last: {why})")
                return
            time.sleep(min(self.max_backoff, 0.1 * 2 ** max(0, deaths - 1)))
            try:
                link = (ProcessLink if self.mode == "process" else ThreadLink)(
                    {**self.cfg, "resume": True}, self.on_message, self.on_lost)
            except START_ERRORS as exc:
                self.note_error(f"restarting the writer ({self.mode}) failed", exc)
                log.error("botrace store: restarting the writer (%s) failed: %s", self.mode, exc)
                if self.mode == "process":
                    self.mode = "thread"
                else:
                    self.deaths.append((time.monotonic(), "thread"))
                continue
            self._replay(link, why)
            self.restarts += 1
            return

    def _replay(self, link: Any, why: str) -> None:
        """Confirm what the dead writer wrote, send the rest again, then let the feeder on."""
        feeder = self.feeder
        with feeder.send_lock:
            self.link = link  # (so that its death, even now, is noticed)
        entries = list(feeder.unacked)
        written = self._written_prefix(entries)
        with feeder.send_lock:
            if self.link is not link:  # it died already: the next restart does this
                return
            for entry in entries[:written]:
                feeder.on_ack(entry.seq, entry.upto, entry.n, entry.kind)
                if entry.kind == "batch":
                    self.base["written"] += entry.n
            try:
                for entry in entries[written:]:
                    link.send(entry.packed)
                if feeder.close_sent:
                    link.send(feeder.pack(("close", 0)))
            except OSError:  # dead already: its death sends them again
                pass
        self.note_error(f"writer restarted ({link.kind}) after it died ({why}); "
                        f"{len(entries) - written} messages sent again, {written} found written",
                        None)
        log.warning("botrace store: writer restarted (%s); %d messages sent again, %d found "
                    "written", link.kind, len(entries) - written, written)
        self._attach(link, expected=link)

    def _written_prefix(self, entries: list) -> int:
        """How many of ``entries`` (in the order sent) the dead writer had committed: the
        last one whose first span chunk is in the database, and all before it."""
        probes = [(i, e.probe) for i, e in enumerate(entries) if e.probe is not None]
        if not probes:
            return 0
        path = Path(self.cfg["path"])
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
            try:
                for i, (start, tid, text) in reversed(probes):
                    if conn.execute("SELECT 1 FROM span_chunks WHERE trace_start_ns = ? AND "
                                    "trace_id = ? AND spans = ? LIMIT 1",
                                    (start, tid, text)).fetchone():
                        return i + 1
            finally:
                conn.close()
        except sqlite3.Error as exc:  # then all are sent again: some may be written twice
            self.note_error("could not tell what the dead writer had written", exc)
        return 0

    def give_up(self, why: str) -> None:
        """Stop the store for good: what is queued and what arrives later is counted as
        dropped; flush() and close() return at once."""
        feeder = self.feeder
        with feeder.send_lock:
            link = self.link
            self.link = feeder.link = None
            if link is not None and not feeder.close_sent:
                try:  # the writer writes what it has and ends
                    link.send(feeder.pack(("close", 0)))
                    feeder.close_sent = True
                except OSError:  # (gone too: close() stops it)
                    pass
            self.stopped = why
            with feeder.cond:
                feeder.stopped = True
                feeder.unacked.clear()
                lost = self.q.stop_locked()
        self.down = None
        self.note_error(f"store stopped ({why}); {lost} records lost, and every record "
                        "that arrives from now on is counted as dropped", None)
        log.error("botrace store stopped (%s); %d records lost", why, lost)
        self._fail_requests(f"the store stopped ({why})", unsent_too=True)
        self._retired = link
        self.closed.set()
