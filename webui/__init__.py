"""botrace's Trace tab: an aiohttp sub-app with a REST API, a live SSE stream and the page.

Mount it in a host's aiohttp app (the host's own middlewares, auth included,
run before the sub-app's)::

    from botrace_webui import create_app
    app.add_subapp("/trace", create_app(tracer=tracer, store=store))

Run it on its own: ``botrace_webui.serve("data/botrace.db")`` (what ``botrace serve --db``
calls: a read-only viewer, 127.0.0.1 unless given a token), or
``await botrace_webui.run_server(create_app(tracer, store, chat=host_chat))`` (what
``botrace demo`` does, with a chat box talking to the reference host).

``chat`` is ``async (text, user_id, session) -> reply`` (a string, or a dict
with ``"reply"`` and anything else the page may show). See docs/WEBUI.md.
"""

from botrace_webui.app import create_app, is_loopback, run_server, serve
from botrace_webui.livehub import LiveHub

__all__ = ["LiveHub", "create_app", "is_loopback", "run_server", "serve"]
