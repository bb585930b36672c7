"""Entry point of the store's writer process (``TraceStore`` starts ``python -c`` on
:func:`main`).

Before anything imports :mod:`sqlite3`, this process's SQLite library is configured for
the way the writer uses it. ``sqlite3_config`` works only before the library initialises,
and importing the sqlite3 module initialises it, so this module imports nothing of
botrace's store until that is done:

- ``SQLITE_CONFIG_MEMSTATUS`` off: otherwise every allocation and free inside SQLite
  takes a global mutex to keep memory statistics nobody here reads;
- ``SQLITE_CONFIG_MULTITHREAD``: otherwise every call on a connection takes and
  releases the connection's mutex, and the writer makes ~20 such calls a span (one per
  bound value). It is safe because each connection of this process is used by one
  thread only: the main thread's, and the checkpoint thread's own.

Together they take ~9 % off the writer's CPU (docs/PERFORMANCE.md). Where the library
cannot be found or configured (a Python with SQLite linked in statically, a platform
without ``ctypes``), nothing changes. The host process, which has its own readers and
may run the writer as a thread, is never touched.
"""

from __future__ import annotations

import sys

_SQLITE_OK = 0
_SQLITE_CONFIG_MULTITHREAD = 2
_SQLITE_CONFIG_MEMSTATUS = 9


def tune_sqlite() -> bool:
    """Configure SQLite for a process whose connections each stay on one thread.
    True when both settings were taken (call it before ``import sqlite3``)."""
    if "_sqlite3" in sys.modules:  # too late: already initialised
        return False
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("sqlite3")
        if name is None:
            return False
        lib = ctypes.CDLL(name)
        return (lib.sqlite3_config(_SQLITE_CONFIG_MULTITHREAD) == _SQLITE_OK
                and lib.sqlite3_config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0)) == _SQLITE_OK)
    except (ImportError, OSError, AttributeError):
        return False


def main(argv: list[str]) -> int:
    tuned = tune_sqlite()
    from botrace.store.serve import main as serve

    return serve(argv, sqlite_tuned=tuned)


if __name__ == "__main__":  # pragma: no cover - started with python -c
    sys.exit(main(sys.argv))
