"""Tail-based sampling: which traces reach the sinks, decided when a trace's root ends.

A busy bot may not want every message stored. With ``trace_sample_rate`` below 1 a
trace is recorded as always (spans built in memory on the message's path) but its
events are held on the trace (:class:`HeldTrace`) instead of going onto the tracer's
queue. When its root span ends, :class:`SampleRule` decides:

1. a trace with a span in ``error`` is kept (``kept_error``);
2. one that took ``trace_keep_slower_than_ms`` or longer is kept (``kept_slow``);
3. one whose ``user_id`` is in ``trace_sample_keep_users``, or whose ``session_id`` or
   ``umo`` is in ``trace_sample_keep_sessions``, is kept (``kept_forced``);
4. of the rest, a share of ``trace_sample_rate`` is kept (``kept_rate``), chosen by the
   trace id's random bits: the same id always gets the same answer (as OpenTelemetry's
   ``TraceIdRatioBased`` sampler does), so a decision can be reproduced.

A kept trace's held events go onto the tracer's queue at once, in the order they
happened, and the sinks see it as if it had never been held (its spans' starts are
announced then: a sampled trace appears in the live view when its message is done, not
while it runs). A trace not kept is dropped whole (``sampled_out``): no sink sees any of
its spans. A span that ends after the root follows the decision (kept: queued as a late
span; dropped: nothing). A kept trace that finds the tracer's queue full is dropped and
counted (``dropped_full``, and the dispatcher's ``dropped_events``), as a new span is then.

With ``trace_sample_rate`` 1 (the default) there is no rule: the tracer makes plain
:class:`~botrace.span.Trace` objects and nothing here runs. Changing the settings live
takes effect for traces that end from then on (a trace held under a rate below 1 and
ending after a switch to 1 is kept).

Memory: a held trace holds one event tuple per finished span (the tuple a trace at rate
1 puts on the queue), on the trace itself, so at most ``trace_max_spans`` + 2 per trace;
a trace whose root never ends holds them for as long as the host holds the trace, and
they go with it (``pending`` counts the held traces not decided yet, abandoned ones
included).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from botrace.span import TRACE_FINISHED, Status, Trace

if TYPE_CHECKING:
    from botrace.config import Settings
    from botrace.limits import Limits
    from botrace.tracer import Tracer

__all__ = ["REASONS", "HeldTrace", "SampleRule", "SamplingStats"]

#: why a trace was kept, in the order the rule asks
REASONS = ("error", "slow", "forced", "rate")
_ERROR = Status.ERROR
_status = attrgetter("status")
_SCALE = 1 << 56  # the trace id's last 14 hex digits (56 random bits) as a fraction of this


class SampleRule:
    """The rule of one set of settings (see the module's doc). Immutable."""

    __slots__ = ("cut", "rate", "sessions", "slow_ns", "users")

    def __init__(self, rate: float, slower_than_ms: int = 0, users: tuple[str, ...] = (),
                 sessions: tuple[str, ...] = ()) -> None:
        self.rate = rate
        self.cut = int(rate * _SCALE)  # keep when the id's random bits are below it
        self.slow_ns = slower_than_ms * 1_000_000 if slower_than_ms > 0 else 0
        self.users = frozenset(users)
        self.sessions = frozenset(sessions)

    @classmethod
    def from_settings(cls, settings: Settings) -> SampleRule | None:
        """The rule, or None when every trace is kept (rate 1: nothing is held)."""
        if settings.trace_sample_rate >= 1.0:
            return None
        return cls(settings.trace_sample_rate, settings.trace_keep_slower_than_ms,
                   settings.trace_sample_keep_users, settings.trace_sample_keep_sessions)

    def keeps_id(self, trace_id: str) -> bool:
        """Whether the rate keeps this trace id (the same answer every time)."""
        try:
            return int(trace_id[-14:], 16) < self.cut
        except ValueError:  # (not hex: ids are made by botrace, but be total)
            digest = hashlib.blake2b(trace_id.encode("utf-8", "replace"), digest_size=7).digest()
            return int.from_bytes(digest, "big") < self.cut

    def decide(self, trace: Trace, failed: bool | None = None) -> str | None:
        """Why ``trace`` (its root ended) is kept, one of :data:`REASONS`, or None to drop it.

        ``failed``: whether a span of it failed, when known (a :class:`HeldTrace` is told
        as it happens); None: its spans are looked at.
        """
        if failed or (failed is None and _ERROR in map(_status, trace.spans)):
            return "error"
        end_ns = trace.end_ns
        if self.slow_ns and end_ns is not None and end_ns - trace.start_ns >= self.slow_ns:
            return "slow"
        users, sessions = self.users, self.sessions
        if users or sessions:
            attributes = trace.attributes
            for wanted, key in ((users, "user_id"), (sessions, "session_id"), (sessions, "umo")):
                value = attributes.get(key) if wanted else None
                if value is not None and (value if type(value) is str else str(value)) in wanted:
                    return "forced"
        return "rate" if self.keeps_id(trace.trace_id) else None


class SamplingStats:
    """What the sampler did, for the tracer's health (``sampling``)."""

    __slots__ = ("dropped_full", "held", "kept", "sampled_out")

    def __init__(self) -> None:
        self.held = 0  # traces started under a rule
        self.kept = dict.fromkeys(REASONS, 0)
        self.sampled_out = 0
        self.dropped_full = 0  # kept, but the tracer's queue was full

    def health(self, rule: SampleRule | None) -> dict[str, Any]:
        kept = dict(self.kept)
        decided = sum(kept.values()) + self.sampled_out + self.dropped_full
        return {
            "rate": 1.0 if rule is None else rule.rate,
            "keep_slower_than_ms": 0 if rule is None else rule.slow_ns // 1_000_000,
            "sampled_out": self.sampled_out,
            **{f"kept_{reason}": n for reason, n in kept.items()},
            "dropped_full": self.dropped_full,
            "pending": max(0, self.held - decided),
        }


def _discard(event: Any) -> None:
    """Where a dropped trace's late events go."""


class HeldTrace(Trace):
    """A trace whose events wait on it until its root ends, then go to the sinks or nowhere.

    The tracer makes one instead of a :class:`~botrace.span.Trace` while a sampling rule
    is in force. Span starts are bounded by the tracer's queue as usual (``_queue`` is
    that queue); only the appends go to the trace's own list until the decision.
    """

    __slots__ = ("_held", "failed", "sample_reason", "sampled")

    def __init__(self, tracer: Tracer, name: str, attributes: Mapping[str, Any] | None,
                 limits: Limits, queue: deque, queue_max: int) -> None:
        held: list[tuple[int, Any]] = []
        self._held = held
        self.sampled: bool | None = None  # None until the root ends
        self.sample_reason: str | None = None
        self.failed = False  # a span of it failed (set_error, an exception escaping it)
        Trace.__init__(self, tracer, name, attributes, limits, held, queue_max)  # type: ignore[arg-type]
        self._queue = queue  # (span starts: bounded by the tracer's queue, as always)

    def _failed(self) -> None:
        self.failed = True

    def _finished(self, end_ns: int) -> None:
        self.end_ns = end_ns
        held = self._held
        held.append((TRACE_FINISHED, self))
        tracer = self.tracer
        stats = tracer._sampling
        rule = tracer._sample_rule
        try:
            reason = "rate" if rule is None else rule.decide(self, self.failed)
        except Exception:  # (a span's status is only ever set by botrace; be total anyway)
            tracer._dispatcher.faults("sampling", "botrace: the sampling decision failed; "
                                      "the trace is kept", exc_info=True)
            reason = "error"
        if reason is None:
            self.sampled = False
            self._append = _discard
            held.clear()
            stats.sampled_out += 1
            return
        queue = self._queue
        if len(queue) >= self._queue_max:
            self.sampled = False
            self._append = _discard
            held.clear()
            stats.dropped_full += 1
            tracer._queue_full()
            return
        self.sampled = True
        self.sample_reason = reason
        stats.kept[reason] += 1
        queue.extend(held)
        done = len(held)
        self._append = queue.append
        if len(held) > done:  # (a span of another thread ended meanwhile)
            queue.extend(held[done:])
        held.clear()
