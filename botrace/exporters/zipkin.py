"""Zipkin v2 JSON exporter (``POST /api/v2/spans``; Zipkin, Jaeger's Zipkin port, Tempo).

Same span names and attributes as the OTLP exporter (GenAI and OpenInference
conventions, ``botrace.plugin.*``), flattened into Zipkin's string tags. Span
names and the service name are sent lower-case, as the Zipkin server stores them
(a span name that had capitals keeps them in the ``botrace.name`` tag).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from botrace.exporters.otlp import (
    KIND_CLIENT,
    KIND_SERVER,
    STATUS_ERROR,
    BatchExporter,
    otlp_spans,
)

__all__ = ["ZipkinExporter", "encode_zipkin"]

_KINDS = {KIND_CLIENT: "CLIENT", KIND_SERVER: "SERVER"}


def _tag(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)


def encode_zipkin(batch: Iterable[tuple[Mapping[str, Any], list[dict]]],
                  service_name: str = "botrace", *,
                  capture_content: bool = False) -> list[dict[str, Any]]:
    """Zipkin v2 span list for ``[(trace summary, span dicts)]``."""
    out = []
    service = service_name.lower()
    for trace, spans in batch:
        for r in otlp_spans(trace, spans, capture_content=capture_content):
            start_us = r["start_ns"] // 1000
            name = r["name"].lower()
            span: dict[str, Any] = {
                "traceId": r["trace_id"], "id": r["span_id"], "name": name,
                "timestamp": start_us,
                "duration": max(1, (r["end_ns"] - r["start_ns"]) // 1000),
                "localEndpoint": {"serviceName": service},
                "tags": {k: _tag(v) for k, v in r["attributes"] if v is not None},
            }
            if name != r["name"]:
                span["tags"]["botrace.name"] = r["name"]
            if r["parent_id"]:
                span["parentId"] = r["parent_id"]
            if r["kind"] in _KINDS:
                span["kind"] = _KINDS[r["kind"]]
            code, message = r["status"]
            if code == STATUS_ERROR:
                span["tags"]["error"] = message or "error"
            if r["events"]:
                span["annotations"] = [{"timestamp": int(t) // 1000, "value": n}
                                       for t, n, _ in r["events"]]
            out.append(span)
    return out


class ZipkinExporter(BatchExporter):
    """Batches finished traces to a Zipkin v2 endpoint.

    >>> tracer.register(ZipkinExporter("http://localhost:9411/api/v2/spans"))  # doctest: +SKIP
    """

    name = "zipkin"

    def __init__(self, url: str, **kwargs: Any) -> None:
        if not url.rstrip("/").endswith("/api/v2/spans"):
            url = url.rstrip("/") + "/api/v2/spans"
        super().__init__(url, **kwargs)

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> ZipkinExporter:
        return cls(settings.trace_zipkin_endpoint, batch_size=settings.trace_export_batch_size,
                   queue_size=settings.trace_export_queue_size,
                   service_name=settings.trace_service_name,
                   capture_content=settings.trace_otlp_capture_content, **kwargs)

    def encode(self, batch: list[tuple[dict, list[dict]]]) -> tuple[bytes, dict[str, str]]:
        spans = encode_zipkin(batch, self.service_name, capture_content=self.capture_content)
        body = json.dumps(spans, ensure_ascii=False, separators=(",", ":")).encode()
        return body, {"Content-Type": "application/json"}
