"""One stored trace as an OTLP/JSON document (what ``…/download?format=otlp`` serves).

The OTLP exporter ships live spans to a collector; this turns a trace read back
from the store into the same document, with the exporter's own mapping (GenAI
conventions, the trace's error on its root, the root's input and output text),
so a downloaded trace loads into any OpenTelemetry tool exactly as an exported
one would. An operator downloading a trace asks for its content, so the GenAI
message attributes are in it whatever ``trace_otlp_capture_content`` says.
"""

from __future__ import annotations

from typing import Any

from botrace.exporters.otlp import encode_json, otlp_spans

__all__ = ["trace_to_otlp_json"]


def trace_to_otlp_json(trace: dict[str, Any], spans: list[dict[str, Any]], *,
                       service_name: str = "botrace") -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` in OTLP/JSON for one trace.

    >>> doc = trace_to_otlp_json({"umo": "u"}, [{"trace_id": "a" * 32, "span_id": "b" * 16,
    ...     "parent_id": None, "name": "message", "span_type": "message", "start_ns": 1}])
    >>> doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"]
    'bbbbbbbbbbbbbbbb'
    """
    return encode_json(otlp_spans(trace, spans, capture_content=True), service_name)
