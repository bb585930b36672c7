"""What keeps the Trace tab safe: headers, error shaping, the optional token, closed CORS.

- Every response carries a Content-Security-Policy without inline script, so
  a chat message that slips past the page's text-only rendering still runs nothing.
- Errors become JSON on API paths; a bug is logged and answered with a 500
  that leaks no traceback; bad input never gets that far (see ``botrace_webui.params``).
- With a token (``botrace serve`` on a non-loopback address) every route but
  the login page and static files asks for ``Authorization: Bearer <token>`` or
  the HttpOnly session cookie the login sets; the token is compared in constant time,
  a session is a random id the server keeps until it expires or its owner logs out.
- Without a token, served on its own (``run_server``), the app answers only requests
  whose ``Host`` is a loopback name or address (or in ``allowed_hosts``): a web page
  whose domain an attacker points at 127.0.0.1 (DNS rebinding) gets a 403.
- CORS is closed unless origins are listed explicitly.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from botrace_webui import keys
from botrace_webui.params import BadParam

__all__ = ["COOKIE", "CSP", "Sessions", "check_token", "error_middleware", "host_allowed",
           "host_check_middleware", "is_loopback", "normalize_hosts", "token_matches"]

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
            return _json_error(400, getattr(exc, "message", str(exc)),
                               _api_param(request, getattr(exc, "param", None)))
        if isinstance(exc, _store_error_types()):
            log.warning("botrace: store error serving %s: %s", request.path, exc)
            return _json_error(503, f"the trace store is unavailable: {exc}")
        log.exception("botrace: error serving %s", request.path)
        return _json_error(500, "internal error (logged on the server)")


def _api_param(request: web.Request, store_key: str | None) -> str | None:
    """The API's name of a store filter the store complained about (``since_ns`` -> ``since``)."""
    routes = request.app.get(keys.ROUTES) or {}
    for route in routes.values():
        for p in route.params:
            if p.store_key is not None and p.store_key == store_key:
                return p.name
    return store_key


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


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return hmac.compare_digest(given.encode(), token.encode())


class Sessions:
    """The logins of a token-guarded app: a random id per login, kept in memory.

    The cookie holds only the id. A session ends at ``ttl_s`` after the login, at logout
    (so a copied cookie stops working then), or when the server restarts. At most
    ``max_sessions`` are kept; past that the oldest login ends first.
    """

    def __init__(self, ttl_s: float = 12 * 3600, max_sessions: int = 1000) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._expires: OrderedDict[str, float] = OrderedDict()  # id -> monotonic expiry

    def create(self) -> str:
        self._forget_expired()
        sid = secrets.token_urlsafe(32)
        self._expires[sid] = time.monotonic() + self.ttl_s
        while len(self._expires) > self.max_sessions:
            self._expires.popitem(last=False)
        return sid

    def valid(self, sid: str) -> bool:
        expires = self._expires.get(sid) if sid else None
        if expires is None:
            return False
        if expires <= time.monotonic():
            del self._expires[sid]
            return False
        return True

    def revoke(self, sid: str) -> None:
        self._expires.pop(sid, None)

    def __len__(self) -> int:
        return len(self._expires)

    def _forget_expired(self) -> None:
        now = time.monotonic()
        while self._expires and next(iter(self._expires.values())) <= now:
            self._expires.popitem(last=False)


def check_token(request: web.Request, token: str) -> bool:
    """True when the request carries the token (Bearer, constant time) or a live login."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and token_matches(auth[7:].strip(), token):
        return True
    return request.app[keys.SESSIONS].valid(request.cookies.get(COOKIE, ""))


# -- Host header (DNS rebinding) ------------------------------------------------------

def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str | None:
    """The name in a ``Host`` header without its port (``[::1]:8765`` -> ``::1``);
    None when it is not a well-formed host[:port]."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, port = value[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
        return name
    name, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None
    return name.removesuffix(".")


def host_allowed(host: str | None, allowed: Iterable[str] = ()) -> bool:
    """Whether a request with this ``Host`` header may be answered: a loopback name or
    address, a name in ``allowed`` (``"*"``: any), or no header at all (browsers always
    send one, and a rebinding attack needs a browser)."""
    if not host:
        return True
    name = _host_name(host)
    if name is None:
        return False
    return is_loopback(name) or name in allowed or "*" in allowed


def normalize_hosts(names: Iterable[str]) -> frozenset[str]:
    """``allowed_hosts`` as compared: lower case, no port, no trailing dot."""
    return frozenset(filter(None, (_host_name(n) for n in names)))


@web.middleware
async def host_check_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 for a ``Host`` the app does not answer to, when the app checks it at all
    (``app[keys.ALLOWED_HOSTS]`` is None when mounted in a host's app)."""
    allowed = request.app[keys.ALLOWED_HOSTS]
    host = request.headers.get("Host")
    if allowed is None or host_allowed(host, allowed):
        return await handler(request)
    message = (f"this server does not answer to Host {host[:100]!r}: without a token it answers "
               "only at a loopback address (127.0.0.1, localhost, [::1]) or a name in "
               "allowed_hosts")
    if _is_api(request):
        return _json_error(403, message)
    return web.Response(status=403, text=f"botrace: {message}\n")


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
