"""The database file: recognise it, create or migrate it, recover what a dead process left.

Nothing here runs per batch. :func:`prepare_database` runs once when a store opens (in a
worker thread of the host); :func:`stored_totals` rebuilds a trace's totals from its
stored spans, for the crash recovery here and for a writer that has to finish a trace
it did not see begin (``botrace.store.writer``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from botrace.schema import APPLICATION_ID, MIGRATIONS, SCHEMA, SCHEMA_VERSION
from botrace.store import chunks as E
from botrace.store.chunks import latest_spans
from botrace.store.folding import (
    CACHED,
    COST,
    ERRORS,
    INPUT,
    LLM,
    MODELS,
    OUTPUT,
    PLUGINS,
    SPANS,
    TOOL_CALLS,
    entry_totals,
    tag_pairs,
)
from botrace.store.jsontext import encode
from botrace.store.rollup import repair_coarse

__all__ = ["PAGE_SIZE", "StoreError", "inspect_read_only", "prepare_database", "stored_totals"]

PAGE_SIZE = 16_384  # new databases only
INSERT_CHUNK = "INSERT INTO span_chunks (trace_start_ns, trace_id, spans) VALUES (?, ?, ?)"


class StoreError(Exception):
    """The database cannot be opened or used (corrupt, foreign, newer version, missing)."""


def _inspect(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version; StoreError when it is not ours."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a readable SQLite database ({exc}); "
            "it was left untouched - move it away or point trace_db_path elsewhere"
        ) from None
    if tables == 0 and app_id == 0:
        return 0
    if app_id != APPLICATION_ID:
        raise StoreError(
            f"{path} is a SQLite database of another application "
            f"(application_id={app_id:#x}); it was left untouched"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this botrace "
            f"understands ({SCHEMA_VERSION}); upgrade botrace"
        )
    return version


def inspect_read_only(path: Path) -> int:
    """The schema version of an existing, current botrace database (``botrace serve``)."""
    if not path.exists():
        raise StoreError(f"{path} does not exist")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = _inspect(conn, path)
    finally:
        conn.close()
    if version == 0:
        raise StoreError(f"{path} is an empty database, not a botrace store")
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}; open it once read-write "
            f"(any botrace command but serve) to migrate it to {SCHEMA_VERSION}"
        )
    return version


def prepare_database(path: Path, busy_timeout_ms: int = 2_000) -> tuple[int, int]:
    """Create or migrate the database and recover interrupted traces.

    Returns ``(schema_version, traces_recovered)``; a foreign or corrupt file raises
    :class:`StoreError` and stays byte-for-byte as it was.
    """
    if path.exists() and path.stat().st_size > 0:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            _inspect(probe, path)
        finally:
            probe.close()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        version = _inspect(conn, path)
        if version == 0:
            # bigger pages than SQLite's 4 KiB: fewer b-tree pages touched per appended
            # row (-0.4 us a span in bench_store); fixed once the file has tables
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _statements(SCHEMA):
                conn.execute(stmt)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("PRAGMA user_version = 1")
            conn.execute("COMMIT")
            version = 1
        else:
            conn.execute("PRAGMA journal_mode = WAL")
        while version < SCHEMA_VERSION:
            script, step = MIGRATIONS[version]
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _statements(script):
                    conn.execute(stmt)
                if step is not None:
                    step(conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            version += 1
        repair_coarse(conn)  # a writer that died with hour / day rows not written yet
        return version, _recover_interrupted(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    finally:
        conn.close()


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def stored_spans(conn: sqlite3.Connection, start: int, tid: str) -> list[list]:
    """A trace's stored spans, each its latest version (``botrace.store.chunks``)."""
    return latest_spans(r[0] for r in conn.execute(
        "SELECT spans FROM span_chunks WHERE trace_start_ns = ? AND trace_id = ? "
        "ORDER BY rowid", (start, tid)))


def stored_totals(conn: sqlite3.Connection, start: int, tid: str) -> list:
    """A trace's totals (``folding.new_totals``) from the spans stored for it."""
    return entry_totals(stored_spans(conn, start, tid))


def _recover_interrupted(conn: sqlite3.Connection) -> int:
    """Traces left ``running`` by a process that died: mark them (and their running
    spans) ``interrupted`` and rebuild their totals and tags from the spans kept."""
    found = conn.execute("SELECT trace_id, start_ns FROM traces WHERE status = 'running'").fetchall()
    if not found:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for tid, start in found:
            spans = stored_spans(conn, start, tid)
            cut = [[*e[:E.STATUS], "interrupted", *e[E.STATUS + 1:]] for e in spans
                   if e[E.STATUS] == "running"]
            if cut:  # their latest version, after the running one
                conn.execute(INSERT_CHUNK, (start, tid, encode(cut)))
            ends = [e[E.END] for e in spans if e[E.END] is not None]
            end = max(ends) if ends else None
            acc = entry_totals(spans)
            conn.execute(
                """UPDATE traces SET status = 'interrupted', span_count = ?, input_tokens = ?,
                          output_tokens = ?, cached_tokens = ?, llm_calls = ?, tool_calls = ?,
                          error_count = ?, cost_usd = ?, end_ns = ?,
                          duration_ns = CASE WHEN ? IS NULL THEN NULL ELSE ? - start_ns END,
                          plugins = ?, models = ?
                   WHERE trace_id = ?""",
                (acc[SPANS], acc[INPUT], acc[OUTPUT], acc[CACHED], acc[LLM], acc[TOOL_CALLS],
                 acc[ERRORS], acc[COST], end, end, end, json.dumps(list(acc[PLUGINS])),
                 json.dumps(list(acc[MODELS])), tid),
            )
            pairs = tag_pairs(acc)
            conn.executemany("INSERT OR IGNORE INTO tag_values (kind, value) VALUES (?, ?)", pairs)
            conn.executemany(
                "INSERT OR IGNORE INTO trace_tags (tag, start_ns, trace_id) "
                "SELECT tag, ?, ? FROM tag_values WHERE kind = ? AND value = ?",
                [(start, tid, kind, value) for kind, value in pairs])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(found)
