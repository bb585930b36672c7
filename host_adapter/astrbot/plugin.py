"""What the botrace AstrBot plugin runs: adapter, tracer, store, exporters and the page.

The plugin's ``main.py`` (written by ``botrace astrbot-plugin``) is a thin
``Star`` that builds a :class:`BotraceRuntime` and calls :meth:`~BotraceRuntime.start`
in ``initialize()`` and :meth:`~BotraceRuntime.stop` in ``terminate()``.
AstrBot calls ``terminate()`` when the plugin is disabled, reloaded, updated,
uninstalled or AstrBot stops, so ``stop()`` leaves nothing behind: every
patched AstrBot function is put back, and the dispatcher thread, the store's
writer (process or thread), the page's port and the plugin-page routes are gone.

``start()`` in order: read the plugin's config (a bad value stops the plugin with
a message naming it), build the tracer from AstrBot's ``trace_enable`` and those
settings, open the store in AstrBot's data folder
(``data/plugin_data/astrbot_plugin_botrace/botrace.db``), register the
exporters the settings turn on, wrap AstrBot's pipeline, serve the page, and
follow AstrBot's own Trace switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import secrets
from typing import Any

import botrace
from botrace.tracer import Tracer
from botrace_host_adapter.astrbot.adapter import AstrBotAdapter
from botrace_host_adapter.astrbot.pluginconfig import PageOptions, read_plugin_config

__all__ = ["PLUGIN_NAME", "BotraceRuntime", "plugin_data_dir"]

log = logging.getLogger("botrace.astrbot")

#: The plugin's name in AstrBot (metadata.yaml, folder, data folder, web API prefix).
PLUGIN_NAME = "astrbot_plugin_botrace"
#: How often AstrBot's trace_enable is looked at between messages (seconds).
SWITCH_POLL_S = 0.5


def plugin_data_dir(name: str = PLUGIN_NAME) -> str:
    """``data/plugin_data/<name>`` in AstrBot's data folder (created)."""
    try:
        paths = importlib.import_module("astrbot.core.utils.astrbot_path")
        base = paths.get_astrbot_plugin_data_path()
    except (ImportError, AttributeError):
        base = os.path.join("data", "plugin_data")
    path = os.path.join(base, name)
    os.makedirs(path, exist_ok=True)
    return path


