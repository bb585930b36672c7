"""Test helpers shared by the store tests: read a database file, open a store fed with traces."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
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


_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


@contextmanager
def locked_by_another_process(path: Path) -> Iterator[None]:
    """The database file held under an exclusive lock by another process until the block
    ends (what a second program, or a backup tool, does to a store)."""
    locker = subprocess.Popen([sys.executable, "-c", _LOCKER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        yield
    finally:
        locker.stdin.write("\n")
        locker.stdin.flush()
        locker.wait(timeout=10)


async def wait_for(predicate, timeout: float = 20.0) -> None:
    """Until ``predicate()`` holds (polled every 20 ms); an AssertionError after ``timeout``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def feed_all(store: TraceStore, traces: Iterable) -> None:
    """Hand ``traces`` to the store's sink hooks, as a tracer's dispatcher would."""
    for trace in traces:
        feed(store, trace)
