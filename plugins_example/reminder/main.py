"""Reminder: LLM tools that store reminders in SQLite.

What it shows a plugin author:

* Blocking IO (``sqlite3``) runs in a worker thread with ``asyncio.to_thread``;
  the current span travels with it, so the ``@span_record`` spans of the
  database functions nest under the tool call that caused them.
* ``record_output=False`` keeps rows out of the trace when they are not
  worth recording.

The database lives in the plugin's data directory (``context.plugin_data_dir``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from botrace import span_record
from botrace_host_adapter.refhost.api import MessageEvent, Star, filter, register

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reminders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    umo TEXT NOT NULL,
    text TEXT NOT NULL,
    due_at REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reminders_umo ON reminders (umo, due_at);
"""


class ReminderDB:
    """A tiny SQLite store; every method is synchronous and runs in a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._conn.executescript("PRAGMA journal_mode=WAL;" + _SCHEMA)

    @span_record("plugin.reminder.insert", span_type="io_call")
    def add(self, umo: str, text: str, due_at: float) -> int:
        with self._lock, self._conn:
            cur = self._conn.execute(
                "INSERT INTO reminders (umo, text, due_at, created_at) VALUES (?, ?, ?, ?)",
                (umo, text, due_at, time.time()))
            return int(cur.lastrowid)

    @span_record("plugin.reminder.query", span_type="io_call", record_output=False)
    def upcoming(self, umo: str, limit: int = 10) -> list[tuple[int, str, float]]:
        with self._lock:
            return self._conn.execute(
                "SELECT id, text, due_at FROM reminders WHERE umo = ? AND due_at >= ? "
                "ORDER BY due_at LIMIT ?", (umo, time.time(), limit)).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _when(due_at: float) -> str:
    return time.strftime("%H:%M", time.localtime(due_at))


@register("reminder", "botrace", "Reminders the assistant can set and list", "0.9.1",
          display_name="Reminders")
class ReminderPlugin(Star):
    async def initialize(self) -> None:
        path = self.context.plugin_data_dir("reminder") / "reminders.db"
        self.db = await asyncio.to_thread(ReminderDB, path)

    async def terminate(self) -> None:
        await asyncio.to_thread(self.db.close)

    @filter.llm_tool(name="create_reminder")
    async def create_reminder(self, event: MessageEvent, text: str, in_minutes: int) -> str:
        """Remind the user of something later.

        Args:
            text(string): what to remind the user of
            in_minutes(integer): how many minutes from now
        """
        due = time.time() + int(in_minutes) * 60
        rid = await asyncio.to_thread(self.db.add, event.umo, text, due)
        return f"Reminder #{rid} set for {_when(due)}: {text}"

    @filter.llm_tool(name="list_reminders")
    async def list_reminders(self, event: MessageEvent) -> str:
        """List the user's upcoming reminders."""
        rows = await asyncio.to_thread(self.db.upcoming, event.umo)
        if not rows:
            return "No upcoming reminders."
        return "; ".join(f"#{rid} at {_when(due)}: {text}" for rid, text, due in rows)

    @filter.command("reminders")
    async def reminders_command(self, event: MessageEvent):
        """/reminders — list upcoming reminders."""
        yield event.plain_result(await self.list_reminders(event))
