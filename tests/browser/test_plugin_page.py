"""The Trace page as AstrBot's plugin page: the folder write_plugin_page() makes, shown in a
sandboxed iframe of a stand-in for AstrBot's dashboard, talking to a real botrace app only
through the plugin-page bridge.

The stand-in (``Dashboard``) plays AstrBot's three parts:

- it serves the folder the way AstrBot 4.29 does (an asset token in the path, the bridge SDK
  injected before ``</body>``, the theme written into ``<html>``, AstrBot's headers);
- its parent page (``PARENT_JS``) answers the bridge's postMessage requests the way
  AstrBot's ``PluginViewPage`` does: fetch the plugin's API, unwrap ``{"status": "ok",
  "data": ...}``, read SSE and post each event to the iframe;
- its plugin API plays the botrace plugin's backend: :func:`bridge_route` maps each bridge
  endpoint to botrace's REST API, forwarded over HTTP to the Host's app.

The child side is AstrBot's own ``plugin_page_bridge.js`` when an astrbot ≥ 4.27 is
installed (this interpreter's, ``$BOTRACE_ASTRBOT_VENV``, a ``.venv-astrbot*`` in the
checkout, or a virtual environment beside it); otherwise a small double of its protocol
(``BRIDGE_DOUBLE_JS``). The test ids say which one ran.
"""

from __future__ import annotations

import asyncio
import html.parser
import importlib.util
import json
import mimetypes
import os
import re
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import expect

from botrace_webui import keys
from botrace_webui.plugin_page import bridge_route, write_plugin_page

try:
    from browser.harness import Host, wait_for_trace
except ImportError:  # pragma: no cover
    from tests.browser.harness import Host, wait_for_trace

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "botrace"
TOKEN = "asset-token-for-the-test"
XSS = """<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>"'&amp; <b>bold</b>"""
TREE = [("message", "1"), ("WakingCheck", "2"), ("ProcessStage", "2"), ("weather.on_message", "3"),
        ("llm gpt-4o", "4"), ("get_weather", "4"), ("llm gpt-4o", "4"), ("RespondStage", "2")]


# -- the folder ------------------------------------------------------------------------------

class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)
            if name == "id" and value:
                self.ids.add(value)


JS_IMPORT = re.compile(r"""^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']""", re.M | re.S)


def test_written_folder_references_only_its_own_files(tmp_path):
    dest = tmp_path / "pages" / "trace"
    written = write_plugin_page(dest, title="Trace")
    assert written[0] == dest / "index.html"
    files = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert files == {p.relative_to(dest).as_posix() for p in written}

    page = _Refs()
    page.feed((dest / "index.html").read_text())
    reached = {"index.html"}
    for url in page.urls:
        if url.startswith("#"):  # a view (#/stats) or an icon of the inline sprite (#logo)
            assert url.startswith("#/") or url[1:] in page.ids, url
            continue
        assert url.startswith("./") and "?" not in url and ".." not in url, url
        reached.add(url[2:])
    # every ES module, reached by static imports only: AstrBot rewrites (4.27) or resolves
    # (4.29) relative import specifiers, and loads them all while its asset token is fresh
    todo = [u for u in reached if u.endswith(".js")]
    while todo:
        module = todo.pop()
        text = (dest / module).read_text()
        assert "import(" not in text, f"{module}: a dynamic import"
        for spec in JS_IMPORT.findall(text):
            assert spec.startswith("./"), f"{module} imports {spec}"
            target = (Path(module).parent / spec[2:]).as_posix()
            if target not in reached:
                reached.add(target)
                todo.append(target)
    for css in (f for f in files if f.endswith(".css")):
        assert "url(" not in (dest / css).read_text(), css
    assert reached <= files, reached - files
    assert files <= reached, f"written but never used: {files - reached}"


def test_bridge_route_maps_bridge_endpoints_to_the_rest_api():
    assert bridge_route("GET", "api/traces") == ("GET", "/api/v1/traces")
    assert bridge_route("get", "api/traces/ab/spans/cd") == ("GET", "/api/v1/traces/ab/spans/cd")
    assert bridge_route("POST", "api/config") == ("PUT", "/api/v1/config")  # the bridge has no PUT
    assert bridge_route("POST", "api/chat") == ("POST", "/api/v1/chat")
    assert bridge_route("GET", "/api/stream") == ("GET", "/api/v1/stream")
    for method, endpoint in [("GET", "stream"), ("GET", "api"), ("GET", "api/../login"),
                             ("GET", "api//traces"), ("DELETE", "api/traces"), ("PUT", "api/config")]:
        with pytest.raises(ValueError):
            bridge_route(method, endpoint)


