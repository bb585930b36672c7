"""OTLP over HTTP: ship finished traces to any OpenTelemetry receiver.

Collector, Jaeger, Tempo and Phoenix all accept ``POST /v1/traces``; Phoenix
only protobuf. Protobuf is encoded with ``opentelemetry-proto`` (the ``otlp``
extra, imported when first needed); the JSON encoding needs nothing extra.

Span names and attributes follow the OpenTelemetry GenAI conventions
(``chat {model}``, ``execute_tool {tool}``, ``invoke_agent {agent}``,
``gen_ai.*``) and carry OpenInference kinds (``openinference.span.kind``,
``llm.*``, ``input.value``, ``session.id``) so Phoenix and Jaeger render them
well. Plugin attribution travels as ``botrace.plugin.*`` attributes.

Off the host's path: the dispatcher thread converts a finished trace to dicts
and queues it (bounded, drops counted); a task on the event loop batches,
encodes, gzips and posts, retrying with backoff.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from botrace.hookspecs import hookimpl

__all__ = [
    "BatchExporter",
    "OTLPExporter",
    "encode_json",
    "encode_protobuf",
    "otlp_spans",
    "post_with_retries",
]

log = logging.getLogger("botrace.exporters")

try:
    from importlib.metadata import version as _pkg_version

    _VERSION = _pkg_version("botrace")
except Exception:  # running from a checkout that is not installed
    _VERSION = "0"

KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = 1, 2, 3
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2

_OI_KIND = {
    "llm_call": "LLM",
    "tool_call": "TOOL",
    "subagent_call": "AGENT",
    "message": "CHAIN",
    "pipeline_stage": "CHAIN",
    "plugin_call": "CHAIN",
    "io_call": "CHAIN",
    "custom": "CHAIN",
}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)


# ---------------------------------------------------------------------------- mapping

def _name_and_attrs(span: Mapping[str, Any], trace: Mapping[str, Any]) -> tuple[str, int, list]:
    meta = span.get("meta") or {}
    stype = span.get("span_type") or "custom"
    name = span.get("name") or stype
    kind = KIND_INTERNAL
    attrs: list[tuple[str, Any]] = [
        ("openinference.span.kind", _OI_KIND.get(stype, "CHAIN")),
        ("botrace.span_type", stype),
    ]
    if stype == "llm_call":
        model = meta.get("model")
        name = f"chat {model}" if model else "chat"
        kind = KIND_CLIENT
        attrs.append(("gen_ai.operation.name", "chat"))
        if meta.get("provider"):
            attrs += [("gen_ai.provider.name", meta["provider"]), ("llm.provider", meta["provider"])]
        if model:
            attrs += [("gen_ai.request.model", model), ("llm.model_name", model)]
        tin, tout, tcached = (meta.get("input_tokens"), meta.get("output_tokens"),
                              meta.get("cached_tokens"))
        if isinstance(tin, int):
            attrs += [("gen_ai.usage.input_tokens", tin), ("llm.token_count.prompt", tin)]
        if isinstance(tout, int):
            attrs += [("gen_ai.usage.output_tokens", tout), ("llm.token_count.completion", tout)]
        if isinstance(tin, int) and isinstance(tout, int):
            attrs.append(("llm.token_count.total", tin + tout))
        if isinstance(tcached, int):
            attrs += [("gen_ai.usage.cache_read.input_tokens", tcached),
                      ("llm.token_count.prompt_details.cache_read", tcached)]
        if meta.get("finish_reason"):
            attrs.append(("gen_ai.response.finish_reasons", [str(meta["finish_reason"])]))
    elif stype == "tool_call":
        tool = meta.get("tool_name") or span.get("name")
        name = f"execute_tool {tool}"
        attrs += [("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", tool),
                  ("tool.name", tool)]
        if meta.get("tool_call_id"):
            attrs.append(("gen_ai.tool.call.id", meta["tool_call_id"]))
    elif stype == "subagent_call":
        agent = meta.get("agent_name") or span.get("name")
        name = f"invoke_agent {agent}"
        attrs += [("gen_ai.operation.name", "invoke_agent"), ("gen_ai.agent.name", agent),
                  ("agent.name", agent)]
    elif stype == "message":
        kind = KIND_SERVER
    conversation = trace.get("session_id") or trace.get("umo")
    if conversation:
        attrs += [("gen_ai.conversation.id", conversation), ("session.id", conversation)]
    if trace.get("user_id"):
        attrs.append(("user.id", trace["user_id"]))
    if stype == "message":
        for key in ("umo", "sender", "platform", "agent_type", "outline"):
            if trace.get(key):
                attrs.append((f"botrace.{key}", trace[key]))
    plugin = span.get("plugin")
    if plugin:
        for key in ("name", "display_name", "plugin_type", "version"):
            if plugin.get(key):
                attrs.append((f"botrace.plugin.{key}", plugin[key]))
    if span.get("input"):
        attrs += [("input.value", _json(span["input"])), ("input.mime_type", "application/json")]
    if span.get("output"):
        attrs += [("output.value", _json(span["output"])),
                  ("output.mime_type", "application/json")]
    for key, value in meta.items():
        attrs.append((f"botrace.meta.{key}", value))
    error = span.get("error")
    if error:
        attrs.append(("error.type", error.get("type") or "Error"))
    if span.get("truncated"):
        attrs.append(("botrace.truncated", True))
    return name, kind, attrs


def otlp_spans(trace: Mapping[str, Any], spans: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Neutral OTLP span records (hex ids, typed attribute pairs) for one trace."""
    out = []
    for span in spans:
        name, kind, attrs = _name_and_attrs(span, trace)
        status = span.get("status")
        error = span.get("error")
        events = [(e.get("time_ns") or span["start_ns"], e.get("name") or "event",
                   list((e.get("attributes") or {}).items()))
                  for e in span.get("events") or ()]
        if error:
            events.append((span.get("end_ns") or span["start_ns"], "exception", [
                ("exception.type", error.get("type") or "Error"),
                ("exception.message", error.get("message") or ""),
                ("exception.stacktrace", error.get("traceback") or ""),
            ]))
        if status == "error":
            code, message = STATUS_ERROR, (error or {}).get("message") or "error"
        elif status in ("ok",):
            code, message = STATUS_OK, ""
        elif status in ("cancelled", "interrupted"):
            code, message = STATUS_ERROR, status
        else:
            code, message = STATUS_UNSET, ""
        end = span.get("end_ns") or span.get("start_ns")
        out.append({
            "trace_id": span["trace_id"], "span_id": span["span_id"],
            "parent_id": span.get("parent_id"), "name": name, "kind": kind,
            "start_ns": int(span["start_ns"]), "end_ns": int(end), "attributes": attrs,
            "events": events, "status": (code, message),
        })
    return out


