"""A minimal page for ``botrace demo`` when the web UI package is not installed.

``GET /`` says so; ``POST /api/v1/chat`` with ``{"text", "user_id", "session"}``
sends a message to the reference host and answers ``{"reply", "trace_id"}``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

__all__ = ["create_placeholder_app"]

_PAGE = """<!doctype html><meta charset="utf-8"><title>botrace demo</title>
<h1>botrace demo</h1><p>The reference host is running. The Trace page (package
<code>webui</code>) is not installed; POST <code>/api/v1/chat</code> with
<code>{"text": "...", "user_id": "...", "session": "..."}</code> to talk to the host.</p>"""


def create_placeholder_app(chat: Any) -> web.Application:
    async def index(request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html")

    async def post_chat(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return web.json_response({"error": "text must be a non-empty string"}, status=400)
        out = await chat(text, str(body.get("user_id") or "web"), str(body.get("session") or "web"))
        return web.json_response(out)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_post("/api/v1/chat", post_chat)
    return app
