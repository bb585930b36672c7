"""The Trace page inside AstrBot's dashboard: its API calls, forwarded to botrace's app.

AstrBot (since mid-2026) shows a plugin's ``pages/<page>/index.html`` in a
sandboxed iframe behind its own login; the page reaches its plugin only
through the dashboard's bridge, which calls the routes the plugin registered
with ``context.register_web_api`` (``/api/v1/plugins/extensions/<plugin>/…``).
The botrace plugin registers one route, ``/astrbot_plugin_botrace/api/<path:rest>``,
handled by :class:`PageProxy`: it forwards the call to botrace's own aiohttp app
on 127.0.0.1 (the same API the stand-alone page uses) and answers in the
bridge's envelope.

The contract with the page (``botrace_webui/static/js/api.js`` in bridge mode):

==============================  ==================================================
page calls                      forwarded to botrace's API
==============================  ==================================================
``apiGet("api/<path>", q)``     ``GET /api/v1/<path>?q`` → ``{"status": "ok", "data": body}``
``apiPost("api/config", b)``    ``PUT /api/v1/config`` (the bridge has no PUT)
``apiPost("api/<path>", b)``    ``POST /api/v1/<path>``
``subscribeSSE("api/stream")``  ``GET /api/v1/stream`` streamed through unchanged
==============================  ==================================================

An error answer of botrace's API becomes AstrBot's error envelope with the
same status and botrace's message, so the bridge rejects with that text.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from botrace_webui.plugin_page import bridge_route

__all__ = ["PageProxy"]

log = logging.getLogger("botrace.astrbot")

#: the stream's last event: "subscribe again" (see PageProxy._stream)
RECONNECT = b"\nevent: reconnect\ndata: {}\n\n"


class PageProxy:
    """Forwards the plugin page's calls to botrace's app at ``upstream`` (``http://127.0.0.1:port``).

    ``web`` is AstrBot's ``astrbot.api.web`` module (request proxy and response
    helpers); ``token`` is the bearer token botrace's app asks for, if any.
    """

    def __init__(self, web: Any, upstream: str, token: str | None) -> None:
        self.web = web
        self.upstream = upstream
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self.headers)
        return self._session

    async def handle(self, rest: str = "", **_: Any) -> Any:
        """The registered route's handler (``rest``: the path after ``api/``)."""
        web = self.web
        request = web.request
        try:
            method, path = bridge_route(str(request.method), f"api/{rest}")
        except ValueError as exc:
            return web.error_response(str(exc), status_code=400)
        query = [(k, v) for k, v in request.query.items()]
        if path == "/api/v1/stream":
            return web.stream_response(self._stream(query), headers={"Cache-Control": "no-cache"})
        body = await request.json(default=None) if method != "GET" else None
        try:
            async with self._client().request(
                    method, self.upstream + path, params=query, json=body,
                    timeout=aiohttp.ClientTimeout(total=60)) as resp:
                if resp.content_type != "application/json" or "Content-Disposition" in resp.headers:
                    # a download (or anything not an API answer): the bytes as they are
                    data = await resp.read()
                    headers = {k: v for k, v in resp.headers.items()
                               if k.lower() in ("content-disposition", "cache-control")}
                    return web.stream_response(iter([data]), content_type=resp.content_type,
                                               status_code=resp.status, headers=headers)
                data = await resp.json()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("botrace: the Trace page's call %s %s failed: %s", method, path, exc)
            return web.error_response(f"botrace is not answering ({exc})", status_code=502)
        if status < 400:
            return web.json_response({"status": "ok", "data": data})
        message = data.get("error") if isinstance(data, dict) else None
        return web.error_response(message or f"HTTP {status}", status_code=status, data=data)

    async def _stream(self, query: list[tuple[str, str]]) -> AsyncIterator[bytes]:
        """botrace's Server-Sent Events, chunk by chunk, then a ``reconnect`` event.

        AstrBot's bridge tells the page when a stream fails but not when it ends, and a
        plugin reload ends it (the botrace behind the route is a new one): the last event
        asks the page to subscribe again, at once.
        """
        try:
            async with self._client().get(
                    self.upstream + "/api/v1/stream", params=query,
                    headers={"Accept": "text/event-stream"},
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                if resp.status == 200:
                    async for chunk in resp.content.iter_any():
                        yield chunk
                else:
                    log.info("botrace: the Trace page's live stream was refused: HTTP %s",
                             resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("botrace: the Trace page's live stream ended: %s", exc)
        yield RECONNECT