def _resource_attrs(service_name: str) -> list[tuple[str, Any]]:
    return [("service.name", service_name), ("telemetry.sdk.name", "botrace"),
            ("telemetry.sdk.language", "python"), ("telemetry.sdk.version", _VERSION)]


# ---------------------------------------------------------------------------- JSON encoding

def _json_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_json_value(v) for v in value]}}
    return {"stringValue": _json(value)}


def _json_attrs(pairs: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _json_value(v)} for k, v in pairs if v is not None]


def encode_json(records: list[dict], service_name: str = "botrace") -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` in the OTLP/JSON mapping (hex ids, string int64s)."""
    spans = []
    for r in records:
        code, message = r["status"]
        span = {
            "traceId": r["trace_id"], "spanId": r["span_id"], "name": r["name"],
            "kind": r["kind"], "startTimeUnixNano": str(r["start_ns"]),
            "endTimeUnixNano": str(r["end_ns"]), "attributes": _json_attrs(r["attributes"]),
            "events": [{"timeUnixNano": str(t), "name": n, "attributes": _json_attrs(a)}
                       for t, n, a in r["events"]],
            "status": {"code": code, **({"message": message} if message else {})},
        }
        if r["parent_id"]:
            span["parentSpanId"] = r["parent_id"]
        spans.append(span)
    return {"resourceSpans": [{
        "resource": {"attributes": _json_attrs(_resource_attrs(service_name))},
        "scopeSpans": [{"scope": {"name": "botrace", "version": _VERSION}, "spans": spans}],
    }]}


# ---------------------------------------------------------------------------- protobuf encoding

def _pb_value(pb: Any, target: Any, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int) and -(2**63) <= value < 2**63:
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, list | tuple):
        for v in value:
            _pb_value(pb, target.array_value.values.add(), v)
    else:
        target.string_value = _json(value) if not isinstance(value, int) else str(value)


def _pb_attrs(pb: Any, container: Any, pairs: Iterable[tuple[str, Any]]) -> None:
    for key, value in pairs:
        if value is None:
            continue
        kv = container.add()
        kv.key = key
        _pb_value(pb, kv.value, value)


def encode_protobuf(records: list[dict], service_name: str = "botrace") -> bytes:
    """A serialised ``ExportTraceServiceRequest`` (needs the ``otlp`` extra)."""
    try:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "OTLP protobuf needs the 'otlp' extra: pip install 'botrace[otlp]' "
            "(or set trace_otlp_protocol: json)") from exc
    request = trace_service_pb2.ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    _pb_attrs(None, rs.resource.attributes, _resource_attrs(service_name))
    ss = rs.scope_spans.add()
    ss.scope.name = "botrace"
    ss.scope.version = _VERSION
    for r in records:
        s = ss.spans.add()
        s.trace_id = bytes.fromhex(r["trace_id"])
        s.span_id = bytes.fromhex(r["span_id"])
        if r["parent_id"]:
            s.parent_span_id = bytes.fromhex(r["parent_id"])
        s.name = r["name"]
        s.kind = r["kind"]
        s.start_time_unix_nano = r["start_ns"]
        s.end_time_unix_nano = r["end_ns"]
        _pb_attrs(None, s.attributes, r["attributes"])
        for t, n, a in r["events"]:
            ev = s.events.add()
            ev.time_unix_nano = int(t)
            ev.name = n
            _pb_attrs(None, ev.attributes, a)
        code, message = r["status"]
        s.status.code = code
        if message:
            s.status.message = message
    return request.SerializeToString()


# ---------------------------------------------------------------------------- HTTP

class _Permanent(Exception):
    """The receiver rejected the batch for good (4xx): retrying cannot help."""


async def post_with_retries(session: Any, url: str, body: bytes, headers: Mapping[str, str], *,
                            max_retries: int = 5, backoff: float = 0.5, max_backoff: float = 30.0,
                            timeout: float = 10.0) -> None:
    """POST ``body``; retry connection errors, timeouts, 429 and 5xx with jittered
    exponential backoff. Raises the last error when every attempt failed."""
    import aiohttp

    attempt = 0
    while True:
        try:
            async with session.post(url, data=body, headers=dict(headers),
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status < 300:
                    await resp.read()
                    return
                text = (await resp.text(errors="replace"))[:200]
                error: Exception = RuntimeError(f"HTTP {resp.status} from {url}: {text}")
                if 400 <= resp.status < 500 and resp.status not in (408, 429):
                    raise _Permanent(str(error))
        except _Permanent:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = exc
        attempt += 1
        if attempt > max_retries:
            raise error
        delay = min(max_backoff, backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        await asyncio.sleep(delay)


class BatchExporter:
    """Queue finished traces, batch them, encode and post off the host's path.

    Subclasses give ``name``, ``url`` and :meth:`encode`. Bounded by
    ``queue_size`` spans; what does not fit or cannot be delivered after
    ``max_retries`` is counted in ``dropped_spans`` (see :meth:`health`).
    """

    name = "exporter"

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None,
                 batch_size: int = 512, queue_size: int = 20_000, flush_interval: float = 1.0,
                 max_retries: int = 5, backoff: float = 0.5, timeout: float = 10.0,
                 service_name: str = "botrace") -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.batch_size = batch_size
        self.queue_size = queue_size
        self.flush_interval = flush_interval
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.service_name = service_name
        self._queue: deque[tuple[dict, list[dict]]] = deque()
        self._queued_spans = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._wake_scheduled = False
        self._task: asyncio.Task | None = None
        self._session: Any = None
        self._closing = False
        self._last_log = 0.0
        self.exported_spans = 0
        self.dropped_spans = 0
        self.failed_batches = 0
        self.retries = 0
        self.last_error: str | None = None
        self.last_error_ns: int | None = None

    # -- sink hooks -------------------------------------------------------------

    @hookimpl
    def botrace_startup(self, tracer: Any) -> None:
        self.start()

    @hookimpl
    def botrace_trace_finished(self, trace: Any) -> None:
        if self._closing:
            return
        try:
            summary = trace.to_dict()
            spans = [s.to_dict() for s in list(trace.spans) if s.end_ns is not None]
        except Exception as exc:
            self._fail(1, "trace conversion failed", exc)
            return
        self.submit(summary, spans)

    @hookimpl
    def botrace_shutdown(self, tracer: Any) -> Any:
        return self.aclose()

    @hookimpl
    def botrace_health(self, tracer: Any) -> dict[str, Any]:
        return self.health()

    # -- queue ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background task on the running loop (idempotent)."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._run(), name=f"botrace-{self.name}")

    def submit(self, trace: Mapping[str, Any], spans: list[dict]) -> bool:
        """Queue one trace's spans (any thread). False when the queue was full (counted)."""
        n = len(spans)
        with self._lock:
            if self._queued_spans + n > self.queue_size:
                self.dropped_spans += n
                self._note("queue full; trace dropped", None)
                return False
            self._queue.append((dict(trace), spans))
            self._queued_spans += n
            wake = self._queued_spans >= self.batch_size and not self._wake_scheduled
            if wake:
                self._wake_scheduled = True
        if wake and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:
                pass
        return True

    def _take(self) -> list[tuple[dict, list[dict]]]:
        batch, count = [], 0
        with self._lock:
            while self._queue and (count == 0 or count + len(self._queue[0][1]) <= self.batch_size):
                item = self._queue.popleft()
                count += len(item[1])
                batch.append(item)
            self._queued_spans -= count
            self._wake_scheduled = False
        return batch

    async def _run(self) -> None:
        while True:
            if not self._closing:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                except TimeoutError:
                    pass
                self._wake.clear()
            batch = self._take()
            if batch:
                await self._send(batch)
            elif self._closing:
                return

    async def _send(self, batch: list[tuple[dict, list[dict]]]) -> None:
        n = sum(len(spans) for _, spans in batch)
        try:
            body, headers = await asyncio.to_thread(self.encode, batch)
            if self._session is None:
                import aiohttp

                self._session = aiohttp.ClientSession()
            await post_with_retries(self._session, self.url, body, {**self.headers, **headers},
                                    max_retries=self.max_retries, backoff=self.backoff,
                                    timeout=self.timeout)
        except asyncio.CancelledError:
            self._fail(n, "cancelled while sending", None)
            raise
        except Exception as exc:
            self.failed_batches += 1
            self._fail(n, f"export to {self.url} failed", exc)
            return
        self.exported_spans += n

    async def flush(self, timeout: float = 10.0) -> None:
        """Send everything queued now (waits at most ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self._queued_spans and time.monotonic() < deadline:
            batch = self._take()
            if batch:
                await self._send(batch)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Send what is queued (bounded by ``timeout``), then stop; the rest is counted."""
        self._closing = True
        if self._task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(self._task, timeout)
            except (TimeoutError, asyncio.CancelledError):
                pass
            self._task = None
        leftover = self._take()
        if leftover:
            self._fail(sum(len(s) for _, s in leftover), "not sent before close", None)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def encode(self, batch: list[tuple[dict, list[dict]]]) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    # -- health -----------------------------------------------------------------------

    def _fail(self, n: int, what: str, exc: BaseException | None) -> None:
        with self._lock:
            self.dropped_spans += n
            self._note(what, exc)

    def _note(self, what: str, exc: BaseException | None) -> None:
        text = what if exc is None else f"{what}: {type(exc).__name__}: {exc}"
        self.last_error = text[:500]
        self.last_error_ns = time.time_ns()
        now = time.monotonic()
        if now - self._last_log > 10.0:
            self._last_log = now
            log.warning("botrace %s: %s", self.name, text)

    def health(self) -> dict[str, Any]:
        return {
            "name": self.name, "url": self.url, "queue_depth": self._queued_spans,
            "queue_max": self.queue_size, "exported": self.exported_spans,
            "dropped": self.dropped_spans, "failed_batches": self.failed_batches,
            "last_error": self.last_error, "last_error_ns": self.last_error_ns,
        }


def traces_url(endpoint: str) -> str:
    """``http://host:4318`` -> ``http://host:4318/v1/traces``; a full URL is kept."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class OTLPExporter(BatchExporter):
    """OTLP/HTTP exporter (``protocol`` ``"protobuf"`` or ``"json"``, gzip optional).

    >>> tracer.register(OTLPExporter.from_settings(tracer.settings))  # doctest: +SKIP
    """

    name = "otlp"

    def __init__(self, endpoint: str, *, protocol: str = "protobuf", gzip_body: bool = True,
                 **kwargs: Any) -> None:
        if protocol not in ("protobuf", "json"):
            raise ValueError(f"protocol must be 'protobuf' or 'json', got {protocol!r}")
        super().__init__(traces_url(endpoint), **kwargs)
        self.protocol = protocol
        self.gzip_body = gzip_body
        if protocol == "protobuf":
            encode_protobuf([], self.service_name)  # fail at construction, not per batch

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> OTLPExporter:
        return cls(settings.trace_otlp_endpoint, protocol=settings.trace_otlp_protocol,
                   gzip_body=settings.trace_otlp_gzip, headers=settings.trace_otlp_headers,
                   batch_size=settings.trace_export_batch_size,
                   queue_size=settings.trace_export_queue_size,
                   service_name=settings.trace_service_name, **kwargs)

    def encode(self, batch: list[tuple[dict, list[dict]]]) -> tuple[bytes, dict[str, str]]:
        return encode_request(batch, self.protocol, self.service_name, self.gzip_body)


def encode_request(batch: Iterable[tuple[Mapping[str, Any], list[dict]]], protocol: str,
                   service_name: str, gzip_body: bool = True) -> tuple[bytes, dict[str, str]]:
    """Body and headers of one OTLP/HTTP request for ``[(trace summary, span dicts)]``."""
    records: list[dict] = []
    for trace, spans in batch:
        records += otlp_spans(trace, spans)
    if protocol == "protobuf":
        body = encode_protobuf(records, service_name)
        headers = {"Content-Type": "application/x-protobuf"}
    else:
        body = json.dumps(encode_json(records, service_name), ensure_ascii=False,
                          separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
    if gzip_body:
        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    return body, headers
