"""How the reference host is connected to botrace (its host adapter).

Everything generic lives in :mod:`botrace_host_adapter.hooks` and
:mod:`botrace_host_adapter.emitter`; this module only says what is specific to the
reference host: how its events read as trace attributes and how its star
manager maps to plugins::

    tracer = await connect(host)        # a started tracer, settings from the host's config
    ...
    await disconnect(host)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botrace.attribution import BUILTIN, THIRD_PARTY, PluginRef
from botrace.tracer import Tracer
from botrace_host_adapter.hooks import HostHooks, PluginAttribution
from botrace_host_adapter.refhost.event import MessageEvent

if TYPE_CHECKING:
    from botrace_host_adapter.refhost.host import RefHost
    from botrace_host_adapter.refhost.star import StarMetadata

__all__ = ["RefHostAdapter", "connect", "describe_event", "disconnect", "plugin_ref"]


def describe_event(event: Any) -> Mapping[str, Any] | None:
    """Root attributes of a reference-host message."""
    if not isinstance(event, MessageEvent):
        return None
    return {
        "umo": event.umo,
        "sender": event.sender_name,
        "user_id": event.sender_id,
        "session_id": event.session_id,
        "platform": event.platform,
        "message_type": event.message_type.value,
        "outline": event.raw_message or event.message_str,
        "agent_type": "internal",
        "message_id": event.message_id,
    }


def plugin_ref(meta: StarMetadata) -> PluginRef:
    return PluginRef(meta.name, meta.display_name, BUILTIN if meta.reserved else THIRD_PARTY,
                     meta.version)


class RefHostAdapter(HostHooks):
    """The reference host's hooks, plus keeping attribution in step with its plugin loads."""

    def __init__(self, host: RefHost) -> None:
        super().__init__(config=host.config, describe_event=describe_event,
                         resolve_plugin=self._resolve)
        self.host = host
        self.attribution: PluginAttribution | None = None

    def _resolve(self, module_path: str) -> PluginRef | None:
        meta = self.host.stars.plugin_of_module(module_path)
        return None if meta is None else plugin_ref(meta)

    # listener protocol of RefHost.add_plugin_listener
    def plugin_loaded(self, meta: StarMetadata) -> None:
        if self.attribution is not None:
            self.attribution.loaded(meta.package, meta.name, display_name=meta.display_name,
                                    builtin=meta.reserved, version=meta.version)

    def plugin_unloaded(self, meta: StarMetadata) -> None:
        if self.attribution is not None:
            self.attribution.unloaded(meta.name)


async def connect(host: RefHost, *sinks: Any, tracer: Tracer | None = None,
                  load_entrypoints: bool = False, install: bool = True) -> Tracer:
    """Build (or take) a tracer for ``host``, register the adapter and ``sinks``, start it.

    Settings come from the host's config file (``trace_enable`` and friends);
    later edits of that file, and flips from the web page, apply live both ways.
    """
    adapter = RefHostAdapter(host)
    if tracer is None:
        tracer = Tracer.from_host(adapter, load_entrypoints=load_entrypoints)
    else:
        tracer.register(adapter)
        tracer.reload_settings()
    for sink in sinks:
        tracer.register(sink)
    tracer.register_exporters()  # trace_log_enable, trace_otlp_endpoint, trace_zipkin_endpoint
    adapter.attribution = PluginAttribution(tracer)
    host.add_plugin_listener(adapter)
    adapter.follow_config(tracer)
    host.adapter = adapter
    await tracer.start()
    if install:
        import botrace

        botrace.install(tracer)
    host.attach_tracer(tracer)
    return tracer


async def disconnect(host: RefHost) -> None:
    """Stop emitting, flush and close the host's tracer."""
    tracer = host.tracer
    host.attach_tracer(None)
    if tracer is not None:
        await tracer.aclose()
