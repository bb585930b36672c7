"""Which plugin does this code belong to?

A :class:`PluginRegistry` maps module paths to plugins. The host adapter
registers each plugin under its module path as the host loads it and
unregisters it when the host unloads it; a span is then attributed by the
longest dotted prefix of the module that produced it::

    >>> reg = PluginRegistry()
    >>> reg.register("data.plugins.weather", PluginRef("weather"))
    >>> reg.resolve("data.plugins.weather.main").name
    'weather'
    >>> reg.resolve("data.plugins.weatherman.main") is None   # prefix by whole segments
    True

Resolutions are cached; every register/unregister drops the cache, so a
result is never stale after a reload.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BUILTIN", "THIRD_PARTY", "PluginRef", "PluginRegistry"]

BUILTIN = "builtin"
THIRD_PARTY = "third_party"


@dataclass(frozen=True, slots=True)
class PluginRef:
    """A plugin as the trace shows it."""

    name: str
    display_name: str = ""
    plugin_type: Literal["builtin", "third_party"] = THIRD_PARTY
    version: str = ""

    def __post_init__(self) -> None:
        if self.plugin_type not in (BUILTIN, THIRD_PARTY):
            raise ValueError(f"plugin_type must be 'builtin' or 'third_party', got {self.plugin_type!r}")
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "plugin_type": self.plugin_type,
            "version": self.version,
        }


_MISSING = object()


class PluginRegistry:
    """Module path → :class:`PluginRef`, by longest dotted-prefix match.

    ``fallback`` is asked for module paths no registered prefix covers (the
    tracer wires it to the ``botrace_resolve_plugin`` hook); its answers are
    cached like the registry's own until the next change or :meth:`invalidate`.
    """

    def __init__(self, fallback: Callable[[str], PluginRef | None] | None = None) -> None:
        self._by_prefix: dict[str, PluginRef] = {}
        self._cache: dict[str, PluginRef | None] = {}
        self._lock = threading.Lock()
        self._fallback = fallback

    def register(self, module_prefix: str, plugin: PluginRef) -> None:
        """Attribute every module under ``module_prefix`` (dotted) to ``plugin``."""
        if not module_prefix or not isinstance(module_prefix, str):
            raise ValueError("module_prefix must be a non-empty dotted module path")
        with self._lock:
            self._by_prefix[module_prefix] = plugin
            self._cache = {}

    def unregister(self, name_or_prefix: str) -> int:
        """Forget a plugin by its name or by a registered prefix; returns how many prefixes went."""
        with self._lock:
            gone = [p for p, ref in self._by_prefix.items() if p == name_or_prefix or ref.name == name_or_prefix]
            for prefix in gone:
                del self._by_prefix[prefix]
            self._cache = {}
        return len(gone)

    def invalidate(self) -> None:
        """Drop cached resolutions (call after the host changed what ``fallback`` answers)."""
        self._cache = {}

    def plugins(self) -> dict[str, PluginRef]:
        """A snapshot of prefix → plugin."""
        return dict(self._by_prefix)

    def by_name(self, name: str) -> PluginRef | None:
        for ref in self._by_prefix.values():
            if ref.name == name:
                return ref
        return None

    def resolve(self, module_path: str | None) -> PluginRef | None:
        """The plugin owning ``module_path``, or None."""
        if not module_path:
            return None
        cache = self._cache  # a reader keeps the dict it started with; writers swap it
        found = cache.get(module_path, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        found = self._lookup(module_path)
        if found is None and self._fallback is not None:
            found = self._fallback(module_path)
        if len(cache) < 10_000:
            cache[module_path] = found
        return found

    def _lookup(self, module_path: str) -> PluginRef | None:
        by_prefix = self._by_prefix
        path = module_path
        while True:
            ref = by_prefix.get(path)
            if ref is not None:
                return ref
            cut = path.rfind(".")
            if cut < 0:
                return None
            path = path[:cut]
