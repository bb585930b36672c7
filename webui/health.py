"""The verdict of ``GET /api/v1/health``: ``ok``, or ``degraded`` and the problems that make it so.

The health document gathers the tracer's dispatcher, every sink's ``botrace_health`` entry
(the store, the exporters, a host adapter) and the store. A part is a problem when

1. it says so: its ``state`` is ``degraded`` (a sink, a host adapter missing part of its
   host), the store's is neither ``ok`` nor ``read_only``, or its health could not be read;
2. it is losing data: one of its loss counters (:data:`LOSS_COUNTERS`, and the tracer's
   ``sink_errors`` per sink) grew in the last :data:`WINDOW_S` seconds.

Counters only ever grow, so a drop an hour ago is history, not a problem: what counts is
growth between two looks. :class:`LossWatch` remembers each counter from one call to the
next (the page's health view asks every 5 s, a monitor as often as it likes). At the first
look a nonzero counter counts as grown at the part's ``last_error_ns`` when it has one, at
that look otherwise. Retries, back-pressure waits and spilled rows are not losses (the
data is only late), nor is what the live stream drops for a slow page (that page's loss).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["LOSS_COUNTERS", "WINDOW_S", "LossWatch", "assess"]

#: the counters of lost data a sink or the store may report
LOSS_COUNTERS = ("dropped", "dropped_spans", "dropped_events", "failed_batches",
                 "write_errors", "errors")
#: how long a counter's growth keeps the status degraded
WINDOW_S = 300.0


class LossWatch:
    """Each loss counter's last value, and how much it grew in the window and when last."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_ns = int(window_s * 1e9)
        self._seen: dict[str, tuple[float, float, int | None]] = {}  # value, grown by, at

    def growth(self, key: str, value: Any, now_ns: int, dated_ns: int | None = None) -> float:
        """How much the counter ``key`` grew in the window (0: not lately)."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            return 0
        before = self._seen.get(key)
        if before is None:  # the first look: what is there grew at the last error, or now
            grown, at = (value, dated_ns or now_ns) if value > 0 else (0, None)
        elif value > before[0]:
            recent = before[2] is not None and now_ns - before[2] < self.window_ns
            grown, at = (before[1] if recent else 0) + value - before[0], now_ns
        elif value < before[0]:  # that part started again from zero
            grown, at = 0, None
        else:
            grown, at = before[1], before[2]
        self._seen[key] = (value, grown, at)
        return grown if at is not None and now_ns - at < self.window_ns else 0


def _problem(part: str, text: str) -> dict[str, str]:
    return {"part": part, "problem": text}


def _said_degraded(part: str, entry: Mapping[str, Any]) -> dict[str, str] | None:
    unavailable = entry.get("unavailable")
    if unavailable:
        kinds = ", ".join(str(k) for k in unavailable)
        return _problem(part, f"not traced: {kinds}")
    reason = entry.get("last_error") or "reports that it is degraded"
    return _problem(part, str(reason)[:300])


def _losses(part: str, entry: Mapping[str, Any], watch: LossWatch, now_ns: int) -> Iterable[dict]:
    dated = entry.get("last_error_ns") if isinstance(entry.get("last_error_ns"), int) else None
    for counter in LOSS_COUNTERS:
        grew = watch.growth(f"{part}:{counter}", entry.get(counter), now_ns, dated)
        if grew:
            last = f" (last error: {str(entry['last_error'])[:200]})" if entry.get("last_error") else ""
            yield _problem(part, f"{counter.replace('_', ' ')}: {grew:g} in the last "
                                 f"{watch.window_ns // 60_000_000_000} min{last}")


def assess(doc: Mapping[str, Any], watch: LossWatch, now_ns: int | None = None) -> list[dict[str, str]]:
    """The problems in a health document (empty: healthy). Updates ``watch``."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    problems: list[dict[str, str]] = []
    tracer = doc.get("tracer")
    if isinstance(tracer, Mapping):
        if "error" in tracer:
            problems.append(_problem("tracer", f"its health could not be read: {tracer['error']}"))
        problems += _losses("tracer", tracer, watch, now_ns)
        for name, count in (tracer.get("sink_errors") or {}).items():
            if watch.growth(f"tracer:sink_errors:{name}", count, now_ns):
                problems.append(_problem(str(name), "its hooks raised lately (see the host's log)"))
        for entry in tracer.get("sinks") or ():
            part = str(entry.get("name") or "sink")
            if entry.get("state") == "degraded":
                problems.append(_said_degraded(part, entry))
            problems += _losses(part, entry, watch, now_ns)
    store = doc.get("store")
    if isinstance(store, Mapping):
        if "error" in store:
            problems.append(_problem("store", f"its health could not be read: {store['error']}"))
        elif store.get("state") not in ("ok", "read_only", None):
            problems.append(_said_degraded("store", store) if store.get("state") == "degraded"
                            else _problem("store", f"state {store.get('state')}"))
        problems += _losses("store", store, watch, now_ns)
    unique: list[dict[str, str]] = []  # the store is also among the tracer's sinks
    for p in problems:
        if p not in unique:
            unique.append(p)
    return unique
