"""Typed keys of the values the sub-app keeps (``app[keys.STORE]`` and so on)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from botrace_webui.livehub import LiveHub

ChatFn = Callable[[str, str, str], Awaitable[Any]]

TRACER: web.AppKey[Any] = web.AppKey("botrace_tracer", object)
STORE: web.AppKey[Any] = web.AppKey("botrace_store", object)
HUB: web.AppKey[LiveHub] = web.AppKey("botrace_hub", LiveHub)
CHAT: web.AppKey[ChatFn | None] = web.AppKey("botrace_chat", object)
ROUTES: web.AppKey[dict[str, Any]] = web.AppKey("botrace_routes", dict)
TOKEN: web.AppKey[str | None] = web.AppKey("botrace_token", object)
SERVICE_NAME: web.AppKey[str] = web.AppKey("botrace_service_name", str)
VERSION: web.AppKey[str] = web.AppKey("botrace_version", str)
JINJA: web.AppKey[Any] = web.AppKey("botrace_jinja", object)
CORS: web.AppKey[frozenset[str]] = web.AppKey("botrace_cors", frozenset)
TITLE: web.AppKey[str] = web.AppKey("botrace_title", str)
#: the Host names answered besides loopback ones; None: no check (mounted in a host's app)
ALLOWED_HOSTS: web.AppKey[frozenset[str] | None] = web.AppKey("botrace_allowed_hosts", object)
#: the logins of a token-guarded app (botrace_webui.security.Sessions)
SESSIONS: web.AppKey[Any] = web.AppKey("botrace_sessions", object)
#: what the health endpoint remembers between calls (botrace_webui.health.LossWatch)
LOSS_WATCH: web.AppKey[Any] = web.AppKey("botrace_loss_watch", object)
