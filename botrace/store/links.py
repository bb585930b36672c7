"""How the store starts a writer and talks to it: a process of its own, or a thread.

Both kinds of link take the same messages (``botrace.store.serve``) through
:meth:`send`, give the writer's answers to ``on_message`` and, when the writer ends
without being asked to, call ``on_lost(link, why)`` once, at once: a process's end
closes its socket, which the receiving thread sees as the end of the stream.

A message is *packed* for the link it was made for (pickled bytes for a process, the
tuple itself for a thread); either link takes either form, since a batch packed for a
writer process may be sent again to the thread that replaces it.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from botrace.store.database import StoreError
from botrace.store.writer import Writer

__all__ = ["START_ERRORS", "ProcessLink", "ThreadLink"]

log = logging.getLogger("botrace.store")

# (the entry configures SQLite before importing the writer: botrace/_writer_process.py)
_CHILD = "import sys; from botrace._writer_process import main; sys.exit(main(sys.argv))"
_READY_TIMEOUT = 30.0
# what starting a writer may raise (the store then tries a thread, or tries again)
START_ERRORS = (OSError, ValueError, TimeoutError, EOFError, StoreError)


def _as_bytes(packed: Any) -> bytes:
    return packed if isinstance(packed, bytes) else pickle.dumps(
        packed, protocol=pickle.HIGHEST_PROTOCOL)


class ProcessLink:
    """The writer in a process of its own (``python -c ... FD``) over a socket pair.

    subprocess, not multiprocessing: the child is a fresh interpreter (like *spawn*;
    nothing is forked from this threaded process) and, unlike spawn, it does not
    import the host's ``__main__`` again.
    """

    kind = "process"

    def __init__(self, cfg: dict[str, Any], on_message: Any, on_lost: Any) -> None:
        from multiprocessing.connection import Connection

        self.on_message = on_message
        self.on_lost = on_lost
        self.lost: str | None = None  # why the writer ended, once it has
        self._why: str | None = None  # what the writer said before it ended
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        try:
            self.conn.send_bytes(pickle.dumps(cfg))
            if not self.conn.poll(_READY_TIMEOUT):
                raise TimeoutError(f"no answer from the writer process in {_READY_TIMEOUT:g} s")
            first = pickle.loads(self.conn.recv_bytes())
            if first[0] != "ready":
                raise OSError(f"the writer process failed: {first[-1]}")
        except BaseException:
            self.kill()
            self.conn.close()
            raise
        on_message(first)
        self.receiver = threading.Thread(target=self._receive, name="botrace-store-receiver",
                                         daemon=True)
        self.receiver.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, packed: Any) -> None:
        self.conn.send_bytes(_as_bytes(packed))

    def _receive(self) -> None:
        conn = self.conn
        while True:
            try:
                msg = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                self.lost = self._why or self._exit_text()
                self.on_lost(self, self.lost)
                return
            if msg[0] == "died":  # (its socket closes next)
                self._why = msg[1]
                continue
            self.on_message(msg)

    def _exit_text(self) -> str:
        try:
            code = self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return "the writer process closed its end"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the writer process was killed by {name}"
        return f"the writer process exited with status {code}"

    def close(self, timeout: float) -> None:
        """Wait for the process to end (it does after ``closed``, or when our end of the
        socket closes), kill it past ``timeout``; close the socket."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("botrace store: the writer process did not end in %g s; killed", timeout)
            self.kill()
        self.conn.close()
        if threading.current_thread() is not self.receiver:
            self.receiver.join(5.0)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


_EOF = object()  # tells a thread writer that the host's end is closed


class ThreadLink:
    """The writer in a thread of the host (``trace_store_writer = "thread"``, and the
    fallback when a writer process cannot start or keeps dying)."""

    kind = "thread"
    pid = None

    def __init__(self, cfg: dict[str, Any], on_message: Any, on_lost: Any) -> None:
        self.on_message = on_message
        self.on_lost = on_lost
        self.lost: str | None = None  # why the writer ended, once it has
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._ready = threading.Event()
        self._failed: str | None = None
        self.writer = Writer(cfg, self._emit)
        self.thread = threading.Thread(target=self._run, name="botrace-store-writer",
                                       daemon=True)
        self.thread.start()
        if not self._ready.wait(_READY_TIMEOUT) or self._failed:
            raise StoreError(f"the store's writer did not start: {self._failed or 'timeout'}")

    def _emit(self, msg: tuple) -> None:
        self.on_message(msg)
        if msg[0] == "ready":
            self._ready.set()

    def _recv(self, timeout: float | None) -> Any:
        try:
            msg = self.inbox.get(timeout=timeout) if timeout != 0 else self.inbox.get_nowait()
        except queue.Empty:
            return None
        if msg is _EOF:
            self.inbox.put(_EOF)  # (every later call says so too)
            raise EOFError("the host closed the link")
        return msg

    def _run(self) -> None:
        try:
            self.writer.run(self._recv)
        except BaseException as exc:  # the writer's own faults are handled inside it
            why = f"{type(exc).__name__}: {exc}"
            log.error("botrace store writer thread died", exc_info=exc)
            if not self._ready.is_set():
                self._failed = why
                self._ready.set()
                return
            self.lost = why
            self.on_lost(self, why)

    def send(self, packed: Any) -> None:
        self.inbox.put(pickle.loads(packed) if isinstance(packed, bytes) else packed)

    def close(self, timeout: float) -> None:
        """Tell the thread the host's end is closed and wait for it (``timeout``)."""
        self.inbox.put(_EOF)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    def kill(self) -> None:
        self.inbox.put(_EOF)  # (a thread cannot be killed: it ends at its next message)