# -- AstrBot's bridge SDK ---------------------------------------------------------------------

def _astrbot_bridge() -> tuple[str, str] | None:
    """(source, "astrbot-<version>") of the newest installed astrbot's plugin_page_bridge.js."""
    sites: list[Path] = []
    spec = importlib.util.find_spec("astrbot")
    if spec is not None and spec.origin:
        sites.append(Path(spec.origin).parents[1])
    venvs = [Path(os.environ["BOTRACE_ASTRBOT_VENV"])] if os.environ.get("BOTRACE_ASTRBOT_VENV") else []
    venvs += sorted(REPO.glob(".venv-astrbot*")) + sorted(p for p in REPO.parent.iterdir() if p.is_dir())
    for venv in venvs:
        sites += venv.glob("lib/python3*/site-packages")
    found = []
    for site in sites:
        sdk = site / "astrbot" / "dashboard" / "plugin_page_bridge.js"
        if sdk.is_file():
            dist = next(site.glob("astrbot-*.dist-info"), None)
            version = dist.name.removeprefix("astrbot-").removesuffix(".dist-info") if dist else "0"
            found.append((tuple(int(n) for n in re.findall(r"\d+", version)), version, sdk))
    if not found:
        return None
    _, version, sdk = max(found)
    return sdk.read_text(), f"astrbot-{version}"


# The child side of the protocol, for a machine without astrbot: what the pages call.
BRIDGE_DOUBLE_JS = r"""
(() => {
  const CHANNEL = "astrbot-plugin-page";
  const pending = new Map(), streams = new Map(), contextHandlers = new Set();
  let context = null, counter = 0, resolveReady;
  const ready = new Promise((resolve) => { resolveReady = resolve; });
  const send = (kind, payload) => window.parent.postMessage({ channel: CHANNEL, kind, ...payload }, "*");
  const request = (action, payload) => new Promise((resolve, reject) => {
    const requestId = `req_${++counter}`;
    pending.set(requestId, { resolve, reject });
    send("request", { requestId, action, ...payload });
  });
  function applyContext(next) {
    context = { ...context, ...next };
    if (typeof next.isDark === "boolean") document.documentElement.setAttribute("data-theme", next.isDark ? "dark" : "light");
    resolveReady(context);
    contextHandlers.forEach((fn) => fn(context));
  }
  window.addEventListener("message", (ev) => {
    const m = ev.data;
    if (ev.source !== window.parent || !m || m.channel !== CHANNEL) return;
    if (m.kind === "context") applyContext(m.context);
    if (m.kind === "response" && pending.has(m.requestId)) {
      const p = pending.get(m.requestId);
      pending.delete(m.requestId);
      if (m.ok) p.resolve(m.data); else p.reject(new Error(m.error));
    }
    const handlers = streams.get(m.subscriptionId);
    if (m.kind === "sse_message" && handlers?.onMessage) {
      let parsed = m.data;
      try { parsed = JSON.parse(m.data); } catch {}
      handlers.onMessage({ raw: m.data, parsed, eventType: m.eventType || "message", lastEventId: m.lastEventId });
    }
    if (m.kind === "sse_state" && m.state === "open") handlers?.onOpen?.();
    if (m.kind === "sse_state" && m.state === "error") handlers?.onError?.();
  });
  window.AstrBotPluginPage = {
    ready: () => ready,
    getContext: () => context,
    onContext(fn) { contextHandlers.add(fn); if (context) fn(context); return () => contextHandlers.delete(fn); },
    __setInitialContext: applyContext,
    apiGet: (endpoint, params) => request("api:get", { endpoint, params }),
    apiPost: (endpoint, body) => request("api:post", { endpoint, body }),
    download: (endpoint, params, filename) => request("files:download", { endpoint, params, filename }),
    async subscribeSSE(endpoint, handlers, params) {
      const subscriptionId = `sse_${++counter}`;
      streams.set(subscriptionId, handlers || {});
      try {
        await request("sse:subscribe", { endpoint, params, subscriptionId });
        return subscriptionId;
      } catch (err) {
        streams.delete(subscriptionId);
        throw err;
      }
    },
    unsubscribeSSE(subscriptionId) { streams.delete(subscriptionId); return request("sse:unsubscribe", { subscriptionId }); },
  };
  send("ready");
})();
"""

