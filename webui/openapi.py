"""``/api/v1/openapi.json``, written from the same route table that registers the handlers."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from botrace_webui import keys
from botrace_webui.api import API_PREFIX

__all__ = ["build_openapi"]

_PATH_PARAM = re.compile(r"{(\w+)}")
_PATH_PARAM_DOC = {
    "trace_id": ("32 hex characters", {"type": "string", "pattern": "^[0-9a-f]{32}$"}),
    "span_id": ("16 hex characters", {"type": "string", "pattern": "^[0-9a-f]{16}$"}),
}
_ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}, "param": {"type": "string"}},
    "required": ["error"]}}}}


def build_openapi(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes registered on ``app``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app[keys.ROUTES].values():
        op: dict[str, Any] = {"operationId": route.name, "summary": route.summary, "parameters": []}
        for name in _PATH_PARAM.findall(route.path):
            desc, schema = _PATH_PARAM_DOC[name]
            op["parameters"].append({"name": name, "in": "path", "required": True,
                                     "description": desc, "schema": schema})
        for p in route.params:
            # extra: {"required": True} for a parameter the route cannot do without,
            # {"schema": {...}} for what its handler checks beyond the kind (a trace id's pattern)
            op["parameters"].append({"name": p.name, "in": "query",
                                     "required": bool(p.extra.get("required")),
                                     "description": p.description,
                                     "schema": {**p.schema(), **p.extra.get("schema", {})}})
        if route.name == "stream":
            op["parameters"].append({"name": "Last-Event-ID", "in": "header", "required": False,
                                     "description": "resume after this event id",
                                     "schema": {"type": "string"}})
        if route.body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": route.body}}}
        responses: dict[str, Any] = {}
        for code, desc in route.responses.items():
            if code.startswith("2"):
                responses[code] = {"description": desc, "content": {route.produces: {}}}
            else:
                responses[code] = {**_ERROR, "description": desc}
        responses.setdefault("400", {**_ERROR, "description": "bad parameter (names it)"})
        responses["403"] = {**_ERROR, "description": "a Host this server does not answer to (a "
                                                     "token-less server answers loopback names only)"}
        if app[keys.TOKEN]:
            responses["401"] = {**_ERROR, "description": "missing or wrong token"}
        op["responses"] = responses
        paths.setdefault(API_PREFIX + route.path, {})[route.method.lower()] = op
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "botrace trace API", "version": app[keys.VERSION],
                 "description": "Read botrace traces, watch them live, flip trace_enable. "
                                "Paths are relative to where the sub-app is mounted."},
        "paths": paths,
    }
    if app[keys.TOKEN]:
        doc["components"] = {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "botrace_session"}}}
        doc["security"] = [{"bearer": []}, {"cookie": []}]
    return doc
