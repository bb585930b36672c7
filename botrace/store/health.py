"""The store's health: its last fault, and the dict ``TraceStore.health()`` returns.

A store is ``degraded`` while something costs or may cost records: its writer is being
restarted or stopped for good, its writes fail (full disk, locked database), its queue is
full, or it hit any other fault in the last minute. ``reason`` says which, in words.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botrace.store import TraceStore

__all__ = ["ErrorLog", "store_health"]

_RECENT_NS = 60_000_000_000  # a fault this recent still makes the store degraded
_LOG_EVERY = 10.0  # s between two log lines of the store's faults


class ErrorLog:
    """The store's last fault, for its health, logged at most once per ``_LOG_EVERY``."""

    def __init__(self, logger: logging.Logger, path: Any) -> None:
        self.logger = logger
        self.path = path
        self.last: str | None = None
        self.last_ns: int | None = None
        self._logged = 0.0

    def note(self, what: str, exc: BaseException | None = None) -> None:
        text = what if exc is None else f"{what}: {type(exc).__name__}: {exc}"
        self.last = text
        self.last_ns = time.time_ns()
        now = time.monotonic()
        if now - self._logged > _LOG_EVERY:
            self._logged = now
            self.logger.warning("botrace store (%s): %s", self.path, text)


def _state(store: TraceStore, last_error: str | None, last_error_ns: int | None
           ) -> tuple[str, str | None]:
    if not store._opened:
        return "closed", None
    if store.read_only:
        return "read_only", None
    sup = store._supervisor
    q = store._intake
    if sup is not None and sup.stopped:
        reason = f"store stopped: {sup.stopped}"
    elif sup is not None and sup.down:
        reason = sup.down
    elif sup is not None and sup.stats.get("retrying"):
        reason = f"writes failing: {sup.stats.get('last_error')}"
    elif q.pending >= q.limit:
        reason = f"queue full ({q.pending} records waiting)"
    elif last_error_ns and time.time_ns() - last_error_ns < _RECENT_NS:
        reason = f"recent fault: {last_error}"
    else:
        return "ok", None
    return "degraded", reason


def store_health(store: TraceStore) -> dict[str, Any]:
    """Counters for the web page and ``tracer.health()`` (cheap, sync): see
    docs/QUERY_API.md, "Health"."""
    try:
        db_bytes = store.path.stat().st_size
        wal = store.path.with_name(store.path.name + "-wal")
        if wal.exists():
            db_bytes += wal.stat().st_size
    except OSError:
        db_bytes = 0
    sup = store._supervisor
    q = store._intake
    w = sup.stats if sup is not None else {}
    last_error, last_error_ns = store._errors.last, store._errors.last_ns
    if w.get("last_error_ns") and (last_error_ns is None or w["last_error_ns"] > last_error_ns):
        last_error, last_error_ns = w["last_error"], w["last_error_ns"]
    state, reason = _state(store, last_error, last_error_ns)
    return {
        "state": state,
        "reason": reason,
        "db_path": str(store.path),
        "db_bytes": db_bytes,
        "writer": store.writer_mode,
        "writer_restarts": sup.restarts if sup is not None else 0,
        "queue_depth": q.pending,
        "queue_max": store.queue_max,
        "accepted": q.accepted,
        "backpressure_waits": q.backpressure_waits,
        "written": store.written,
        "dropped": store.dropped,
        "spilled": q.spilled,
        "spill_queue": q.spill_pending + q.spill_inflight + w.get("spill_queue", 0),
        "write_errors": store.write_errors,
        "last_error": last_error,
        "last_error_ns": last_error_ns,
        "late_spans": sup.stat("late_spans") if sup is not None else 0,
        "pruned_traces": store.pruned_traces,
        "recovered_traces": store.recovered_traces,
        "reopened": store.reopened,
        "schema_version": w.get("schema_version") or store._schema_version,
        # the writer's current commit interval: longer while it is busy
        "commit_interval_ms": round(w.get("commit_interval", 0.1) * 1000),
    }