_real = _astrbot_bridge()
BRIDGE_JS, BRIDGE_FROM = _real if _real else (BRIDGE_DOUBLE_JS, "bridge-double")


# -- the dashboard's side ---------------------------------------------------------------------

# What AstrBot's PluginViewPage does with the bridge's requests, in short.
PARENT_JS = r"""
const CHANNEL = "astrbot-plugin-page";
const frame = () => document.getElementById("plugin-page");
const streams = new Map();
const context = { pluginName: "botrace", displayName: "botrace", pageName: "trace", pageTitle: "Trace",
                  locale: "en-US", i18n: {}, isDark: true };
const post = (msg) => frame().contentWindow.postMessage({ channel: CHANNEL, ...msg }, "*");
window.setContext = (patch) => { Object.assign(context, patch); post({ kind: "context", context }); };

function url(endpoint, params) {
  const u = new URL(`/api/v1/plugins/extensions/botrace/${endpoint.replace(/^\/+/, "")}`, location.origin);
  for (const [k, v] of Object.entries(params || {})) u.searchParams.set(k, String(v));
  return u;
}
async function fail(resp) {
  const doc = await resp.json().catch(() => null);
  throw new Error(doc?.message || doc?.error || `Request failed with status code ${resp.status}`);
}
async function json(resp) {
  if (!resp.ok) await fail(resp);
  const doc = await resp.json();
  if (doc?.status === "error") throw new Error(doc.message);
  return doc?.data ?? doc;
}
async function readStream(id, resp, abort) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", lastEventId = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      const blocks = buffer.split("\n\n");
      buffer = blocks.pop();
      for (const block of blocks) {
        let eventType = "message", data = [];
        for (const line of block.split("\n")) {
          const [, field, value] = line.match(/^([^:]*):? ?(.*)$/);
          if (field === "event") eventType = value || "message";
          if (field === "data") data.push(value);
          if (field === "id") lastEventId = value;
        }
        if (data.length && streams.has(id)) post({ kind: "sse_message", subscriptionId: id, data: data.join("\n"), eventType, lastEventId });
      }
    }
    if (!abort.signal.aborted) post({ kind: "sse_state", subscriptionId: id, state: "closed" });
  } catch {
    if (!abort.signal.aborted) post({ kind: "sse_state", subscriptionId: id, state: "error" });
  }
  streams.delete(id);
}
async function handle(m) {
  if (m.action === "api:get") return json(await fetch(url(m.endpoint, m.params)));
  if (m.action === "api:post") {
    return json(await fetch(url(m.endpoint), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(m.body || {}) }));
  }
  if (m.action === "files:download") {
    const resp = await fetch(url(m.endpoint, m.params));
    if (!resp.ok) await fail(resp);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await resp.blob());
    a.download = m.filename || "download.bin";
    document.body.append(a);
    a.click();
    a.remove();
    return { filename: a.download };
  }
  if (m.action === "sse:subscribe") {
    const abort = new AbortController();
    streams.set(m.subscriptionId, abort);
    const resp = await fetch(url(m.endpoint, m.params), { headers: { Accept: "text/event-stream" }, signal: abort.signal });
    if (!resp.ok) { streams.delete(m.subscriptionId); await fail(resp); }
    setTimeout(() => {  // after the response, as AstrBot does
      post({ kind: "sse_state", subscriptionId: m.subscriptionId, state: "open" });
      readStream(m.subscriptionId, resp, abort);
    });
    return { subscriptionId: m.subscriptionId };
  }
  if (m.action === "sse:unsubscribe") {
    streams.get(m.subscriptionId)?.abort();
    streams.delete(m.subscriptionId);
    return { subscriptionId: m.subscriptionId };
  }
  throw new Error(`Unsupported plugin bridge action: ${m.action}`);
}
window.addEventListener("message", async (ev) => {
  const m = ev.data;
  if (ev.source !== frame().contentWindow || !m || m.channel !== CHANNEL) return;
  if (m.kind === "ready") post({ kind: "context", context });
  if (m.kind !== "request") return;
  try {
    post({ kind: "response", requestId: m.requestId, ok: true, data: await handle(m) });
  } catch (err) {
    post({ kind: "response", requestId: m.requestId, ok: false, error: err.message });
  }
});
window.addEventListener("DOMContentLoaded", () => frame().addEventListener("load", () => post({ kind: "context", context })));
"""

