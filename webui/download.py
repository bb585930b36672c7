"""One stored trace as an OTLP/JSON document (what ``…/download?format=otlp`` serves).

The OTLP exporter ships live spans to a collector; this turns a trace read back
from the store into the same wire shape, so a single trace can be loaded into
any OpenTelemetry tool by hand. Ids stay hex, as the OTLP/JSON encoding wants.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["trace_to_otlp_json"]

_KIND_INTERNAL, _KIND_CLIENT = 1, 3
_STATUS_UNSET, _STATUS_OK, _STATUS_ERROR = 0, 1, 2

# botrace span type -> gen_ai.operation.name (OpenTelemetry GenAI semantic conventions)
_GENAI_OPERATION = {"llm_call": "chat", "tool_call": "execute_tool", "subagent_call": "invoke_agent"}
_GENAI_META = {
    "model": "gen_ai.request.model",
    "provider": "gen_ai.system",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "tool_name": "gen_ai.tool.name",
    "tool_call_id": "gen_ai.tool.call.id",
    "agent_name": "gen_ai.agent.name",
}


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    return {"stringValue": json.dumps(v, default=repr, ensure_ascii=False)}


def _attrs(pairs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in pairs.items() if v is not None]


def _span(span: dict[str, Any]) -> dict[str, Any]:
    meta = span.get("meta") or {}
    attrs: dict[str, Any] = {"botrace.span_type": span.get("span_type")}
    if op := _GENAI_OPERATION.get(span.get("span_type", "")):
        attrs["gen_ai.operation.name"] = op
    for key, otel_key in _GENAI_META.items():
        if key in meta:
            attrs[otel_key] = meta[key]
    plugin = span.get("plugin") or {}
    if plugin.get("name"):
        attrs["botrace.plugin.name"] = plugin["name"]
        attrs["botrace.plugin.type"] = plugin.get("plugin_type")
    for key in ("input", "output", "meta"):
        if span.get(key):
            attrs[f"botrace.{key}"] = span[key]
    status = span.get("status")
    error = span.get("error") or {}
    out: dict[str, Any] = {
        "traceId": span["trace_id"],
        "spanId": span["span_id"],
        "parentSpanId": span.get("parent_id") or "",
        "name": span.get("name") or span.get("span_type") or "span",
        "kind": _KIND_CLIENT if span.get("span_type") == "llm_call" else _KIND_INTERNAL,
        "startTimeUnixNano": str(span.get("start_ns") or 0),
        "endTimeUnixNano": str(span.get("end_ns") or span.get("start_ns") or 0),
        "attributes": _attrs(attrs),
        "status": {"code": _STATUS_ERROR if status == "error" else
                   _STATUS_OK if status == "ok" else _STATUS_UNSET,
                   "message": str(error.get("message") or "")},
        "events": [{"timeUnixNano": str(e.get("time_ns") or 0), "name": str(e.get("name")),
                    "attributes": _attrs(e.get("attributes") or {})}
                   for e in span.get("events") or ()],
    }
    if error:
        out["events"].append({
            "timeUnixNano": out["endTimeUnixNano"], "name": "exception",
            "attributes": _attrs({"exception.type": error.get("type"),
                                  "exception.message": error.get("message"),
                                  "exception.stacktrace": error.get("traceback")})})
    return out


def trace_to_otlp_json(trace: dict[str, Any], spans: list[dict[str, Any]], *,
                       service_name: str = "botrace") -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` in OTLP/JSON for one trace.

    >>> doc = trace_to_otlp_json({"umo": "u"}, [{"trace_id": "a" * 32, "span_id": "b" * 16,
    ...                                          "name": "message", "span_type": "message"}])
    >>> doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"]
    'bbbbbbbbbbbbbbbb'
    """
    resource = {"service.name": service_name}
    for key in ("umo", "user_id", "session_id", "platform"):
        if trace.get(key):
            resource[f"botrace.{key}"] = trace[key]
    return {"resourceSpans": [{
        "resource": {"attributes": _attrs(resource)},
        "scopeSpans": [{"scope": {"name": "botrace"}, "spans": [_span(s) for s in spans]}],
    }]}
