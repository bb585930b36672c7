"""The log exporter: JSON lines to a rotating file, and one summary line per trace.

Each finished span becomes a line ``{"type": "span", ...Span.to_dict()}``, each
finished trace a line ``{"type": "trace", ...Trace.to_dict()}``; the file is
rotated at ``trace_log_max_mb`` keeping ``trace_log_backups`` old files. With
``trace_log_summary`` one human-readable line per trace also goes to the
``botrace.trace`` logger::

    trace 4bf9…2a7c 812.4ms ok umo=webchat:FriendMessage:alice spans=31 llm=2 tools=3
      tokens=1520/212 phases: WakingCheck=0.1ms Process=790.2ms Respond=12.0ms

Runs on the dispatcher thread: a slow disk delays other sinks, never the host.
Write errors (full disk, permissions) are counted and logged rate-limited by
the dispatcher; the exporter reopens the file on the next event.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import IO, Any

from botrace.hookspecs import hookimpl
from botrace.span import Span, SpanType, Trace

__all__ = ["LogExporter", "summary_line"]

summary_log = logging.getLogger("botrace.trace")


def summary_line(trace: Trace) -> str:
    """The one-line account of a finished trace: duration, phases, calls, tokens."""
    info = trace.to_dict()
    duration_ms = (info["duration_ns"] or 0) / 1e6
    phases = " ".join(
        f"{s.name}={(s.duration_ns or 0) / 1e6:.1f}ms"
        for s in trace.spans if s.span_type == SpanType.PIPELINE_STAGE
    )
    parts = [
        f"trace {info['trace_id']} {duration_ms:.1f}ms {info['status']}",
        f"umo={info['umo']}" if info.get("umo") else "",
        f"spans={info['span_count']} llm={info['llm_calls']} tools={info['tool_calls']}",
        f"tokens={info['input_tokens']}/{info['output_tokens']}",
        f"phases: {phases}" if phases else "",
        f"dropped={info['dropped_spans']}" if info["dropped_spans"] else "",
    ]
    return " ".join(p for p in parts if p)


class LogExporter:
    """Sink: JSON lines (spans and traces) to a size-rotated file, plus summary log lines."""

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 20 * 1024 * 1024,
                 backups: int = 3, summary: bool = True) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.summary = summary
        self.lines_written = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self._failing = False  # the last write failed
        self._file: IO[str] | None = None
        self._size = 0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> LogExporter:
        return cls(settings.trace_log_path, max_bytes=settings.trace_log_max_mb * 1024 * 1024,
                   backups=settings.trace_log_backups, summary=settings.trace_log_summary)

    @hookimpl
    def botrace_span_finished(self, span: Span) -> None:
        self._write({"type": "span", **span.to_dict()})

    @hookimpl
    def botrace_trace_finished(self, trace: Trace) -> None:
        self._write({"type": "trace", **trace.to_dict()})
        if self.summary:
            summary_log.info(summary_line(trace))

    @hookimpl
    def botrace_shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    @hookimpl
    def botrace_health(self) -> dict[str, Any]:
        """Counts, and ``state`` ``degraded`` while writing fails (until a write succeeds)."""
        out = {"name": "log_exporter", "state": "degraded" if self._failing else "ok",
               "path": str(self.path), "lines_written": self.lines_written,
               "write_errors": self.write_errors, "last_error": self.last_error}
        if self._failing:
            out["reason"] = f"writing {self.path} fails: {self.last_error}"
        return out

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                    self._size = self._file.tell()
                if self._size + len(line) > self.max_bytes and self._size > 0:
                    self._rotate()
                self._file.write(line)
                self._file.flush()
                self._size += len(line.encode("utf-8"))
                self.lines_written += 1
                self._failing = False
            except OSError as exc:
                self.write_errors += 1
                self._failing = True
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self._file is not None:
                    try:
                        self._file.close()
                    except OSError:
                        pass
                    self._file = None
                raise

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._size = 0