PARENT_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>AstrBot (stand-in)</title><link rel="icon" href="data:,"><script src="/parent.js"></script></head>
<body style="margin:0"><iframe id="plugin-page" src="{src}" sandbox="allow-scripts allow-forms allow-downloads"
 referrerpolicy="no-referrer" style="width:100%;height:880px;border:0"></iframe></body></html>
"""

# AstrBot's headers on view assets (PluginPageService.build_security_headers); a module script
# in an opaque-origin frame is a CORS request, hence Access-Control-Allow-Origin.
ASSET_HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin", "Access-Control-Allow-Origin": "*",
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": "frame-ancestors 'self'; object-src 'none'; base-uri 'self'",
}


class Dashboard:
    """A stand-in for AstrBot's dashboard with the botrace plugin installed (see the module doc)."""

    def __init__(self, host: Host, page_dir: Path, theme: str = "dark") -> None:
        self.host = host
        self.page_dir = page_dir
        self.theme = theme
        self.url = ""
        #: (path, status) of every request that is not the plugin's API
        self.requests: list[tuple[str, int]] = []
        #: the query of every stream subscription
        self.subscriptions: list[dict[str, str]] = []
        self._streams: set[asyncio.Transport] = set()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> Dashboard:
        app = web.Application(middlewares=[self._log])
        app.router.add_get("/", self.parent)
        app.router.add_get("/parent.js", self.parent_js)
        app.router.add_get("/api/plugin/page/bridge-sdk.js", self.bridge_sdk)
        app.router.add_get(f"/api/v1/plugins/{PLUGIN}/views/trace/_t/{{token}}/{{path:.*}}", self.asset)
        app.router.add_route("*", f"/api/v1/plugins/extensions/{PLUGIN}/{{endpoint:.+}}", self.plugin_api)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/"
        return self

    async def stop(self) -> None:
        self.drop_streams()
        await self._runner.cleanup()
        await self._session.close()

    def drop_streams(self) -> None:
        """Cut every stream mid-way, as a network failure does (the dashboard reports an error)."""
        for transport in list(self._streams):
            transport.close()

    @web.middleware
    async def _log(self, request, handler):
        logged = "/extensions/" not in request.path
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            if logged:
                self.requests.append((request.path, exc.status))
            raise
        if logged:
            self.requests.append((request.path, resp.status))
        return resp

    # -- AstrBot ---------------------------------------------------------------------------
    async def parent(self, request):
        src = f"/api/v1/plugins/{PLUGIN}/views/trace/_t/{TOKEN}/?asset_token={TOKEN}&theme={self.theme}"
        return web.Response(text=PARENT_HTML.format(src=src), content_type="text/html")

    async def parent_js(self, request):
        return web.Response(text=PARENT_JS, content_type="text/javascript")

    async def bridge_sdk(self, request):
        if request.query.get("asset_token") != TOKEN:
            raise web.HTTPUnauthorized()
        # AstrBot appends the view's first context, so the theme is right before any message
        initial = {"pluginName": PLUGIN, "pageName": "trace", "isDark": request.query.get("theme") == "dark"}
        js = f"{BRIDGE_JS}\n;(window.AstrBotPluginView || window.AstrBotPluginPage)?.__setInitialContext({json.dumps(initial)});\n"
        return web.Response(text=js, content_type="text/javascript", headers={"Cache-Control": "no-store"})

    async def asset(self, request):
        if request.match_info["token"] != TOKEN:
            raise web.HTTPUnauthorized()
        root = self.page_dir.resolve()
        path = (root / (request.match_info["path"] or "index.html")).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise web.HTTPNotFound()
        if path.suffix != ".html":
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return web.Response(body=path.read_bytes(), content_type=ctype, headers=ASSET_HEADERS)
        # what AstrBot's process_plugin_page_html does: the theme, and the bridge SDK injected
        theme = request.query.get("theme", "")
        text = re.sub(r'(<html\b[^>]*?)\s+data-theme="[^"]*"', r"\1", path.read_text(), count=1)
        text = text.replace("<html", f'<html data-theme="{theme}"', 1) if theme else text
        sdk = f'<script src="/api/plugin/page/bridge-sdk.js?asset_token={TOKEN}&amp;theme={theme}"></script>'
        text = text.replace("</body>", f"{sdk}</body>", 1)
        return web.Response(text=text, content_type="text/html", headers=ASSET_HEADERS)

    # -- the botrace plugin's backend ----------------------------------------------------------
    async def plugin_api(self, request):
        try:
            method, path = bridge_route(request.method, request.match_info["endpoint"])
        except ValueError as exc:
            return web.json_response({"status": "error", "message": str(exc)}, status=404)
        url = self.host.url.rstrip("/") + path
        if path == "/api/v1/stream":
            return await self.stream(request, url)
        body = await request.read() if request.method == "POST" else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        async with self._session.request(method, url, params=request.query, data=body, headers=headers) as up:
            raw = await up.read()
            if "Content-Disposition" in up.headers:  # a download: the file as botrace made it
                return web.Response(body=raw, content_type=up.content_type,
                                    headers={"Content-Disposition": up.headers["Content-Disposition"]})
            doc = json.loads(raw)
            if up.status >= 400:
                return web.json_response({"status": "error", "message": doc.get("error")}, status=up.status)
            return web.json_response({"status": "ok", "data": doc})

    async def stream(self, request, url):
        self.subscriptions.append(dict(request.query))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        transport = request.transport
        self._streams.add(transport)
        try:
            async with self._session.get(url, params=request.query) as up:
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
        except (ConnectionResetError, aiohttp.ClientError):
            pass  # the page or botrace went away
        finally:
            self._streams.discard(transport)
        return resp


