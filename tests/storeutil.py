"""Test helpers shared by the store tests: read a database file, open a store fed with traces."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from botrace.store import TraceStore
from botrace.store.synthetic import feed


def rows(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """What ``sql`` reads from the database file, through a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def count(path: Path, sql: str) -> int:
    return rows(path, sql)[0][0]


@asynccontextmanager
async def fed_store(path: Path, settings: Any, traces: Iterable) -> AsyncIterator[TraceStore]:
    """An open store that has written ``traces`` (fed through its sink hooks)."""
    store = TraceStore(path, settings, flush_interval=0.0)
    await store.open()
    try:
        for trace in traces:
            feed(store, trace)
        assert await store.flush(timeout=30)
        yield store
    finally:
        await store.close()
