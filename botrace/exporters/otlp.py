"""OTLP over HTTP: ship finished traces to any OpenTelemetry receiver.

Collector, Jaeger, Tempo and Phoenix all accept ``POST /v1/traces``; Phoenix
only protobuf. Protobuf is encoded with ``opentelemetry-proto`` (the ``otlp``
extra, imported when first needed); the JSON encoding needs nothing extra.

Span names and attributes follow the OpenTelemetry GenAI conventions
(semantic-conventions-genai, status Development: ``chat {model}``,
``execute_tool {tool}``, ``invoke_agent {agent}``, ``gen_ai.*``; message content
in ``gen_ai.input.messages`` and the like only with ``capture_content``) and carry
OpenInference attributes (``openinference.span.kind``, ``llm.*``,
``input.value``, ``session.id``, the resource's ``openinference.project.name``)
so Phoenix and Jaeger render them well. The root span holds the user's text and
the reply as plain-text input and output, and the trace's error status. Plugin
attribution travels as ``botrace.plugin.*`` attributes.

Off the host's path: the dispatcher thread converts a finished trace to dicts
and queues it (bounded, drops counted); a task on the event loop batches,
encodes, gzips and posts, retrying with backoff.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
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

#: Keys of a root span's input that hold the user's text (the first string one wins).
_TEXT_KEYS = ("text", "message", "content", "prompt", "query")


def _llm_attrs(span: Mapping[str, Any], meta: Mapping[str, Any], capture_content: bool) -> list:
    """GenAI inference-span attributes (``chat {model}``), with OpenInference twins."""
    model = meta.get("model")
    attrs: list[tuple[str, Any]] = [("gen_ai.operation.name", "chat")]
    if meta.get("provider"):
        attrs += [("gen_ai.provider.name", meta["provider"]), ("llm.provider", meta["provider"])]
    if model:
        attrs += [("gen_ai.request.model", model), ("llm.model_name", model)]
    if meta.get("served_model"):
        attrs.append(("gen_ai.response.model", meta["served_model"]))
    if meta.get("stream") is True:  # set if and only if streaming (unset means not)
        attrs.append(("gen_ai.request.stream", True))
        ttft = meta.get("ttft_ms")
        if isinstance(ttft, int | float) and not isinstance(ttft, bool):
            attrs.append(("gen_ai.response.time_to_first_chunk", ttft / 1000.0))
    tin, tout, tcached = meta.get("input_tokens"), meta.get("output_tokens"), meta.get("cached_tokens")
    if _is_int(tin):
        attrs += [("gen_ai.usage.input_tokens", tin), ("llm.token_count.prompt", tin)]
    if _is_int(tout):
        attrs += [("gen_ai.usage.output_tokens", tout), ("llm.token_count.completion", tout)]
    if _is_int(tin) and _is_int(tout):
        attrs.append(("llm.token_count.total", tin + tout))
    if _is_int(tcached):
        attrs += [("gen_ai.usage.cache_read.input_tokens", tcached),
                  ("llm.token_count.prompt_details.cache_read", tcached)]
    if meta.get("finish_reason"):
        attrs.append(("gen_ai.response.finish_reasons", [str(meta["finish_reason"])]))
    if capture_content:
        attrs += _llm_content(span.get("input") or {}, span.get("output") or {})
    return attrs


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _llm_content(inp: Mapping[str, Any], out: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The opt-in GenAI content attributes, as JSON strings in the conventions' message
    schema (``{"role", "parts": [{"type": "text", "content"}, ...]}``)."""
    attrs: list[tuple[str, Any]] = []
    system = inp.get("system_prompt")
    if isinstance(system, str) and system:
        attrs.append(("gen_ai.system_instructions", _json([{"type": "text", "content": system}])))
    messages = [_genai_message(m) for m in inp.get("messages") or () if m is not None]
    if isinstance(inp.get("prompt"), str) and inp["prompt"]:
        messages.append({"role": "user", "parts": [{"type": "text", "content": inp["prompt"]}]})
    if messages:
        attrs.append(("gen_ai.input.messages", _json(messages)))
    tools = inp.get("tools")
    if isinstance(tools, list) and tools:
        attrs.append(("gen_ai.tool.definitions", _json([
            {"type": "function", "name": t} if isinstance(t, str) else t for t in tools])))
    parts: list[dict[str, Any]] = []
    text = out.get("text")
    if isinstance(text, str) and text:
        parts.append({"type": "text", "content": text})
    for call in out.get("tool_calls") or ():
        if isinstance(call, Mapping):
            parts.append(_tool_call_part(call))
    if parts:
        attrs.append(("gen_ai.output.messages", _json([{"role": "assistant", "parts": parts}])))
    return attrs


