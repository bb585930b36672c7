"""Spill files: the records an overloaded (or faulted) store could not keep in memory.

A spill file sits next to the database (``<db>.spill``) and holds frames of pickled
records, appended in the tracer's order by the host (``botrace.store.intake``). When it
is handed to the writer it is renamed ``<db>.spill.<pid>-<n>.draining``; the writer folds
and writes it ``spill_chunk`` records per transaction and deletes it. After each
committed transaction the writer notes how many of its records are written in a small
*progress* file beside it, so a writer restarted after a crash goes on where the dead
one stopped instead of writing the first chunks twice.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

__all__ = ["clear_progress", "leftover_spills", "read_progress", "read_spill",
           "write_progress", "write_spill_frame"]


def write_spill_frame(file: Any, records: list[tuple]) -> int:
    """Append one frame of ``records``; returns the bytes written."""
    blob = pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
    file.write(len(blob).to_bytes(4, "little") + blob)
    return len(blob) + 4


def read_spill(path: Path) -> list[tuple]:
    """The records of a spill file; a frame cut short (a process killed mid-write, a
    disk that filled up) ends it."""
    records: list[tuple] = []
    with open(path, "rb") as f:
        while True:
            head = f.read(4)
            if len(head) < 4:
                return records
            size = int.from_bytes(head, "little")
            blob = f.read(size)
            if len(blob) < size:
                return records
            try:
                records.extend(pickle.loads(blob))  # our own file, written by a botrace store
            except (pickle.UnpicklingError, EOFError, ValueError):
                return records


def leftover_spills(spill_path: Path) -> list[Path]:
    """Spill files a previous process left: handed-off ones first (oldest first)."""
    found = [p for p in spill_path.parent.glob(spill_path.name + ".*.draining")]
    old = spill_path.with_name(spill_path.name + ".draining")  # an older botrace's name
    if old.exists():
        found.append(old)
    found.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    if spill_path.exists():
        found.append(spill_path)
    return found


def _progress_path(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def read_progress(path: Path) -> int:
    """How many records of the spill file ``path`` are already written (0 if none)."""
    try:
        return int(_progress_path(path).read_text() or 0)
    except (OSError, ValueError):
        return 0


def write_progress(path: Path, done: int) -> None:
    """Note that the first ``done`` records of ``path`` are written (after a commit).

    A full disk may refuse it: the records are written all the same, and a restarted
    writer would write that chunk again, which is why the caller counts the failure."""
    tmp = _progress_path(path).with_suffix(".tmp")
    tmp.write_text(str(done))
    os.replace(tmp, _progress_path(path))


def clear_progress(path: Path) -> None:
    _progress_path(path).unlink(missing_ok=True)
