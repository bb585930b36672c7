"""The REST API under ``/api/v1``: a thin, validated layer over ``botrace.store.TraceStore``.

Every route is declared once in :data:`ROUTES` (method, path, parameters,
body); the same table registers the handlers, validates the query strings and
writes ``/api/v1/openapi.json``. Bad parameters get a 400 naming the
parameter, unknown ids a 404; nothing a client sends can produce a 500.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from botrace.compare import compare_traces
from botrace.critical_path import critical_path_doc
from botrace.tree import build_tree
from botrace_webui import keys
from botrace_webui.download import trace_to_otlp_json
from botrace_webui.health import WINDOW_S, LossWatch, assess
from botrace_webui.livehub import heartbeat_frame, sse_frame
from botrace_webui.params import (
    HEX16,
    HEX32,
    SPAN_TYPES,
    TRACE_STATUSES,
    BadParam,
    Param,
    parse_query,
    store_filters,
)

__all__ = ["API_PREFIX", "ROUTES", "ApiRoute", "setup_api"]

log = logging.getLogger("botrace.webui.api")

API_PREFIX = "/api/v1"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# -- parameters shared by several routes ------------------------------------------

LIMIT = Param("limit", "int", "page size", minimum=1, maximum=500, default=50)
CURSOR = Param("cursor", "cursor", "the next_cursor of the previous page", max_length=2000)
SINCE = Param("since", "time", "start of the window: 15m, 24h, 7d ago, or ISO 8601", store_key="since_ns")
UNTIL = Param("until", "time", "end of the window (exclusive)", store_key="until_ns")
USER = Param("user_id", "str", "exact user id", store_key="user_id")
SESSION = Param("session_id", "str", "exact session id", store_key="session_id")
UMO = Param("umo", "str", "exact unified message origin", store_key="umo")
PLUGIN = Param("plugin", "str", "plugin name or display name (case-insensitive)", store_key="plugin")

TRACE_FILTERS = (
    SINCE, UNTIL, USER, SESSION, UMO, PLUGIN,
    Param("status", "enum", "trace status", choices=TRACE_STATUSES, store_key="status"),
    Param("span_type", "enum", "the trace has a span of this type", choices=SPAN_TYPES,
          store_key="span_type"),
    Param("model", "str", "the trace has an LLM call to this model", store_key="model"),
    Param("tool", "str", "the trace has a call of this tool", store_key="tool"),
    # at most ~31 years: in ns it stays within SQLite's 64-bit INTEGER
    Param("min_duration_ms", "float", "trace duration at least (ms)", minimum=0, maximum=1e12,
          store_key="min_duration_ms"),
    Param("q", "str", "text in the message outline (case-insensitive)", store_key="q"),
)


@dataclass(frozen=True)
class ApiRoute:
    """One API route: the handler plus what OpenAPI says about it."""

    method: str
    path: str  #: below API_PREFIX, aiohttp syntax ({name})
    name: str
    summary: str
    handler: Handler
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None  #: JSON schema of the request body
    responses: dict[str, str] = field(default_factory=dict)
    produces: str = "application/json"
    needs_chat: bool = False


def _json(data: Any, status: int = 200, **kw: Any) -> web.Response:
    return web.json_response(data, status=status,
                             dumps=lambda o: json.dumps(o, default=repr, separators=(",", ":")), **kw)


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if param is not None:
        body["param"] = param
    return _json(body, status=status)


def _query(request: web.Request, route: ApiRoute) -> dict[str, Any]:
    values = parse_query(request.query, route.params)
    if "since" in values and "until" in values and values["until"] < values["since"]:
        values["until"] = values["since"]  # a window that ends before it starts is empty
    return values


def _store(request: web.Request) -> Any:
    store = request.app[keys.STORE]
    if store is None:
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": "no trace store is configured (trace_store_enable is off)"}),
            content_type="application/json")
    return store


def _trace_id(request: web.Request) -> str:
    tid = request.match_info["trace_id"].lower()
    if not HEX32.match(tid):
        raise BadParam("trace_id", f"trace_id must be 32 hex characters, got {request.match_info['trace_id']!r}")
    return tid


def _not_found(what: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=json.dumps({"error": f"{what} not found"}), content_type="application/json")


async def _load_trace(request: web.Request, tid: str) -> dict[str, Any]:
    doc = await _store(request).get_trace(tid, flat=True)
    if doc is None:
        raise _not_found(f"trace {tid}")
    return doc


# -- handlers -----------------------------------------------------------------------

async def list_traces(request: web.Request) -> web.Response:
    route = request.app[keys.ROUTES]["list_traces"]
    q = _query(request, route)
    page = await _store(request).list_traces(
        filters=store_filters(q, route.params), limit=q["limit"], cursor=q.get("cursor"),
        sort=q.get("sort"))
    return _json(page)


async def latency(request: web.Request) -> web.Response:
    route = request.app[keys.ROUTES]["latency"]
    q = _query(request, route)
    return _json(await _store(request).trace_points(
        filters=store_filters(q, route.params), limit=q["limit"]))


async def get_trace(request: web.Request) -> web.Response:
    q = _query(request, request.app[keys.ROUTES]["get_trace"])
    tid = _trace_id(request)
    doc = await _load_trace(request, tid)
    spans = doc["spans"]
    if q["values"] == "none":
        spans = [_without_values(s) for s in spans]
    elif q["values"] == "root":
        spans = [s if s["parent_id"] is None else _without_values(s) for s in spans]
    out: dict[str, Any] = {"trace": doc["trace"]}
    if q["critical_path"]:
        running = doc["trace"].get("status") == "running"
        out["critical_path"] = critical_path_doc(spans, now_ns=time.time_ns() if running else None)
    if q["shape"] == "flat":
        out["spans"] = spans
    else:
        out["tree"] = build_tree(spans)
    return _json(out)


async def get_span(request: web.Request) -> web.Response:
    q = _query(request, request.app[keys.ROUTES]["get_span"])
    tid = _trace_id(request)
    sid = request.match_info["span_id"].lower()
    if not HEX16.match(sid):
        raise BadParam("span_id", f"span_id must be 16 hex characters, got {request.match_info['span_id']!r}")
    doc = await _load_trace(request, tid)
    for span in doc["spans"]:
        if span["span_id"] == sid:
            span = {k: v for k, v in span.items() if k != "children"}
            headers = {}
            if q.get("download"):
                headers["Content-Disposition"] = f'attachment; filename="span-{tid}-{sid}.json"'
            return _json(span, headers=headers)
    raise _not_found(f"span {sid} in trace {tid}")


async def download_trace(request: web.Request) -> web.Response:
    q = _query(request, request.app[keys.ROUTES]["download_trace"])
    tid = _trace_id(request)
    doc = await _load_trace(request, tid)
    if q["format"] == "otlp":
        body = trace_to_otlp_json(doc["trace"], doc["spans"], service_name=request.app[keys.SERVICE_NAME])
        name = f"trace-{tid}.otlp.json"
    else:
        body = {"trace": doc["trace"], "spans": [{k: v for k, v in s.items() if k != "children"}
                                                 for s in doc["spans"]]}
        name = f"trace-{tid}.json"
    return _json(body, headers={"Content-Disposition": f'attachment; filename="{name}"'})


#: a required query parameter holding a trace id (OpenAPI: required, with the id's pattern)
_TRACE_ID_PARAM = {"required": True, "schema": {"pattern": "^[0-9a-fA-F]{32}$", "minLength": 32}}


def _trace_id_param(q: dict[str, Any], name: str) -> str:
    raw = q.get(name)
    if raw is None:
        raise BadParam(name, f"parameter {name!r} is required (a trace id)")
    tid = raw.strip().lower()
    if not HEX32.match(tid):
        raise BadParam(name, f"{name} must be a trace id (32 hex characters), got {raw!r}")
    return tid


async def compare(request: web.Request) -> web.Response:
    q = _query(request, request.app[keys.ROUTES]["compare"])
    a, b = _trace_id_param(q, "a"), _trace_id_param(q, "b")
    doc_a = await _load_trace(request, a)
    doc_b = doc_a if b == a else await _load_trace(request, b)
    result = compare_traces(doc_a["spans"], doc_b["spans"])
    return _json({"a": doc_a["trace"], "b": doc_b["trace"], **result})


async def stats(request: web.Request) -> web.Response:
    q = _query(request, request.app[keys.ROUTES]["stats"])
    filters = {k: q[k] for k in ("plugin", "user_id", "session_id", "status") if k in q}
    result = await _store(request).stats(group_by=q["group_by"], since_ns=q.get("since"),
                                         until_ns=q.get("until"), filters=filters or None,
                                         percentiles=q["percentiles"])
    return _json(result)


async def spend(request: web.Request) -> web.Response:
    q = _query(request, request.app[keys.ROUTES]["spend"])
    return _json(await _store(request).spend(by=q["by"], since_ns=q.get("since"),
                                             until_ns=q.get("until"), limit=q["limit"]))


async def sessions(request: web.Request) -> web.Response:
    route = request.app[keys.ROUTES]["sessions"]
    q = _query(request, route)
    return _json(await _store(request).sessions(filters=store_filters(q, route.params),
                                                limit=q["limit"], cursor=q.get("cursor")))


async def users(request: web.Request) -> web.Response:
    route = request.app[keys.ROUTES]["users"]
    q = _query(request, route)
    return _json(await _store(request).users(filters=store_filters(q, route.params),
                                             limit=q["limit"], cursor=q.get("cursor")))


async def health(request: web.Request) -> web.Response:
    _query(request, request.app[keys.ROUTES]["health"])
    tracer = request.app[keys.TRACER]
    store = request.app[keys.STORE]
    out: dict[str, Any] = {"status": "ok", "read_only": tracer is None}
    # health must answer even when a part of it is broken
    if tracer is not None:
        try:
            out["tracer"] = tracer.health()
        except Exception as exc:
            log.exception("botrace: tracer.health() failed")
            out["tracer"] = {"error": repr(exc)}
    if store is not None:
        try:
            out["store"] = store.health()
        except Exception as exc:
            log.exception("botrace: store.health() failed")
            out["store"] = {"error": repr(exc)}
    out["live"] = request.app[keys.HUB].stats()
    # degraded: a part says so, or lost data in the last minutes (botrace_webui.health)
    out["problems"] = assess(out, request.app[keys.LOSS_WATCH])
    out["status"] = "degraded" if out["problems"] else "ok"
    out["window_s"] = WINDOW_S
    return _json(out)


def _config_doc(app: web.Application) -> dict[str, Any]:
    tracer = app[keys.TRACER]
    return {
        "trace_enable": bool(tracer.enabled) if tracer is not None else None,
        "read_only": tracer is None,
        "chat": app[keys.CHAT] is not None,
        "live": tracer is not None,
        "heartbeat_s": app[keys.HUB].heartbeat_s,
        "version": app[keys.VERSION],
    }


async def get_config(request: web.Request) -> web.Response:
    _query(request, request.app[keys.ROUTES]["get_config"])
    return _json(_config_doc(request.app))


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        # Also what keeps a cross-site HTML form from flipping the switch.
        raise BadParam("body", "the request body must be JSON (Content-Type: application/json)")
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise BadParam("body", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadParam("body", "the request body must be a JSON object")
    return body


async def put_config(request: web.Request) -> web.Response:
    _query(request, request.app[keys.ROUTES]["put_config"])
    body = await _json_body(request)
    unknown = sorted(set(body) - {"trace_enable"})
    if unknown:
        raise BadParam(unknown[0], f"unknown setting {unknown[0]!r} (only trace_enable can be changed here)")
    if not isinstance(body.get("trace_enable"), bool):
        raise BadParam("trace_enable", "trace_enable must be true or false")
    tracer = request.app[keys.TRACER]
    if tracer is None:
        return _error(409, "read-only viewer: there is no running tracer to switch", "trace_enable")
    tracer.set_enabled(body["trace_enable"])  # open pages hear of it from the live hub
    return _json(_config_doc(request.app))


async def chat(request: web.Request) -> web.Response:
    _query(request, request.app[keys.ROUTES]["chat"])
    fn = request.app[keys.CHAT]
    if fn is None:
        raise _not_found("chat (the host did not provide one)")
    body = await _json_body(request)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadParam("text", "text must be a non-empty string")
    if len(text) > 8000:
        raise BadParam("text", "text is longer than 8000 characters")
    user_id = body.get("user_id", "demo-user")
    session = body.get("session", "demo-session")
    for name, value in (("user_id", user_id), ("session", session)):
        if not isinstance(value, str) or not value or len(value) > 200:
            raise BadParam(name, f"{name} must be a string of 1..200 characters")
    try:
        reply = await fn(text, user_id, session)
    except Exception as exc:
        # The host's own error, not the client's: answer it readably, the trace shows the details.
        log.warning("botrace: demo chat callable raised %r", exc)
        return _json({"reply": None, "error": f"{type(exc).__name__}: {exc}"}, status=502)
    if isinstance(reply, dict):
        return _json({"reply": reply.get("reply"), **{k: v for k, v in reply.items() if k != "reply"}})
    return _json({"reply": None if reply is None else str(reply)})


async def stream(request: web.Request) -> web.StreamResponse:
    q = _query(request, request.app[keys.ROUTES]["stream"])
    hub = request.app[keys.HUB]
    last_id = request.headers.get("Last-Event-ID") or q.get("last_event_id")
    # Subscribe and read the replay buffer before the first await, so no event
    # falls between the two.
    sub = hub.subscribe(umo=q.get("umo"), plugin=q.get("plugin"))
    replay = hub.replay_since(last_id, sub) if last_id else []
    hello = {
        "epoch": hub.epoch,
        "resume": "none" if not last_id else ("gap" if replay is None else "replayed"),
        "replayed": len(replay or ()),
        "heartbeat_s": hub.heartbeat_s,
        "queue_size": sub.maxsize,
        # without a tracer the hub still carries what the store poller finds
        "live": request.app[keys.TRACER] is not None or request.app[keys.STORE] is not None,
        "source": "tracer" if request.app[keys.TRACER] is not None else "store",
    }
    hello_id = hub.event_id(hub.last_seq)
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache, no-transform",
        "X-Accel-Buffering": "no",
    })
    try:
        await resp.prepare(request)
        frames = [b"retry: 2000\n\n"]
        frames += [sse_frame(e.kind, e.data, hub.event_id(e.seq)) for e in replay or ()]
        frames.append(sse_frame("hello", json.dumps(hello), hello_id))
        await resp.write(b"".join(frames))
        while not sub.closed:
            events = await sub.next(timeout=hub.heartbeat_s)
            out = []
            lost = sub.take_lost()
            if lost:
                out.append(sse_frame("lost", json.dumps({"count": lost})))
            out += [sse_frame(e.kind, e.data, hub.event_id(e.seq)) for e in events]
            if not out:
                out.append(heartbeat_frame())
            await resp.write(b"".join(out))
    except ConnectionResetError:
        pass  # the page went away
    finally:
        sub.close()
    return resp


async def openapi(request: web.Request) -> web.Response:
    from botrace_webui.openapi import build_openapi

    _query(request, request.app[keys.ROUTES]["openapi"])
    return _json(build_openapi(request.app))


# -- helpers ------------------------------------------------------------------------

_VALUE_KEYS = ("input", "output", "events")


def _without_values(span: dict[str, Any]) -> dict[str, Any]:
    """A span for drawing the tree: no input/output bodies (the detail pane fetches them)."""
    out = {k: v for k, v in span.items() if k not in _VALUE_KEYS and k != "children"}
    meta = span.get("meta") or {}
    # keep the small, well-known meta the rows and totals use
    out["meta"] = {k: meta[k] for k in _ROW_META if k in meta}
    if span.get("error"):
        out["error"] = {"type": span["error"].get("type"), "message": str(span["error"].get("message", ""))[:300]}
    return out


_ROW_META = ("model", "provider", "tool_name", "agent_name", "stage", "handler_name",
             "input_tokens", "output_tokens", "cached_tokens", "ttft_ms", "cost_usd")


ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute("GET", "/traces", "list_traces", "List traces, newest first, with filters and a cursor",
             list_traces, (LIMIT, CURSOR, *TRACE_FILTERS,
                           Param("sort", "enum", "order: -time (newest first, the default), time, "
                                 "duration, tokens (in + out), cost; a leading - is largest first. "
                                 "Ties stay newest first; a running trace sorts as the shortest; "
                                 "the cursor belongs to its sort",
                                 choices=("-time", "time", "-duration", "duration", "-tokens",
                                          "tokens", "-cost", "cost"), default="-time")),
             responses={"200": "{traces: [summary], next_cursor, total, total_capped}"}),
    ApiRoute("GET", "/latency", "latency", "Duration of the newest finished traces matching the "
             "list's filters (a latency scatter)", latency,
             (Param("limit", "int", "how many traces, newest first", minimum=1, maximum=2000,
                    default=500), *TRACE_FILTERS),
             responses={"200": "{points: [{trace_id, start_ns, duration_ns, status}], more}"}),
    ApiRoute("GET", "/traces/{trace_id}", "get_trace", "One trace: summary and span tree",
             get_trace, (
                 Param("shape", "enum", "tree (nested children) or flat (start order)",
                       choices=("tree", "flat"), default="tree"),
                 Param("values", "enum", "full; none to leave out input/output (the page's fast path); "
                       "root for the root span's only (a message's text and reply)",
                       choices=("full", "none", "root"), default="full"),
                 Param("critical_path", "bool", "add critical_path: the spans that determined the "
                       "trace's end-to-end time (default true; false leaves it out)", default=True)),
             responses={"200": "{trace, tree, critical_path} or {trace, spans, critical_path}; critical_path: "
                               "{root_id, start_ns, end_ns, total_ns, spans: [{span_id, ns}] (largest first), "
                               "segments: [{span_id, start_ns, end_ns}] (time order), summary: [{label, name, "
                               "span_type, plugin, plugin_display, span_ids, ns, share}] (largest first)}",
                       "404": "unknown trace"}),
    ApiRoute("GET", "/traces/{trace_id}/spans/{span_id}", "get_span", "One span with its full values",
             get_span, (Param("download", "bool", "serve as an attachment"),),
             responses={"200": "span", "404": "unknown trace or span"}),
    ApiRoute("GET", "/traces/{trace_id}/download", "download_trace", "Download one trace",
             download_trace, (Param("format", "enum", "json (botrace) or otlp (OTLP/JSON)",
                                    choices=("json", "otlp"), default="json"),),
             responses={"200": "attachment", "404": "unknown trace"}),
    ApiRoute("GET", "/compare", "compare", "Two traces side by side: their spans aligned by path",
             compare, tuple(Param(name, "str", f"trace id of trace {name.upper()} (32 hex characters)",
                                  max_length=32, extra=_TRACE_ID_PARAM) for name in ("a", "b")),
             responses={"200": "{a, b (the traces' summaries), rows: [{path, name, span_type, depth, "
                               "occurrence, only: a / b / null, a, b: {span_id, status, start_offset_ns, "
                               "duration_ns, self_ns, input_tokens, output_tokens, cost_usd, plugin, "
                               "plugin_display} or null, delta: {duration_ns, self_ns, tokens, cost_usd} "
                               "(B minus A) or null}], summary: {aligned, only_a, only_b, largest: [row "
                               "index]}}",
                       "404": "unknown trace"}),
    ApiRoute("GET", "/stats", "stats", "Latency, errors and tokens per stage/plugin/tool/model",
             stats, (
                 Param("group_by", "enum", "what to group spans by",
                       choices=("stage", "plugin", "tool", "model", "span_type", "name"), default="stage"),
                 SINCE, UNTIL, PLUGIN, USER, SESSION,
                 Param("status", "enum", "span status", choices=TRACE_STATUSES),
                 Param("percentiles", "bool", "group_by=plugin: false leaves out the top-level "
                       "percentiles (no spans read; for a list of plugins)", default=True)),
             responses={"200": "{group_by, groups: [{key, count, errors, p50_ms, p95_ms, ...}]}"}),
    ApiRoute("GET", "/spend", "spend", "Tokens and cost per user or conversation, top spenders first",
             spend, (
                 Param("by", "enum", "user, or session (the conversation: session id, else umo)",
                       choices=("user", "session"), default="user"),
                 SINCE, UNTIL,
                 Param("limit", "int", "how many spenders", minimum=1, maximum=100, default=20)),
             responses={"200": "{by, since_ns, until_ns, groups: [{key, trace_count, input_tokens, "
                               "output_tokens, cost_usd, cost_share, plugins}], total, totals}"}),
    ApiRoute("GET", "/sessions", "sessions", "Conversations (sessions), most recent first",
             sessions, (LIMIT, CURSOR, SINCE, UNTIL, USER, UMO),
             responses={"200": "{sessions, next_cursor, total}"}),
    ApiRoute("GET", "/users", "users", "Users, most recent first", users,
             (LIMIT, CURSOR, SINCE, UNTIL, USER, UMO),
             responses={"200": "{users, next_cursor, total}"}),
    ApiRoute("GET", "/health", "health", "Tracer queue, dropped counts, sink and store errors",
             health, responses={"200": "{status: ok / degraded, problems: [{part, problem}], "
                                       "tracer, store, live, read_only, window_s}"}),
    ApiRoute("GET", "/config", "get_config", "Whether tracing is on, and what this page may do",
             get_config, responses={"200": "{trace_enable, read_only, chat, live}"}),
    ApiRoute("PUT", "/config", "put_config", "Switch tracing on or off (trace_enable)", put_config,
             body={"type": "object", "properties": {"trace_enable": {"type": "boolean"}},
                   "required": ["trace_enable"], "additionalProperties": False},
             responses={"200": "the new config", "409": "read-only viewer"}),
    ApiRoute("POST", "/chat", "chat", "Demo: send a message to the host", chat,
             body={"type": "object", "properties": {
                 "text": {"type": "string", "minLength": 1, "maxLength": 8000, "pattern": r"\S"},
                 "user_id": {"type": "string", "minLength": 1, "maxLength": 200},
                 "session": {"type": "string", "minLength": 1, "maxLength": 200}},
                 "required": ["text"]},
             responses={"200": "{reply}", "502": "the host raised"}, needs_chat=True),
    ApiRoute("GET", "/stream", "stream", "Server-Sent Events: trace/span started/finished",
             stream, (UMO, PLUGIN, Param("last_event_id", "str",
                                         "resume after this event id (same as the Last-Event-ID header)",
                                         max_length=100)),
             responses={"200": "text/event-stream"}, produces="text/event-stream"),
    ApiRoute("GET", "/openapi.json", "openapi", "This description", openapi,
             responses={"200": "OpenAPI 3.1 document"}),
)


def setup_api(app: web.Application) -> None:
    """Register the API routes on ``app`` (the chat route only when there is a chat)."""
    table: dict[str, ApiRoute] = {}
    for route in ROUTES:
        if route.needs_chat and app[keys.CHAT] is None:
            continue
        table[route.name] = route
        app.router.add_route(route.method, API_PREFIX + route.path, route.handler, name="api." + route.name)
    app[keys.ROUTES] = table
    app[keys.LOSS_WATCH] = LossWatch()
