"""The core's own sinks, chosen from the settings an operator wrote.

An operator turns exporters on in the host's config (``trace_log_enable``,
``trace_otlp_endpoint``, ``trace_zipkin_endpoint``); a host adapter calls
:meth:`botrace.Tracer.register_exporters` once and they are registered as
plugins like any third-party sink. The SQLite store is not among them: the host
opens it itself, because the web page needs the same object to read from.
"""

from __future__ import annotations

from typing import Any

from botrace.config import Settings

__all__ = ["exporters_from_settings"]


def exporters_from_settings(settings: Settings) -> list[tuple[str, Any]]:
    """``(name, sink)`` for each exporter the settings turn on, not yet registered."""
    sinks: list[tuple[str, Any]] = []
    if settings.trace_log_enable:
        from botrace.exporters.logfile import LogExporter

        sinks.append(("botrace.log_exporter", LogExporter.from_settings(settings)))
    if settings.trace_otlp_endpoint:
        from botrace.exporters.otlp import OTLPExporter

        sinks.append(("botrace.otlp_exporter", OTLPExporter.from_settings(settings)))
    if settings.trace_zipkin_endpoint:
        from botrace.exporters.zipkin import ZipkinExporter

        sinks.append(("botrace.zipkin_exporter", ZipkinExporter.from_settings(settings)))
    return sinks
