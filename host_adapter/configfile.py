"""A host's JSON config file, read and written the way operators expect.

AstrBot keeps ``trace_enable`` and its other settings in
``data/cmd_config.json``; the reference host does the same in its own file.
:class:`JsonConfigFile` is the reusable part: defaults merged under the
file's values, atomic writes (a crash never leaves half a file), and
:meth:`reload_if_changed` so an operator's edit is honoured while the host
runs::

    cfg = JsonConfigFile("data/refhost_config.json", defaults={"trace_enable": False})
    cfg["trace_enable"]              # False until the file says otherwise
    cfg.update(trace_enable=True)    # written to disk at once
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["JsonConfigFile"]

log = logging.getLogger("botrace_host_adapter.config")


class JsonConfigFile(Mapping[str, Any]):
    """Settings in a JSON object file with defaults; thread-safe; watchers told of changes."""

    def __init__(self, path: str | os.PathLike[str] | None,
                 defaults: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._defaults = copy.deepcopy(dict(defaults or {}))
        self._values: dict[str, Any] = copy.deepcopy(self._defaults)
        self._lock = threading.RLock()
        self._mtime: int | None = None
        self._watchers: list[Callable[[dict[str, Any]], None]] = []
        if self.path is not None and self.path.exists():
            self._read()
        elif self.path is not None:
            self.save()

    # -- Mapping --
    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._values))

    def __len__(self) -> int:
        return len(self._values)

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the current values."""
        with self._lock:
            return copy.deepcopy(self._values)

    # -- changes --
    def watch(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``fn(changes)`` after every change (file edit or :meth:`update`); returns an undo."""
        self._watchers.append(fn)
        return lambda: self._watchers.remove(fn) if fn in self._watchers else None

    def update(self, changes: Mapping[str, Any] | None = None, /, **more: Any) -> dict[str, Any]:
        """Set keys, write the file, tell watchers; returns the keys whose value changed."""
        merged = {**(changes or {}), **more}
        with self._lock:
            changed = {k: v for k, v in merged.items() if self._values.get(k, _MISSING) != v}
            if not changed:
                return {}
            self._values.update(copy.deepcopy(changed))
            self.save()
        self._notify(changed)
        return changed

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(self._values, fh, indent=2, ensure_ascii=False, sort_keys=True)
                    fh.write("\n")
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._mtime = self.path.stat().st_mtime_ns

    def reload_if_changed(self) -> dict[str, Any]:
        """Re-read the file if it was edited since; returns (and announces) what changed."""
        if self.path is None:
            return {}
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if mtime == self._mtime:
            return {}
        with self._lock:
            before = copy.deepcopy(self._values)
            if not self._read():
                return {}
            changed = {k: v for k, v in self._values.items() if before.get(k, _MISSING) != v}
        if changed:
            self._notify(changed)
        return changed

    def _read(self) -> bool:
        assert self.path is not None
        try:
            mtime = self.path.stat().st_mtime_ns
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            # Half-written by an editor, or a typo: keep running on the last good values.
            log.warning("config %s unreadable, keeping previous values: %s", self.path, exc)
            return False
        if not isinstance(data, dict):
            log.warning("config %s is not a JSON object; ignored", self.path)
            return False
        self._values = {**copy.deepcopy(self._defaults), **data}
        self._mtime = mtime
        return True

    def _notify(self, changed: dict[str, Any]) -> None:
        for fn in list(self._watchers):
            try:
                fn(dict(changed))
            except Exception:
                log.exception("config watcher %r failed", fn)


_MISSING = object()
