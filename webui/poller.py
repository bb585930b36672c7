"""Live-ish updates for the read-only viewer (``botrace serve --db``).

There is no tracer in that process, so no sink hooks: instead a task reads
the store every few seconds and publishes on the same live hub what changed
since the last look: traces that appeared or finished, and the spans of the
traces still running (the writing store keeps their spans on disk, running
ones as ``running`` rows), so a running trace grows span by span, one poll
interval behind the host.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from botrace_webui.livehub import LiveHub

__all__ = ["StorePoller"]

log = logging.getLogger("botrace.webui.poller")


class StorePoller:
    """Publish ``trace_started`` / ``trace_finished`` for what another process writes."""

    def __init__(self, store: Any, hub: LiveHub, *, interval_s: float = 2.0,
                 window_s: float = 600.0, page: int = 200, watch: int = 50) -> None:
        self.store = store
        self.hub = hub
        self.interval_s = interval_s
        self.window_ns = int(window_s * 1e9)
        self.page = page
        self.watch = watch
        self._seen: dict[str, str] = {}  # trace_id -> last status published (recent window only)
        self._spans: dict[str, dict[str, str]] = {}  # running trace -> span_id -> status seen
        self._task: asyncio.Task | None = None
        self.errors = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="botrace-webui-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        await self.poll(publish=False)  # what is there already is not news
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # a locked or rotated file: try again next time, say so once in a while
                self.errors += 1
                if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
                    log.warning("botrace: reading the store for live updates failed (%d times)",
                                self.errors, exc_info=True)

    async def poll(self, *, publish: bool = True) -> int:
        """One look at the store; returns how many events were published."""
        since = time.time_ns() - self.window_ns
        page = await self.store.list_traces(filters={"since_ns": since}, limit=self.page)
        published = 0
        current: dict[str, str] = {}
        # the spans of the newest `watch` traces running (or just finished) are read
        watched = [t["trace_id"] for t in page["traces"]  # (newest first)
                   if t["status"] == "running" or self._seen.get(t["trace_id"]) == "running"]
        watched = set(watched[:self.watch])
        for summary in reversed(page["traces"]):  # oldest first, as they happened
            tid, status = summary["trace_id"], summary["status"]
            current[tid] = status
            before = self._seen.get(tid)
            if publish and before is None:
                self._publish("trace_started", summary)
                published += 1
            if tid in watched:
                # running, or finished since the last look: its spans that are new or
                # finished since then (a trace first seen finished is loaded whole)
                published += await self._span_news(tid, summary.get("umo"), publish)
            if publish and status != "running" and before != status:
                self._publish("trace_finished", summary)
                published += 1
        self._seen = current
        for tid in [t for t in self._spans if current.get(t) != "running"]:
            del self._spans[tid]
        return published

    async def _span_news(self, trace_id: str, umo: str | None, publish: bool) -> int:
        doc = await self.store.get_trace(trace_id, flat=True)
        if doc is None:  # pruned in between
            return 0
        seen = self._spans.setdefault(trace_id, {})
        published = 0
        for span in doc["spans"]:  # in start order: parents before their children
            sid, status = span["span_id"], span["status"]
            before = seen.get(sid)
            seen[sid] = status
            if not publish or before == status or (before is not None and status == "running"):
                continue
            kind = "span_started" if status == "running" else "span_finished"
            plugin = span.get("plugin") or {}
            self.hub.publish(kind, span, trace_id, umo,
                             (plugin["name"],) if plugin.get("name") else ())
            published += 1
        return published

    def _publish(self, kind: str, summary: dict[str, Any]) -> None:
        self.hub.publish(kind, summary, summary["trace_id"], summary.get("umo"),
                         summary.get("plugins") or () if kind == "trace_finished" else ())
