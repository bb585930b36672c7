"""The sub-app factory and the standalone server (``botrace serve`` / ``botrace demo``)."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from botrace_webui import keys
from botrace_webui.api import setup_api
from botrace_webui.livehub import LiveHub
from botrace_webui.poller import StorePoller
from botrace_webui.security import (
    COOKIE,
    Sessions,
    add_security_headers,
    auth_middleware,
    cors_preflight_middleware,
    error_middleware,
    host_check_middleware,
    is_loopback,
    normalize_hosts,
    token_matches,
)

__all__ = ["check_bind", "create_app", "is_loopback", "run_server", "serve"]

log = logging.getLogger("botrace.webui")

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"

#: page routes the browser may open directly; the page's router draws the view
PAGES = {
    "page.index": "/",
    "page.trace": "/traces/{trace_id}",
    "page.compare": "/compare/{trace_a}/{trace_b}",
    "page.sessions": "/sessions",
    "page.conversation": "/conversation",
    "page.users": "/users",
    "page.user": "/user",
    "page.stats": "/stats",
    "page.health": "/health",
}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("botrace")
    except Exception:  # not installed (running from a checkout)
        return "0"


def create_app(tracer: Any = None, store: Any = None, chat: keys.ChatFn | None = None, *,
               hub: LiveHub | None = None, token: str | None = None,
               cors_origins: Iterable[str] = (), title: str = "botrace",
               service_name: str | None = None, poll_interval_s: float = 2.0,
               allowed_hosts: Iterable[str] | None = None,
               session_ttl_s: float = 12 * 3600) -> web.Application:
    """The Trace tab as an aiohttp application, to mount or to run on its own.

    - ``tracer``: the host's running :class:`botrace.tracer.Tracer`. ``None``
      makes a read-only viewer (``botrace serve --db``): no live stream, no switch.
    - ``store``: an opened :class:`botrace.store.TraceStore` the API reads.
    - ``chat``: optional ``async (text, user_id, session) -> reply`` the page's
      chat box calls (``botrace demo``); without it there is no chat box.
    - ``hub``: the :class:`~botrace_webui.livehub.LiveHub` to stream from; by default one
      is created and registered on ``tracer`` while the app runs.
    - ``token``: require ``Authorization: Bearer <token>`` or a login. Leave it
      None when mounting in a host that has its own auth (its middlewares run first).
    - ``cors_origins``: origins allowed to call the API from another site (none by default).
    - ``poll_interval_s``: without a tracer, how often to read the store for traces
      another process wrote, to show them live (0: never).
    - ``allowed_hosts``: ``Host`` names answered besides loopback ones (``"*"``: any).
      Given, it is checked wherever the app runs; left None, it is checked only when the
      app has no token and :func:`run_server` serves it (loopback names only), never when
      it is mounted in a host's app (the host's server and auth decide there).
    - ``session_ttl_s``: with a token, how long a login lasts (12 h).

    Mount it with ``host_app.add_subapp("/trace", create_app(tracer, store))``.
    """
    app = web.Application(middlewares=[error_middleware, host_check_middleware,
                                       cors_preflight_middleware, auth_middleware])
    app[keys.TRACER] = tracer
    app[keys.STORE] = store
    app[keys.CHAT] = chat
    app[keys.TOKEN] = token or None
    app[keys.ALLOWED_HOSTS] = None if allowed_hosts is None else normalize_hosts(allowed_hosts)
    app[keys.SESSIONS] = Sessions(ttl_s=session_ttl_s)
    app[keys.CORS] = frozenset(cors_origins)
    app[keys.TITLE] = title
    app[keys.VERSION] = _version()
    settings = getattr(tracer, "settings", None)
    app[keys.SERVICE_NAME] = service_name or getattr(settings, "trace_service_name", None) or "botrace"
    own_hub = hub is None
    app[keys.HUB] = hub if hub is not None else LiveHub()
    app[keys.JINJA] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    setup_api(app)
    for name, path in PAGES.items():
        app.router.add_get(path, page, name=name)
    app.router.add_get("/login", login_page, name="page.login")
    app.router.add_post("/login", login_post, name="page.login_post")
    app.router.add_post("/logout", logout_post, name="page.logout")
    # aiohttp's static resource resolves the path and refuses anything outside the folder
    app.router.add_static("/static/", STATIC_DIR, name="static", follow_symlinks=False,
                          append_version=False)
    app.on_response_prepare.append(add_security_headers)

    poller: StorePoller | None = None

    async def on_startup(app: web.Application) -> None:
        nonlocal poller
        app[keys.HUB].bind(asyncio.get_running_loop())
        if tracer is not None and own_hub:
            tracer.register(app[keys.HUB])
        elif tracer is None and store is not None and poll_interval_s:
            # read-only viewer: another process writes the store; look for news now and then
            poller = StorePoller(store, app[keys.HUB], interval_s=poll_interval_s)
            poller.start()

    async def on_shutdown(app: web.Application) -> None:
        if poller is not None:
            await poller.stop()
        # end the open SSE streams, or the server waits for them on its way down
        app[keys.HUB].unbind()

    async def on_cleanup(app: web.Application) -> None:
        if tracer is not None and own_hub:
            _unregister(tracer, app[keys.HUB])

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


def _unregister(tracer: Any, plugin: Any) -> None:
    for owner in (tracer, getattr(tracer, "pm", None), getattr(tracer, "plugin_manager", None)):
        fn = getattr(owner, "unregister", None)
        if fn is not None:
            try:
                fn(plugin)
            except Exception:  # already gone
                log.debug("botrace: live hub was already unregistered", exc_info=True)
            return


def _base(request: web.Request) -> str:
    return str(request.app.router["page.index"].url_for())


def _render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    app = request.app
    html = app[keys.JINJA].get_template(template).render(
        base=_base(request), title=app[keys.TITLE], version=app[keys.VERSION],
        chat=app[keys.CHAT] is not None, read_only=app[keys.TRACER] is None,
        auth=bool(app[keys.TOKEN]), **context)
    return web.Response(text=html, content_type="text/html", status=status,
                        headers={"Cache-Control": "no-cache"})


async def page(request: web.Request) -> web.Response:
    view = (request.match_info.route.name or "page.index").removeprefix("page.")
    return _render(request, "index.html", view=view)


def _safe_next(value: str | None, base: str) -> str:
    # only a path on this server: never an absolute URL or a scheme-relative //host
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return base


async def login_page(request: web.Request) -> web.Response:
    return _render(request, "login.html", next=_safe_next(request.query.get("next"), _base(request)),
                   error=None)


async def login_post(request: web.Request) -> web.Response:
    form = await request.post()
    token = request.app[keys.TOKEN]
    nxt = _safe_next(str(form.get("next") or ""), _base(request))
    given = str(form.get("token") or "")
    if not token:
        raise web.HTTPFound(nxt)
    if given and token_matches(given, token):
        sessions = request.app[keys.SESSIONS]
        resp = web.HTTPFound(nxt)
        resp.set_cookie(COOKIE, sessions.create(), httponly=True, samesite="Strict",
                        path=_base(request), secure=request.secure, max_age=math.ceil(sessions.ttl_s))
        raise resp
    await asyncio.sleep(0.3)  # a wrong token costs a little time
    return _render(request, "login.html", status=401, next=nxt, error="That token is not right.")


async def logout_post(request: web.Request) -> web.Response:
    """End the login: the session is forgotten, so a copy of the cookie stops working too."""
    request.app[keys.SESSIONS].revoke(request.cookies.get(COOKIE, ""))
    resp = web.HTTPFound(_base(request) + "login")
    resp.del_cookie(COOKIE, path=_base(request))
    raise resp


# -- running on its own --------------------------------------------------------------

def check_bind(host: str, token: str | None) -> None:
    """Raise ValueError unless ``host`` is loopback or a token guards the page."""
    if not is_loopback(host) and not token:
        raise ValueError(f"refusing to serve on {host} without a token: pass --token "
                         "(or set BOTRACE_TOKEN), or bind 127.0.0.1")


async def run_server(app: web.Application, host: str = "127.0.0.1", port: int = 8765, *,
                     token: str | None = None, prefix: str = "") -> web.AppRunner:
    """Start ``app`` (mounted under ``prefix`` when given) and return its runner.

    Raises ValueError for a non-loopback ``host`` unless the app has a token. An app
    without a token, served here, answers only to loopback ``Host`` names (and its
    ``allowed_hosts``): a page from another site cannot reach it by DNS rebinding.
    """
    check_bind(host, token or app[keys.TOKEN])
    if app[keys.ALLOWED_HOSTS] is None and not app[keys.TOKEN]:
        app[keys.ALLOWED_HOSTS] = frozenset()  # loopback names only
    root = app
    if prefix:
        root = web.Application()
        root.add_subapp(prefix, app)
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def serve(store_path: str, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          allowed_hosts: Iterable[str] | None = None) -> None:
    """``botrace serve --db PATH``: a read-only viewer of a trace database (blocks).

    A non-loopback ``host`` needs ``token`` (or ``BOTRACE_TOKEN``). ``allowed_hosts``:
    ``Host`` names answered besides loopback ones (e.g. behind a reverse proxy).
    """
    from botrace.store import TraceStore

    token = token or os.environ.get("BOTRACE_TOKEN") or None
    check_bind(host, token)

    async def main() -> None:
        store = TraceStore(store_path, read_only=True)
        await store.open()
        app = create_app(tracer=None, store=store, token=token, allowed_hosts=allowed_hosts)
        runner = await run_server(app, host, port, token=token)
        shown = f"[{host}]" if ":" in host else host
        print(f"botrace: serving {store_path} read-only on http://{shown}:{port}/", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            await store.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
