"""What connects a chatbot host to botrace.

* :mod:`botrace_host_adapter.emitter` — :class:`SpanEmitter`, the host's side of the
  ``botrace_trace_*`` hooks (open a span per stage, handler, LLM call, tool
  call, handoff), and :func:`iterate_in_span` for async-generator handlers.
* :mod:`botrace_host_adapter.hooks` — :class:`HostHooks` (describe events, resolve
  plugins, load and persist settings) and :class:`PluginAttribution`.
* :mod:`botrace_host_adapter.configfile` — a host's JSON config file, honoured live.
* :mod:`botrace_host_adapter.refhost` — the reference host (AstrBot-shaped) used by
  ``botrace demo``, the tests and the benchmarks.
* :mod:`botrace_host_adapter.commands` — the ``botrace demo`` subcommand.
"""

from botrace_host_adapter.configfile import JsonConfigFile
from botrace_host_adapter.emitter import SpanEmitter, iterate_in_span
from botrace_host_adapter.hooks import HostHooks, PluginAttribution

__all__ = ["HostHooks", "JsonConfigFile", "PluginAttribution", "SpanEmitter", "iterate_in_span"]
