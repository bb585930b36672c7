"""The feeder thread: takes what the hooks queued, folds it, sends it to the writer in order.

Every ``flush_interval`` (at once past ``BIG_BATCH`` records, or when a host flushes or
closes) the feeder takes the queued batch from the intake (``botrace.store.intake``),
adds a "running" record for each span of an open trace that is still running, folds it
(``botrace.store.folding``: JSON, self time, cost, per-trace totals, minute
statistics), packs it for the writer (pickled for a writer process) and sends it over
the link the supervisor (``botrace.store.supervisor``) keeps. Batches are packed as soon
as they are taken: a backlog waits as bytes, not as tuples the garbage collector would
walk.

At most ``inflight_cap`` records are sent and not yet confirmed (``fault_inflight_cap``
while the writer's writes fail: what it cannot write stays here, where the intake bounds
it). Every message sent stays in :attr:`Feeder.unacked` until the writer confirms it, so
that when the writer dies the supervisor can send it again to the next one.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections import deque
from typing import Any

from botrace.store.folding import SpanFolder
from botrace.store.intake import BIG_BATCH, Intake

__all__ = ["Feeder", "Sent"]

log = logging.getLogger("botrace.store")


class Sent:
    """A message for the writer, kept until it confirms it: ``kind`` is ``batch``,
    ``spill`` or ``close``; ``n`` its records; ``probe`` the first span chunk of a batch,
    ``(trace_start_ns, trace_id, text)``, by which the supervisor tells whether a writer
    that died had written it."""

    __slots__ = ("kind", "n", "packed", "probe", "seq", "upto")

    def __init__(self, seq: int, kind: str, n: int, upto: int, packed: Any,
                 probe: tuple | None = None) -> None:
        self.seq = seq
        self.kind = kind
        self.n = n
        self.upto = upto
        self.packed = packed
        self.probe = probe


class Feeder:
    """State shared with the store's API (flush, requests, close) lives here, guarded by
    the intake's ``cond``; ``link`` and ``unacked`` change under ``send_lock`` (taken
    before ``cond`` when both are needed)."""

    def __init__(self, intake: Intake, folder: SpanFolder, *, flush_interval: float,
                 inflight_cap: int, fault_inflight_cap: int) -> None:
        self.q = intake
        self.cond = intake.cond
        self.folder = folder
        self.flush_interval = flush_interval
        self.inflight_cap = inflight_cap
        self.fault_inflight_cap = min(inflight_cap, fault_inflight_cap)
        self.send_lock = threading.Lock()
        self.link: Any = None  # the writer's link; None while there is none (restarting)
        self.mode = "process"  # how messages are packed: for the writer to come
        self.unacked: deque[Sent] = deque()
        self.control: list[tuple] = []  # requests (exec, prune), sent ahead of batches
        self.flush_wanted = False
        self.takes = 0  # batches taken (flush waits for one after its call)
        self.take_accepted = 0  # records accepted when the last one was taken
        self.gather_until: float | None = None
        self.seq = 0
        self.acked_upto = 0
        self.closing = False
        self.close_queued = False
        self.close_sent = False
        self.stopped = False  # the store stopped for good: the thread ends
        self.on_failure: Any = None  # called with a reason if the thread fails (a bug)

    # ------------------------------------------------------------------ the thread

    def run(self) -> None:
        """The thread's body; should it ever fail (a bug: records cannot make it fail),
        the store stops for good, so that flush() and close() return."""
        try:
            self._feed()
        except Exception as exc:
            log.exception("botrace store feeder failed")
            self.on_failure(f"the feeder thread failed: {type(exc).__name__}: {exc}")

    def _feed(self) -> None:
        q = self.q
        cond = self.cond
        outbox: deque[Sent] = deque()  # packed, not sent yet
        while True:
            with cond:
                while True:
                    if self.stopped:
                        return
                    up = self.link is not None
                    if outbox and up and (outbox[0].kind != "batch" or self.closing
                                          or q.inflight < self._cap()):
                        take = False
                        break
                    take = bool((self.control and up) or self.flush_wanted
                                or (self.closing and not self.close_queued)
                                or len(q.buf) >= BIG_BATCH)
                    if take:
                        break
                    if q.buf or q.open or q.spill_file is not None:
                        now = time.monotonic()
                        if self.gather_until is None:
                            self.gather_until = now + self.flush_interval
                        if now >= self.gather_until:
                            take = True
                            break
                        cond.wait(self.gather_until - now)
                    else:
                        # nothing new: wake on the first record, or on an
                        # acknowledgement making room for what waits in the outbox
                        cond.wait(0.05 if outbox else None)
                control: list[tuple] = []
                if up:
                    control, self.control = self.control, []
                batch: list = []
                spill = None
                flush = done = False
                if take:
                    self.gather_until = None
                    flush = self.flush_wanted
                    self.flush_wanted = False
                    batch = q.take_locked()
                    self.takes += 1
                    self.take_accepted = q.accepted
                    # everything accepted so far is in this batch or an earlier one
                    # (flush waits for its acknowledgement), unless some is still listed
                    upto = 0 if q.buf else q.accepted
                    if q.spill_file is not None and not q.buf:
                        spill = q.hand_off_spill_locked(upto)
                    done = (self.closing and not self.close_queued and not q.buf
                            and spill is None and q.spill_file is None)
                    seq = self.next_seq_locked()
                    spill_seq = self.next_seq_locked()
            for msg in control:  # operations go ahead of queued batches
                self._send_control(msg)
            if batch or flush or done:
                folded, n = self._fold(batch)
                probe = folded[1][0][:3] if folded[1] else None
                packed, n = self._pack_batch(("batch", seq, upto, n, folded, flush))
                outbox.append(Sent(seq, "batch", n, upto, packed, probe))
            if spill is not None:
                outbox.append(Sent(spill_seq, "spill", spill[1], spill[2],
                                   self.pack(("spill", spill_seq, *spill))))
            if done:
                outbox.append(Sent(0, "close", 0, 0, self.pack(("close", 0))))
                self.close_queued = True
            self._send_ready(outbox)
            if self.close_sent:
                return

    def _cap(self) -> int:
        return self.fault_inflight_cap if self.q.fault else self.inflight_cap

    def next_seq_locked(self) -> int:
        self.seq += 1
        return self.seq

    def _fold(self, batch: list) -> tuple[tuple, int]:
        """The batch folded (``botrace.store.folding``) and how many records it holds."""
        others, rows, parts, minutes, lost, error = self.folder.fold(batch)
        if lost:
            with self.cond:
                self.q.dropped += lost
                self.q.pending -= lost
                self.q.note_error(f"{lost} span records could not be read or encoded", error)
        return (others, rows, parts, minutes), len(batch) - lost

    # ------------------------------------------------------------------ sending

    def pack(self, msg: tuple) -> Any:
        """A message as the writer to come receives it: pickled for a process."""
        if self.mode != "process":
            return msg
        return pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)

    def _pack_batch(self, msg: tuple) -> tuple[Any, int]:
        """A batch packed, and the records it holds: one that will not pickle loses the
        records that do not (counted) instead of the whole batch. Span rows are plain
        text and numbers: an odd value can only be in a trace's attributes."""
        try:
            return self.pack(msg), msg[3]
        except Exception as exc:
            kind, seq, upto, n, (others, *folded), flush = msg
            good = []
            for rec in others:
                try:
                    pickle.dumps(rec, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:  # (counted below, with the first error)
                    continue
                good.append(rec)
            lost = len(others) - len(good)
            with self.cond:
                self.q.dropped += lost
                self.q.pending -= lost
                self.q.note_error(f"{lost} records could not be pickled; dropped", exc)
            n -= lost
            return self.pack((kind, seq, upto, n, (good, *folded), flush)), n

    def _send_ready(self, outbox: deque[Sent]) -> None:
        """Send what the outbox holds, in order, while the link is up and there is room."""
        q = self.q
        while outbox:
            entry = outbox[0]
            with self.cond:
                if self.stopped:
                    return
                if entry.kind == "batch" and not self.closing and q.inflight >= self._cap():
                    return
            with self.send_lock:
                link = self.link
                if link is None:
                    return
                outbox.popleft()
                if entry.kind == "close":
                    self.close_sent = True
                else:
                    with self.cond:
                        if entry.kind == "batch":
                            q.inflight += entry.n
                        self.unacked.append(entry)
                try:
                    link.send(entry.packed)
                except OSError:  # the writer is gone: the supervisor sends it again
                    return

    def _send_control(self, msg: tuple) -> None:
        with self.send_lock:
            link = self.link
            if link is None:  # (gone since it was taken: it waits for the next writer)
                with self.cond:
                    self.control.insert(0, msg)
                return
            try:
                link.send(self.pack(msg))
            except OSError:  # the writer is gone: its death fails the request
                return

    def on_ack(self, seq: int, upto: int, rows: int, what: str) -> None:
        """The writer confirmed the message ``seq`` (``rows`` records of a batch or spill)."""
        with self.cond:
            unacked = self.unacked
            while unacked and unacked[0].seq <= seq:
                unacked.popleft()
            self.q.acked_locked(rows, what)
            if upto > self.acked_upto:
                self.acked_upto = upto

    # ------------------------------------------------------------------ flush

    def flush_begin(self) -> list:
        """Ask for a batch now; returns the state :meth:`flush_done` reads."""
        with self.cond:
            self.flush_wanted = True
            self.cond.notify_all()
            return [self.takes, self.q.accepted, False]

    def flush_done(self, state: list, writer_spill_queue: int) -> bool:
        """Is everything accepted before :meth:`flush_begin` written? (``state`` is updated:
        once a batch was taken after the call, its running records count too.)"""
        q = self.q
        with self.cond:
            takes, target, taken = state
            if not taken:
                if self.takes == takes:  # the feeder has not taken a batch since
                    state[1] = target = q.accepted
                else:  # it has, with the running records of the open traces
                    state[2] = taken = True
                    state[1] = target = max(target, self.take_accepted)
            if (taken and self.acked_upto >= target and q.spill_file is None
                    and not q.spill_inflight and not writer_spill_queue):
                return True
            if not self.flush_wanted and self.acked_upto < target and not q.buf:
                self.flush_wanted = True
                self.cond.notify_all()
            return False
