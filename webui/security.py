"""What keeps the Trace tab safe: headers, error shaping, the optional token, closed CORS.

- Every response carries a Content-Security-Policy without inline script, so
  a chat message that slips past the page's text-only rendering still runs nothing.
- Errors become JSON on API paths; a bug is logged and answered with a 500
  that leaks no traceback; bad input never gets that far (see ``botrace_webui.params``).
- With a token (``botrace serve`` on a non-loopback address) every route but
  the login page and static files asks for ``Authorization: Bearer <token>`` or
  the HttpOnly session cookie the login sets; both are compared in constant time.
- CORS is closed unless origins are listed explicitly.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from botrace_webui import keys
from botrace_webui.params import BadParam

__all__ = ["COOKIE", "CSP", "check_token", "error_middleware", "session_value", "token_matches"]

log = logging.getLogger("botrace.webui")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'self'")
COOKIE = "botrace_session"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_api(request: web.Request) -> bool:
    return "/api/v1/" in request.path


def _json_error(status: int, message: str, param: str | None = None,
                headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": message} | ({"param": param} if param is not None else {})
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


def _query_error_types() -> tuple[type[BaseException], ...]:
    try:
        from botrace.store import QueryError
    except ImportError:  # pragma: no cover - the store is optional for the page itself
        return ()
    return (QueryError,)


def _store_error_types() -> tuple[type[BaseException], ...]:
    try:
        from botrace.store import StoreError
    except ImportError:  # pragma: no cover
        return ()
    return (StoreError,)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadParam as exc:
        return _json_error(400, exc.message, exc.param)
    except web.HTTPException as exc:
        if _is_api(request) and exc.status >= 400 and exc.content_type != "application/json":
            message = exc.reason
            if exc.status == 404:  # the page's messages end in "not found" for a 404
                message = f"API path {request.path} not found"
            elif exc.status == 405:
                message = f"{request.method} is not allowed on {request.path}"
            return _json_error(exc.status, message, headers={
                k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")})
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if isinstance(exc, _query_error_types()):
            return _json_error(400, getattr(exc, "message", str(exc)), getattr(exc, "param", None))
        if isinstance(exc, _store_error_types()):
            log.warning("botrace: store error serving %s: %s", request.path, exc)
            return _json_error(503, f"the trace store is unavailable: {exc}")
        log.exception("botrace: error serving %s", request.path)
        return _json_error(500, "internal error (logged on the server)")


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: also covers streamed (SSE) and static responses."""
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("X-Frame-Options", "SAMEORIGIN")
    if _is_api(request):
        h.setdefault("Cache-Control", "no-store")
    origin = request.headers.get("Origin")
    if origin and origin in request.app[keys.CORS]:
        h["Access-Control-Allow-Origin"] = origin
        h["Vary"] = "Origin"


@web.middleware
async def cors_preflight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS" and origin and origin in request.app[keys.CORS]:
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, PUT, POST",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, Last-Event-ID",
            "Access-Control-Max-Age": "600", "Vary": "Origin"})
    return await handler(request)


def session_value(token: str) -> str:
    """The cookie value a login sets: derived from the token, never the token itself."""
    return hmac.new(token.encode(), b"botrace-session-v1", hashlib.sha256).hexdigest()


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return hmac.compare_digest(given.encode(), token.encode())


def check_token(request: web.Request, token: str) -> bool:
    """True when the request carries the token (Bearer) or the login cookie; constant time."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and token_matches(auth[7:].strip(), token):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), session_value(token).encode())


def _public(request: web.Request) -> bool:
    route = request.match_info.route
    name = route.name or ""
    return name in ("page.login", "page.login_post") or name.startswith("static")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[keys.TOKEN]
    if not token or _public(request) or check_token(request, token):
        return await handler(request)
    if _is_api(request):
        return _json_error(401, "a token is required: Authorization: Bearer <token>, or log in",
                           headers={"WWW-Authenticate": 'Bearer realm="botrace"'})
    login = request.app.router["page.login"].url_for().with_query({"next": request.path_qs})
    raise web.HTTPFound(login)
