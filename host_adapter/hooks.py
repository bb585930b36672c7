"""Host-side hook implementations that any host adapter reuses.

botrace asks the host three things through pluggy hooks — which plugin owns
a module, what an event is, where the settings live — and tells it one:
that a setting changed at run time (the web page's switch), so the host can
write it back to its own config file. :class:`HostHooks` answers them from
a few plain callables and a :class:`~botrace_host_adapter.configfile.JsonConfigFile`;
a host adapter builds one and registers it on the tracer::

    hooks = HostHooks(config=cfg, describe_event=describe, resolve_plugin=resolve)
    tracer = Tracer.from_host(hooks)         # settings come from cfg
    hooks.follow_config(tracer)              # edits of cfg's trace_* keys apply live

:class:`PluginAttribution` keeps ``tracer.plugins`` in step with the host's
plugin loads, unloads and reloads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from botrace.attribution import BUILTIN, THIRD_PARTY, PluginRef
from botrace.config import SettingsError
from botrace.hookspecs import hookimpl

if TYPE_CHECKING:
    from botrace.config import Settings
    from botrace.tracer import Tracer
    from botrace_host_adapter.configfile import JsonConfigFile

__all__ = ["HostHooks", "PluginAttribution"]

log = logging.getLogger("botrace_host_adapter")


class HostHooks:
    """The host side of the hook specs, from callables and a config file."""

    def __init__(self, *, config: JsonConfigFile | None = None,
                 describe_event: Callable[[Any], Mapping[str, Any] | None] | None = None,
                 resolve_plugin: Callable[[str], PluginRef | None] | None = None) -> None:
        self.config = config
        self._describe = describe_event
        self._resolve = resolve_plugin
        self._unwatch: Callable[[], None] | None = None

    @hookimpl
    def botrace_describe_event(self, event: Any) -> Mapping[str, Any] | None:
        return None if self._describe is None else self._describe(event)

    @hookimpl
    def botrace_resolve_plugin(self, module_path: str) -> PluginRef | None:
        return None if self._resolve is None else self._resolve(module_path)

    @hookimpl
    def botrace_load_settings(self) -> Mapping[str, Any] | None:
        return None if self.config is None else self.config.snapshot()

    @hookimpl
    def botrace_settings_changed(self, settings: Settings, changes: Mapping[str, Any]) -> None:
        """Persist a live change (``trace_enable`` from the web page) in the host's file."""
        if self.config is None:
            return
        ours = {k: _plain(v) for k, v in changes.items() if k.startswith("trace_")}
        if ours:
            self.config.update(ours)

    def follow_config(self, tracer: Tracer) -> Callable[[], None]:
        """Apply edits of the config file's ``trace_*`` keys to ``tracer`` live; returns an undo."""
        if self.config is None:
            return lambda: None

        def apply(changes: dict[str, Any]) -> None:
            ours = {k: v for k, v in changes.items() if k.startswith("trace_")}
            if not ours:
                return
            try:
                tracer.update_settings(**ours)
            except SettingsError as exc:
                log.warning("config: %s (keeping the previous value)", exc)

        self._unwatch = self.config.watch(apply)
        return self._unwatch


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


class PluginAttribution:
    """Registers each loaded plugin's package in ``tracer.plugins``; forgets it on unload.

    A host calls :meth:`loaded` / :meth:`unloaded` (or wires them to its plugin
    manager's callbacks). Spans opened after a reload are attributed to the new
    metadata: the registry's cache is dropped on every change.
    """

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def loaded(self, module_prefix: str, name: str, *, display_name: str = "",
               builtin: bool = False, version: str = "") -> PluginRef:
        ref = PluginRef(name, display_name or name, BUILTIN if builtin else THIRD_PARTY, version)
        self.tracer.plugins.register(module_prefix, ref)
        return ref

    def unloaded(self, name: str) -> None:
        self.tracer.plugins.unregister(name)