def _tool_call_part(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") if isinstance(call.get("function"), Mapping) else {}
    part = {"type": "tool_call", "name": call.get("name") or function.get("name") or "tool",
            "arguments": call.get("arguments", function.get("arguments"))}
    if call.get("id"):
        part["id"] = call["id"]
    return part


def _genai_message(message: Any) -> dict[str, Any]:
    """One recorded chat message (OpenAI-shaped, as hosts record them) in the GenAI schema."""
    if not isinstance(message, Mapping):
        return {"role": "user", "parts": [{"type": "text", "content": str(message)}]}
    role = str(message.get("role") or "user")
    content = message.get("content")
    parts: list[dict[str, Any]] = []
    if role == "tool":
        part = {"type": "tool_call_response", "response": content}
        if message.get("tool_call_id"):
            part["id"] = message["tool_call_id"]
        parts.append(part)
    elif isinstance(content, str):
        parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for item in content:
            if isinstance(item, Mapping) and isinstance(item.get("text"), str):
                parts.append({"type": "text", "content": item["text"]})
            elif isinstance(item, Mapping):
                parts.append({"type": str(item.get("type") or "unknown")})
            else:
                parts.append({"type": "text", "content": str(item)})
    elif content is not None:
        parts.append({"type": "text", "content": _json(content)})
    calls = message.get("tool_calls")
    if isinstance(calls, list):  # (some hosts record only how many: an int, skipped)
        parts += [_tool_call_part(c) for c in calls if isinstance(c, Mapping)]
    return {"role": role, "parts": parts}


def _root_io(span: Mapping[str, Any], trace: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The root's ``input.value`` (the user's text) and ``output.value`` (the reply), as
    plain text where there is one, so a trace list (Phoenix's) shows the conversation."""
    attrs: list[tuple[str, Any]] = []
    inp = span.get("input") or {}
    text = next((inp[k] for k in _TEXT_KEYS if isinstance(inp.get(k), str) and inp[k]), None)
    text = text or trace.get("outline")
    if text:
        attrs += [("input.value", text), ("input.mime_type", "text/plain")]
        if any(inp.get(k) != text for k in inp):  # more than the text: keep the rest too
            attrs.append(("botrace.input", _json(inp)))
    elif inp:
        attrs += [("input.value", _json(inp)), ("input.mime_type", "application/json")]
    out = span.get("output") or {}
    reply = out.get("reply")
    replies = out.get("replies")
    if not isinstance(reply, str) and isinstance(replies, list) and replies \
            and all(isinstance(r, str) for r in replies):
        reply = "\n".join(replies)
    if isinstance(reply, str) and reply:
        attrs += [("output.value", reply), ("output.mime_type", "text/plain")]
        if set(out) - {"reply", "replies"}:
            attrs.append(("botrace.output", _json(out)))
    elif out:
        attrs += [("output.value", _json(out)), ("output.mime_type", "application/json")]
    return attrs


def _name_and_attrs(span: Mapping[str, Any], trace: Mapping[str, Any],
                    capture_content: bool = False) -> tuple[str, int, list]:
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
        attrs += _llm_attrs(span, meta, capture_content)
    elif stype == "tool_call":
        tool = meta.get("tool_name") or span.get("name")
        name = f"execute_tool {tool}"
        attrs += [("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", tool),
                  ("tool.name", tool)]
        if meta.get("tool_call_id"):
            attrs.append(("gen_ai.tool.call.id", meta["tool_call_id"]))
        if capture_content and span.get("input"):
            attrs.append(("gen_ai.tool.call.arguments", _json(span["input"])))
        if capture_content and span.get("output"):
            attrs.append(("gen_ai.tool.call.result", _json(span["output"])))
    elif stype == "subagent_call":
        agent = meta.get("agent_name") or span.get("name")
        name = f"invoke_agent {agent}"  # the in-process ("internal") agent span
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
    if stype == "message" and span.get("parent_id") is None:
        attrs += _root_io(span, trace)
    else:
        if span.get("input"):
            attrs += [("input.value", _json(span["input"])),
                      ("input.mime_type", "application/json")]
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


def _span_status(span: Mapping[str, Any]) -> tuple[int, str]:
    status = span.get("status")
    if status == "error":
        return STATUS_ERROR, (span.get("error") or {}).get("message") or "error"
    if status == "ok":
        return STATUS_OK, ""
    if status in ("cancelled", "interrupted"):
        return STATUS_ERROR, status
    return STATUS_UNSET, ""


def _trace_failure(spans: list[Mapping[str, Any]]) -> tuple[str, str, list] | None:
    """For a root whose trace failed below it: a status message naming the (first) failed
    span, its error type, and attributes pointing at it. None when no span below the root
    failed."""
    failed = [s for s in spans if s.get("status") == "error" and s.get("parent_id") is not None]
    if not failed:
        return None
    first = failed[0]
    error = first.get("error") or {}
    what = f"{error.get('type') or 'Error'}: {error.get('message')}" if error.get("message") \
        else error.get("type") or "error"
    message = f"span {first.get('name')!r} ({first.get('span_type')}) failed: {what}"
    if len(failed) > 1:
        message += f" (+{len(failed) - 1} more failed span{'s' if len(failed) > 2 else ''})"
    return message, error.get("type") or "Error", [
        ("botrace.error.span_id", first.get("span_id")),
        ("botrace.error.span_name", first.get("name")),
        ("botrace.error.span_count", len(failed))]


def otlp_spans(trace: Mapping[str, Any], spans: Iterable[Mapping[str, Any]], *,
               capture_content: bool = False) -> list[dict]:
    """Neutral OTLP span records (hex ids, typed attribute pairs) for one trace.

    The root carries the trace's outcome: a trace with a failed span is an error at its
    root too (botrace's trace status), with a message naming that span. GenAI message
    content (``gen_ai.input.messages`` and the like) only with ``capture_content``.
    """
    spans = list(spans)
    failure = _trace_failure(spans)
    out = []
    for span in spans:
        name, kind, attrs = _name_and_attrs(span, trace, capture_content)
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
        code, message = _span_status(span)
        if failure is not None and span.get("parent_id") is None and span.get("status") != "error":
            failed_message, error_type, failed_attrs = failure
            code, message = STATUS_ERROR, failed_message if code != STATUS_ERROR \
                else f"{message}; {failed_message}"
            attrs += failed_attrs
            if not error:  # error.type: the class of error the operation ended with
                attrs.append(("error.type", error_type))
        end = span.get("end_ns") or span.get("start_ns")
        out.append({
            "trace_id": span["trace_id"], "span_id": span["span_id"],
            "parent_id": span.get("parent_id"), "name": name, "kind": kind,
            "start_ns": int(span["start_ns"]), "end_ns": int(end), "attributes": attrs,
            "events": events, "status": (code, message),
        })
    return out


def _resource_attrs(service_name: str) -> list[tuple[str, Any]]:
    # openinference.project.name: Phoenix files the traces under this project, not "default"
    return [("service.name", service_name), ("openinference.project.name", service_name),
            ("telemetry.sdk.name", "botrace"), ("telemetry.sdk.language", "python"),
            ("telemetry.sdk.version", _VERSION)]


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
                            timeout: float = 10.0,
                            on_retry: Callable[[BaseException], None] | None = None) -> None:
    """POST ``body``; retry connection errors, timeouts, 429 and 5xx with jittered
    exponential backoff, calling ``on_retry(error)`` before each retry. Raises the last
    error when every attempt failed."""
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
        if on_retry is not None:
            on_retry(error)
        delay = min(max_backoff, backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        await asyncio.sleep(delay)


class BatchExporter:
    """Queue finished traces, batch them, encode and post off the host's path.

    Subclasses give ``name``, ``url`` and :meth:`encode`. Bounded by
    ``queue_size`` spans; what does not fit, cannot be delivered after
    ``max_retries``, or is still queued when :meth:`aclose` gives up is counted in
    ``dropped_spans`` (see :meth:`health`): every span handed to the exporter ends
    up ``exported`` or ``dropped``, or is still in ``queue_depth``.

    Health ``state`` is ``"degraded"`` (with a ``reason``) while the exporter is
    losing data: the receiver fails the batch being sent now (it is being retried),
    or the last export failed (until an export succeeds again), or the queue
    overflowed within the last ``degraded_window`` seconds; ``"ok"`` otherwise.
    """

    name = "exporter"

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None,
                 batch_size: int = 512, queue_size: int = 20_000, flush_interval: float = 1.0,
                 max_retries: int = 5, backoff: float = 0.5, timeout: float = 10.0,
                 service_name: str = "botrace", capture_content: bool = False,
                 degraded_window: float = 10.0) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.batch_size = batch_size
        self.queue_size = queue_size
        self.flush_interval = flush_interval
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.service_name = service_name
        self.capture_content = capture_content
        self.degraded_window = degraded_window
        self._queue: deque[tuple[dict, list[dict]]] = deque()
        self._queued_spans = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._wake_scheduled = False
        self._task: asyncio.Task | None = None
        self._session: Any = None
        self._closing = False
        self._inflight = 0
        self._last_log = 0.0
        # what the health state is made of (time.monotonic() of each)
        self._exported_at: float | None = None
        self._failed_at: float | None = None
        self._overflow_at: float | None = None
        #: batch being sent (its id) -> the error it is being retried for
        self._retrying: dict[int, str] = {}
        self.exported_spans = 0
        self.dropped_spans = 0
        self.queue_full_spans = 0  # of dropped_spans: those the queue had no room for
        self.failed_batches = 0
        self.retries = 0
        self.last_error: str | None = None
        self.last_error_ns: int | None = None
        self.last_export_ns: int | None = None

    # -- sink hooks -------------------------------------------------------------

    @hookimpl
    def botrace_startup(self, tracer: Any) -> None:
        self.start()

    @hookimpl
    def botrace_trace_finished(self, trace: Any) -> None:
        if self._closing:
            self._fail(len(trace.spans), "trace finished after the exporter closed", None)
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
                self.queue_full_spans += n
                self._overflow_at = time.monotonic()
                self._note(f"queue full ({self.queue_size} spans); trace dropped", None)
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
        self._inflight += 1
        try:
            body, headers = await asyncio.to_thread(self.encode, batch)
            if self._session is None:
                import aiohttp

                self._session = aiohttp.ClientSession()
            await post_with_retries(self._session, self.url, body, {**self.headers, **headers},
                                    max_retries=self.max_retries, backoff=self.backoff,
                                    timeout=self.timeout,
                                    on_retry=functools.partial(self._on_retry, id(batch)))
        except asyncio.CancelledError:
            self._fail(n, "cancelled while sending", None)
            raise
        except Exception as exc:
            self.failed_batches += 1
            self._fail(n, f"export to {self.url} failed", exc)
            return
        else:
            with self._lock:
                self.exported_spans += n
                self._exported_at = time.monotonic()
                self.last_export_ns = time.time_ns()
        finally:
            self._inflight -= 1
            self._retrying.pop(id(batch), None)

    def _on_retry(self, batch_id: int, error: BaseException) -> None:
        self.retries += 1
        self._retrying[batch_id] = f"{type(error).__name__}: {error}"[:500]

    async def flush(self, timeout: float = 10.0) -> None:
        """Send everything queued now, and wait for the batches being sent (at most
        ``timeout``; a batch being retried may outlast it)."""
        deadline = time.monotonic() + timeout
        while (self._queued_spans or self._inflight) and time.monotonic() < deadline:
            batch = self._take()
            if batch:
                await self._send(batch)
            elif self._inflight:
                await asyncio.sleep(0.01)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Send what is queued (bounded by ``timeout``), then stop. Whatever was not
        exported by then is counted as dropped: the queue is empty afterwards."""
        self._closing = True
        if self._task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(self._task, timeout)
            except (TimeoutError, asyncio.CancelledError):
                pass
            self._task = None
        with self._lock:
            leftover = sum(len(spans) for _, spans in self._queue)
            self._queue.clear()
            self._queued_spans = 0
        if leftover:
            self._fail(leftover, "not sent before close", None)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def encode(self, batch: list[tuple[dict, list[dict]]]) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    # -- health -----------------------------------------------------------------------

    def _fail(self, n: int, what: str, exc: BaseException | None) -> None:
        with self._lock:
            self.dropped_spans += n
            self._failed_at = time.monotonic()
            self._note(what, exc)

    def _note(self, what: str, exc: BaseException | None) -> None:
        text = what if exc is None else f"{what}: {type(exc).__name__}: {exc}"
        self.last_error = text[:500]
        self.last_error_ns = time.time_ns()
        now = time.monotonic()
        if now - self._last_log > 10.0:
            self._last_log = now
            log.warning("botrace %s: %s", self.name, text)

    def state(self) -> tuple[str, str | None]:
        """``("ok", None)``, or ``("degraded", reason)`` while data is being lost."""
        retrying = next(iter(tuple(self._retrying.values())), None)  # (any thread may ask)
        if retrying is not None:
            return "degraded", f"the receiver is failing; retrying a batch after {retrying}"
        failed, exported = self._failed_at, self._exported_at
        if failed is not None and (exported is None or failed > exported):
            return "degraded", f"the last export failed ({self.last_error}); " \
                "spans are dropped until an export succeeds"
        overflow = self._overflow_at
        if overflow is not None and time.monotonic() - overflow < self.degraded_window:
            return "degraded", (f"the export queue ({self.queue_size} spans) overflowed within "
                                f"the last {self.degraded_window:g} s; traces were dropped")
        return "ok", None

    def health(self) -> dict[str, Any]:
        state, reason = self.state()
        out = {
            "name": self.name, "state": state, "url": self.url,
            "queue_depth": self._queued_spans, "queue_max": self.queue_size,
            "exported": self.exported_spans, "dropped": self.dropped_spans,
            "dropped_queue_full": self.queue_full_spans,
            "retries": self.retries, "failed_batches": self.failed_batches,
            "last_error": self.last_error, "last_error_ns": self.last_error_ns,
            "last_export_ns": self.last_export_ns,
        }
        if reason is not None:
            out["reason"] = reason
        return out


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
                   service_name=settings.trace_service_name,
                   capture_content=settings.trace_otlp_capture_content, **kwargs)

    def encode(self, batch: list[tuple[dict, list[dict]]]) -> tuple[bytes, dict[str, str]]:
        return encode_request(batch, self.protocol, self.service_name, self.gzip_body,
                              capture_content=self.capture_content)


def encode_request(batch: Iterable[tuple[Mapping[str, Any], list[dict]]], protocol: str,
                   service_name: str, gzip_body: bool = True, *,
                   capture_content: bool = False) -> tuple[bytes, dict[str, str]]:
    """Body and headers of one OTLP/HTTP request for ``[(trace summary, span dicts)]``."""
    records: list[dict] = []
    for trace, spans in batch:
        records += otlp_spans(trace, spans, capture_content=capture_content)
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