# -- the tests --------------------------------------------------------------------------------

@pytest.fixture(params=[BRIDGE_FROM])
async def dashboard(request, tmp_path):
    """botrace (Host, 1 s heartbeats) behind the stand-in dashboard; the id names the bridge."""
    host = await Host(str(tmp_path / "traces.db"), step_s=0.12, heartbeat_s=1.0).start()
    page_dir = tmp_path / "plugin" / "pages" / "trace"
    write_plugin_page(page_dir)
    d = await Dashboard(host, page_dir).start()
    yield d
    await d.stop()
    await host.stop()


async def open_page(page, dashboard):
    await page.goto(dashboard.url)
    frame = page.frame_locator("#plugin-page")
    await expect(frame.locator("#live")).to_have_attribute("data-state", "live")
    return frame, next(f for f in page.frames if "/views/trace/" in f.url)


def assert_assets_all_served(dashboard):
    # nothing the page asked for by URL failed (no token-less runtime URLs, no XSS image)
    assert [r for r in dashboard.requests if r[1] != 200] == []
    assert all(p.startswith(("/api/v1/plugins/botrace/views/trace/_t/", "/api/plugin/page/bridge-sdk.js"))
               for p, _ in dashboard.requests if p not in ("/", "/parent.js"))


@pytest.mark.browser
async def test_plugin_page_lists_opens_and_downloads_traces_through_the_bridge(dashboard, page):
    host = dashboard.host
    await host.chat("what's the weather in Paris?", "alice", "s1")
    await host.chat(XSS, "mallory", "s2")
    await wait_for_trace(host.store, host.trace_ids[-1], host.tracer)
    paris = host.trace_ids[0]

    frame, child = await open_page(page, dashboard)
    rows = frame.locator("table.traces tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first.locator(".c-msg")).to_have_text(XSS)  # text, not markup
    # the dashboard's theme, first from the page AstrBot served, then from the bridge
    await expect(frame.locator("html")).to_have_attribute("data-theme", "dark")
    await page.evaluate("setContext({isDark: false})")
    await expect(frame.locator("html")).to_have_attribute("data-theme", "light")
    # no chat box, no theme button, no login: AstrBot's dashboard has its own
    await expect(frame.locator(".chat, button#theme, form.logout")).to_have_count(0)

    await rows.filter(has_text="weather in Paris").locator("a.row-link").click()
    await expect(frame.locator(".span-row")).to_have_count(8)
    rows_drawn = await child.evaluate("""() => [...document.querySelectorAll('.span-row')]
        .sort((a, b) => a.dataset.index - b.dataset.index)
        .map(r => [r.querySelector('.span-name').textContent, r.getAttribute('aria-level')])""")
    assert rows_drawn == [list(r) for r in TREE]
    # icons come from the sprite inlined in the page, and draw
    await expect(frame.locator(".span-row .chip.plugin use").first).to_have_attribute("href", "#gear")
    assert await child.evaluate("document.querySelector('.span-row .chip.plugin use').getBBox().width") > 0
    assert f"#/traces/{paris}" in child.url
    await frame.locator(".span-row", has_text="get_weather").click()
    await expect(frame.locator(".values-input pre")).to_contain_text('"city": "Paris"')

    async with page.expect_download() as info:
        await frame.get_by_role("button", name="JSON", exact=True).click()
    download = await info.value
    assert download.suggested_filename == f"trace-{paris}.json"
    assert json.loads(Path(await download.path()).read_text())["trace"]["trace_id"] == paris

    await child.evaluate("history.back()")  # the dashboard's back button steps through the hash
    await expect(rows).to_have_count(2)
    await rows.first.locator("a.row-link").click()
    await expect(frame.locator("h1.outline")).to_have_text(XSS)
    assert await child.evaluate("window.__xss") is None

    await child.evaluate("location.hash = '#/stats?group_by=tool'")
    await expect(frame.locator("table.stats tbody tr", has_text="get_weather")).to_have_count(1)
    await frame.locator('[data-nav="health"]').click()  # the health view, through the bridge too
    await expect(frame.locator(".health-status")).to_have_text("ok")
    await expect(frame.locator('.health-card[data-part="store"]')).to_contain_text("Writer")
    assert "#/health" in child.url
    assert_assets_all_served(dashboard)
    assert page.problems == []


@pytest.mark.browser
async def test_plugin_page_switch_and_live_stream_through_the_bridge(dashboard, page):
    host = dashboard.host
    frame, child = await open_page(page, dashboard)
    rows = frame.locator("table.traces tbody tr")

    # the switch: a POST to api/config through apiPost, botrace's PUT /config behind it
    switch = frame.locator("#trace-enable")
    await expect(switch).to_be_checked()
    await frame.locator("label.switch").click()
    await expect(switch).not_to_be_checked()
    await expect(switch).to_be_enabled()  # disabled until botrace answered
    assert host.tracer.enabled is False
    await host.chat("not traced", "u1", "s1")
    await frame.locator("label.switch").click()
    await expect(switch).to_be_checked()
    await expect(switch).to_be_enabled()
    assert host.tracer.enabled is True

    # a new trace arrives over subscribeSSE, running first
    host.gate = asyncio.Event()
    task = asyncio.create_task(host.chat("live one", "u1", "s1"))
    await expect(rows.filter(has_text="live one")).to_have_attribute("data-status", "running")
    host.gate.set()
    await task
    await expect(rows.filter(has_text="live one")).to_have_attribute("data-status", "ok")
    first = len(dashboard.subscriptions)

    # the stream breaks: the page subscribes again from its last event, and what happened
    # in between shows up
    dashboard.drop_streams()
    await host.chat("sent during the break", "u1", "s1")
    await expect(rows.filter(has_text="sent during the break")).to_have_count(1, timeout=10000)
    assert len(dashboard.subscriptions) > first
    assert dashboard.subscriptions[-1].get("last_event_id")

    # botrace ends the stream cleanly (e.g. the plugin reloads): AstrBot's bridge does not
    # pass that on, so the page's watchdog notices the silence (2.5 heartbeats) and resubscribes
    again = len(dashboard.subscriptions)
    for sub in list(host.app[keys.HUB]._subscribers):
        sub.close()
    await host.chat("after a clean end", "u1", "s1")
    await expect(rows.filter(has_text="after a clean end")).to_have_count(1, timeout=10000)
    assert len(dashboard.subscriptions) > again
    await expect(frame.locator("#live")).to_have_attribute("data-state", "live")
    await expect(rows.filter(has_text="not traced")).to_have_count(0)
    assert_assets_all_served(dashboard)
    assert page.problems == []