class BotraceRuntime:
    """botrace running inside AstrBot, for one load of the plugin."""

    def __init__(self, context: Any, plugin_config: Any = None, *,
                 data_dir: str | None = None) -> None:
        self.context = context
        self.plugin_config = plugin_config
        self.data_dir = data_dir
        self.adapter: AstrBotAdapter | None = None
        self.tracer: Tracer | None = None
        self.store: Any = None
        self.page: PageOptions | None = None
        #: where the page is served (None when not serving)
        self.url: str | None = None
        self._runner: Any = None
        self._proxy: Any = None
        self._poller: asyncio.Task[None] | None = None
        self._log_bridge: _LogBridge | None = None
        self._routes: list[tuple[str, Any, list[str], str]] = []
        #: True from a successful start() until stop()
        self.running = False

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start everything; on failure, undo what was started and raise."""
        self._log_bridge = _LogBridge.install()
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        data_dir = self.data_dir or plugin_data_dir()
        settings, self.page = read_plugin_config(self.plugin_config, data_dir=data_dir)
        self.adapter = AstrBotAdapter(config=self.context.get_config(), settings=settings)
        tracer = Tracer.from_host(self.adapter)
        self.tracer = tracer
        tracer.register_exporters()
        from botrace.store import TraceStore

        self.store = await TraceStore(tracer.settings.trace_db_path, tracer.settings).open()
        tracer.register(self.store)
        await tracer.start()
        botrace.install(tracer)
        self.adapter.install(tracer)
        await self._serve()
        self._poller = asyncio.get_running_loop().create_task(
            self._follow_switch(), name="botrace-astrbot-switch")
        where = f"the Trace page: {self.url}" if self.url and self.page.enable else \
            "the Trace page is off (page.enable)"
        log.info("botrace: tracing %s (AstrBot's trace_enable), %s, traces in %s",
                 "on" if tracer.enabled else "off", where, tracer.settings.trace_db_path)
        for kind, why in self.adapter.unavailable.items():
            log.warning("botrace: not traced in this AstrBot: %s (%s)", kind, why)
        self.running = True

    async def stop(self) -> None:
        """Undo :meth:`start` completely (idempotent): patches first, so no new spans
        start, then the page, then the tracer (which delivers what is queued), the store."""
        self.running = False
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self.adapter is not None:
            self.adapter.uninstall()
        self._unregister_routes()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._proxy is not None:
            await self._proxy.close()
            self._proxy = None
        if self.tracer is not None:
            await self.tracer.aclose()
            botrace.uninstall(self.tracer)
        if self.store is not None:
            await self.store.close()
            self.store = None
        if self._log_bridge is not None:
            self._log_bridge.remove()
            self._log_bridge = None

    async def _follow_switch(self) -> None:
        """Apply AstrBot's dashboard switch within half a second, even with no message."""
        while True:
            await asyncio.sleep(SWITCH_POLL_S)
            try:
                self.adapter.follow_switch()  # type: ignore[union-attr]
            except Exception:
                log.warning("botrace: could not read AstrBot's trace_enable", exc_info=True)

    # -- the page ---------------------------------------------------------------------

    async def _serve(self) -> None:
        """The page on its own port; and, where AstrBot has plugin pages, the routes its
        dashboard forwards the page's calls to (they reach the same app over loopback)."""
        from botrace_webui import create_app, run_server

        page = self.page
        assert page is not None and self.tracer is not None
        pages = _plugin_page_api()
        if not page.enable and pages is None:
            return
        if page.enable:
            host, port, token = page.host, page.port, page.token or None
        else:  # only for AstrBot's plugin page: a private port and token
            host, port, token = "127.0.0.1", 0, secrets.token_urlsafe(24)
        app = create_app(self.tracer, self.store, token=token, title="botrace · AstrBot",
                         allowed_hosts=page.allowed_hosts or None)
        try:
            self._runner = await run_server(app, host, port, token=token)
        except OSError as exc:
            log.error("botrace: cannot serve the Trace page on %s:%s (%s); set another "
                      "page.port in the plugin's settings", host, port, exc)
            return
        address = self._runner.addresses[0]
        self.url = PageOptions(True, host, address[1], token or "").url
        if pages is not None:
            self._register_routes(pages, f"http://127.0.0.1:{address[1]}", token)

    def _register_routes(self, web: Any, upstream: str, token: str | None) -> None:
        from botrace_host_adapter.astrbot.pageproxy import PageProxy

        self._proxy = PageProxy(web, upstream, token)
        route = f"/{PLUGIN_NAME}/api/<path:rest>"
        entry = (route, self._proxy.handle, ["GET", "POST"], "botrace Trace page API")
        self.context.register_web_api(*entry)
        self._routes.append(entry)

    def _unregister_routes(self) -> None:
        registered = getattr(self.context, "registered_web_apis", None)
        for entry in self._routes:
            if isinstance(registered, list):
                with contextlib.suppress(ValueError):
                    registered.remove(entry)
        self._routes.clear()


def _plugin_page_api() -> Any:
    """``astrbot.api.web`` where this AstrBot has plugin pages (since mid-2026), else None."""
    try:
        return importlib.import_module("astrbot.api.web")
    except ImportError:
        return None


class _LogBridge(logging.Handler):
    """botrace's log records, shown in AstrBot's console and dashboard log.

    AstrBot logs through its ``astrbot`` logger and removes the root logger's
    handlers after loading plugins, so botrace's own loggers would go unseen.
    """

    def __init__(self, target: logging.Logger) -> None:
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        if self.target.isEnabledFor(record.levelno):
            self.target.handle(record)

    @classmethod
    def install(cls) -> _LogBridge | None:
        target = logging.getLogger("astrbot")
        if not target.handlers:
            return None
        bridge = cls(target)
        source = logging.getLogger("botrace")
        source.addHandler(bridge)
        bridge._propagate = source.propagate
        source.propagate = False
        return bridge

    def remove(self) -> None:
        source = logging.getLogger("botrace")
        source.removeHandler(self)
        source.propagate = self._propagate

    _propagate = True
