"""Live-ish updates for the read-only viewer (``botrace serve --db``).

There is no tracer in that process, so no sink hooks: instead a task reads
the store every few seconds and publishes the traces that appeared or
finished since the last look on the same live hub. The page cannot tell the
difference, except that traces arrive whole (no span-by-span growth).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from webui.livehub import LiveHub

__all__ = ["StorePoller"]

log = logging.getLogger("botrace.webui.poller")


class StorePoller:
    """Publish ``trace_started`` / ``trace_finished`` for what another process writes."""

    def __init__(self, store: Any, hub: LiveHub, *, interval_s: float = 2.0,
                 window_s: float = 600.0, page: int = 200) -> None:
        self.store = store
        self.hub = hub
        self.interval_s = interval_s
        self.window_ns = int(window_s * 1e9)
        self.page = page
        self._seen: dict[str, str] = {}  # trace_id -> last status published (recent window only)
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
        for summary in reversed(page["traces"]):  # oldest first, as they happened
            tid, status = summary["trace_id"], summary["status"]
            current[tid] = status
            before = self._seen.get(tid)
            if not publish or before == status:
                continue
            if before is None:
                self._publish("trace_started", summary)
                published += 1
            if status != "running":
                self._publish("trace_finished", summary)
                published += 1
        self._seen = current
        return published

    def _publish(self, kind: str, summary: dict[str, Any]) -> None:
        self.hub.publish(kind, summary, summary["trace_id"], summary.get("umo"),
                         summary.get("plugins") or () if kind == "trace_finished" else ())
