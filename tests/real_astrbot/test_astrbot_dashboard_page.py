"""The Trace page inside the real AstrBot's own dashboard, end to end (newest AstrBot 4.x).

One AstrBot process (the Python 3.12 environment, AstrBot 4.29.3 when written) runs with
its real dashboard on a free 127.0.0.1 port, the botrace plugin exactly as
``botrace astrbot-plugin`` writes it, the probe plugin and the fake model. The plugin's own
port is switched off (``page.enable: false``), so every byte the page gets goes through
AstrBot: its login, its plugin-page iframe and its ``/api/v1/plugins/extensions/…`` routes.

The scenario pauses at *gates* (``exec`` steps that wait for a file, see :class:`Gates`)
while this process drives Chromium and HTTP against the dashboard:

1. two messages (a probe command, a tool-using model turn), then the gate ``page``;
2. a message sent while the page is open (it must appear live), then ``switch``;
3. a message sent after the page switched tracing off (no trace), then ``reload``;
4. a message sent after the plugin was reloaded under the open page, then ``end``.

Screenshots land in the test's temporary folder, or, with ``BOTRACE_SCREENSHOTS=DIR``
(e.g. ``docs/screenshots``), in that folder as ``astrbot-dashboard-trace.png`` (a trace in
the dashboard) and ``astrbot-plugin-pages.png`` (where the page's entry is).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from astrbot_envs import AstrBotEnv
from astrbot_runner import PROBE_PLUGIN, free_port, run_scenario
from fake_openai import FakeOpenAI, Rule, ToolCall

from botrace_host_adapter.astrbot.package import write_plugin
from botrace_host_adapter.astrbot.plugin import PLUGIN_NAME

pytestmark = [pytest.mark.astrbot, pytest.mark.slow]

USER, PASSWORD = "astrbot", "Trace-Page-Test-7"
EXT = f"/api/v1/plugins/extensions/{PLUGIN_NAME}/api/"
PARIS = "What is the weather in Paris?"
LIVE = "live: sent while the Trace page is open"
UNTRACED = "untraced: sent after the page switched tracing off"
AFTER_RELOAD = "reloaded: sent after the plugin was reloaded under the open page"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


# -- gates: the scenario waits while this process drives the dashboard -------------------------

class Gates:
    """File handshakes with the runner: ``step(name)`` is an ``exec`` step that writes
    ``at-<name>`` and waits for ``go-<name>``; :meth:`reached` waits for the first,
    :meth:`open` writes the second."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.names: list[str] = []

    def step(self, name: str, timeout: float = 300) -> dict:
        self.names.append(name)
        code = (f"import asyncio, pathlib\n"
                f"gates = pathlib.Path({str(self.folder)!r})\n"
                f"(gates / 'at-{name}').write_text('')\n"
                f"while not (gates / 'go-{name}').exists():\n"
                f"    await asyncio.sleep(0.05)\n")
        return {"op": "exec", "name": f"gate-{name}", "code": code, "timeout": timeout}

    async def reached(self, name: str, run: AstrBotRun, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not (self.folder / f"at-{name}").exists():
            run.raise_if_over()
            if time.monotonic() > deadline:
                raise AssertionError(f"the scenario did not reach gate {name!r} in {timeout}s; "
                                     f"runner output:\n{run.output_tail()}")
            await asyncio.sleep(0.05)

    def open(self, name: str) -> None:
        (self.folder / f"go-{name}").write_text("")

    async def advance_to(self, name: str, run: AstrBotRun, timeout: float = 60) -> None:
        """Open every gate before ``name`` (a test that runs alone) and wait for ``name``."""
        for earlier in self.names[:self.names.index(name)]:
            self.open(earlier)
        await self.reached(name, run, timeout)

    def open_all(self) -> None:
        for name in self.names:
            self.open(name)


@dataclass
class AstrBotRun:
    """AstrBot's subprocess, played by ``run_scenario`` in a thread of the test process
    until :meth:`finish` opens every gate and waits for its results."""

    url: str
    root: Path
    gates: Gates
    fake: FakeOpenAI
    thread: threading.Thread | None = None
    results: dict | None = None
    error: BaseException | None = None
    token: str = ""

    def raise_if_over(self) -> None:
        if self.thread is not None and not self.thread.is_alive():
            raise AssertionError(f"the AstrBot run ended early: {self.error!r}\n{self.output_tail()}")

    def output_tail(self, lines: int = 40) -> str:
        try:
            text = (self.root / "runner.out").read_text(errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:])

    def config_file(self) -> dict:
        return json.loads((self.root / "data" / "cmd_config.json").read_text(encoding="utf-8-sig"))

    def finish(self) -> dict:
        self.gates.open_all()
        assert self.thread is not None
        self.thread.join(240)
        if self.error is not None:
            raise self.error
        assert self.results is not None, "the AstrBot run gave no results"
        return self.results


def _password_settings(password: str) -> dict:
    """``dashboard`` settings with an operator-chosen password, as AstrBot 4.29 stores it
    (PBKDF2, the iteration count is part of the hash; fewer than AstrBot's 600 000 here)."""
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), 20_000).hex()
    return {"username": USER, "pbkdf2_password": f"pbkdf2_sha256$20000${salt}${digest}",
            "password": hashlib.md5(password.encode()).hexdigest(),
            "password_storage_upgraded": True, "password_change_required": False}


def _rules() -> list[Rule]:
    return [
        Rule("tool", user_contains="weather in Paris", has_tool_result=False,
             tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
        Rule("answer", user_contains="weather in Paris", has_tool_result=True,
             text="Forecast: {tool_result}"),
    ]


@pytest.fixture(scope="module")
def astrbot_run(astrbot_env_py312: AstrBotEnv, tmp_path_factory: pytest.TempPathFactory):
    """AstrBot with its dashboard and the botrace plugin, held at the gate ``page``."""
    env = astrbot_env_py312
    tmp = tmp_path_factory.mktemp("astrbot-dashboard")
    plugin = write_plugin(tmp / "build")
    env.install(plugin / "requirements.txt")
    root = tmp / "root"
    config_dir = root / "data" / "config"
    config_dir.mkdir(parents=True)
    # the plugin's settings as the dashboard would save them: no port of its own
    (config_dir / f"{PLUGIN_NAME}_config.json").write_text(json.dumps({"page": {"enable": False}}))
    gates = Gates(tmp / "gates")
    port = free_port()
    scenario = {
        "plugins": [str(PROBE_PLUGIN), str(plugin)],
        "dashboard": {"port": port},
        "config": {"trace_enable": True, "dashboard": _password_settings(PASSWORD)},
        "steps": [
            {"op": "message", "name": "probe", "text": "/probe hi"},
            {"op": "message", "name": "paris", "text": PARIS},
            gates.step("page"),
            {"op": "message", "name": "live", "text": LIVE},
            gates.step("switch"),
            {"op": "message", "name": "untraced", "text": UNTRACED},
            gates.step("reload"),
            {"op": "message", "name": "after-reload", "text": AFTER_RELOAD},
            gates.step("end"),
        ],
    }
    with FakeOpenAI(_rules()) as fake:
        run = AstrBotRun(url=f"http://127.0.0.1:{port}", root=root, gates=gates, fake=fake)

        def play() -> None:
            try:
                run.results = run_scenario(env, root, scenario, timeout=900, llm=fake)
            except BaseException as exc:
                run.error = exc

        run.thread = threading.Thread(target=play, name="astrbot-run", daemon=True)
        run.thread.start()
        try:
            asyncio.run(gates.reached("page", run, timeout=180))
            run.token = asyncio.run(_login(run.url))
            yield run
        finally:
            results = run.finish()
        # the run as a whole: every step passed (run_scenario checks), AstrBot stopped cleanly
        assert results["ok"], results["failed_steps"] or results.get("stop_error")
        assert results["astrbot_version"] == env.astrbot_version
        replies = {s["name"]: s["reply"] for s in results["steps"] if s["op"] == "message"}
        assert replies["probe"] == "probe says: hi [probe-decorated]"
        assert replies["paris"].startswith("Forecast: Weather in Paris")
        # answering never depends on tracing: the untraced message was answered too
        assert all(replies[name].startswith("fake reply") for name in ("live", "untraced", "after-reload"))


async def _login(url: str) -> str:
    """A dashboard JWT, the way the dashboard's login form gets one."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/v1/auth/login",
                             json={"username": USER, "password": PASSWORD}) as resp:
            body = await resp.json()
    assert resp.status == 200 and body["status"] == "ok", body
    return body["data"]["token"]


def _auth(run: AstrBotRun) -> dict[str, str]:
    return {"Authorization": f"Bearer {run.token}"}


async def _astrbot_trace_enable(http: aiohttp.ClientSession, run: AstrBotRun) -> bool:
    """AstrBot's own Trace switch, as its dashboard reads it (``GET /api/trace/settings``)."""
    async with http.get(f"{run.url}/api/trace/settings", headers=_auth(run)) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["status"] == "ok", body
    return body["data"]["trace_enable"]


async def _set_astrbot_trace_enable(http: aiohttp.ClientSession, run: AstrBotRun, value: bool) -> None:
    """Flip AstrBot's own Trace switch, as its dashboard's Trace page does."""
    async with http.post(f"{run.url}/api/trace/settings", json={"trace_enable": value},
                         headers=_auth(run)) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["status"] == "ok", body


async def _botrace_follows(http: aiohttp.ClientSession, run: AstrBotRun, value: bool) -> None:
    """botrace's tracer (``api/config`` through the dashboard) reaches ``value`` within 5 s."""
    deadline = time.monotonic() + 5
    while True:
        async with http.get(run.url + EXT + "config", headers=_auth(run)) as resp:
            now = (await resp.json())["data"]["trace_enable"]
        if now is value:
            return
        assert time.monotonic() < deadline, f"botrace's trace_enable stayed {now}"
        await asyncio.sleep(0.1)


# -- the plugin's API through the dashboard --------------------------------------------------------

async def test_plugin_api_through_the_dashboard(astrbot_run: AstrBotRun) -> None:
    """``/api/v1/plugins/extensions/astrbot_plugin_botrace/api/…``: AstrBot's auth, then the
    plugin's proxy to botrace's API, in AstrBot's envelope."""
    ext = astrbot_run.url + EXT
    async with aiohttp.ClientSession() as http:
        async with http.get(ext + "traces", headers=_auth(astrbot_run)) as resp:
            body = await resp.json()
        assert resp.status == 200 and body["status"] == "ok", body
        traces = body["data"]["traces"]
        assert {t["outline"] for t in traces} >= {"/probe hi", PARIS}
        paris = next(t for t in traces if t["outline"] == PARIS)
        assert paris["models"] == ["fake-model"] and paris["llm_calls"] == 2
        assert paris["tool_calls"] == 1 and paris["input_tokens"] > 0
        assert "astrbot_plugin_probe" in paris["plugins"]

        # a query string reaches botrace
        async with http.get(ext + "traces", params={"q": "probe", "limit": "1"},
                            headers=_auth(astrbot_run)) as resp:
            found = (await resp.json())["data"]["traces"]
        assert [t["outline"] for t in found] == ["/probe hi"]

        # the tree of one trace
        async with http.get(ext + f"traces/{paris['trace_id']}", headers=_auth(astrbot_run)) as resp:
            tree = (await resp.json())["data"]
        assert tree["trace"]["trace_id"] == paris["trace_id"] and tree["tree"]

        # errors: botrace's message in AstrBot's error envelope, with botrace's status
        missing = "0" * 32
        async with http.get(ext + f"traces/{missing}", headers=_auth(astrbot_run)) as resp:
            body = await resp.json()
        assert resp.status == 404
        assert body["status"] == "error" and body["message"] == f"trace {missing} not found"
        async with http.get(ext + "no-such-endpoint", headers=_auth(astrbot_run)) as resp:
            body = await resp.json()
        assert resp.status == 404 and body["status"] == "error" and body["message"]
        async with http.get(ext + "traces", params={"limit": "0"}, headers=_auth(astrbot_run)) as resp:
            body = await resp.json()
        assert resp.status == 400 and body["status"] == "error" and "limit" in body["message"]
        # a path outside the route: AstrBot's own "no such route" envelope (with HTTP 200)
        async with http.get(f"{astrbot_run.url}/api/v1/plugins/extensions/{PLUGIN_NAME}/nope",
                            headers=_auth(astrbot_run)) as resp:
            body = await resp.json()
        assert body["status"] == "error" and body["message"]
        # nothing outside botrace's API is reachable through the route (an encoded "..")
        async with http.get(ext + "traces/..%2F..%2Fhealth", headers=_auth(astrbot_run)) as resp:
            body = await resp.json()
        assert resp.status == 400 and body["status"] == "error"
        assert body["message"].startswith("not a botrace API endpoint")

        # AstrBot's login guards it all
        async with http.get(ext + "traces") as resp:
            assert resp.status == 401
            assert (await resp.json())["status"] == "error"
        async with http.get(ext + "traces", headers={"Authorization": "Bearer not-a-jwt"}) as resp:
            assert resp.status == 401

        # the switch: the bridge's POST api/config is botrace's PUT /config (same value: no change)
        async with http.post(ext + "config", json={"trace_enable": True},
                             headers=_auth(astrbot_run)) as resp:
            body = await resp.json()
        assert resp.status == 200 and body["data"]["trace_enable"] is True

        # a download keeps botrace's attachment header and body
        async with http.get(ext + f"traces/{paris['trace_id']}/download", params={"format": "json"},
                            headers=_auth(astrbot_run)) as resp:
            assert resp.status == 200
            assert f"trace-{paris['trace_id']}.json" in resp.headers["Content-Disposition"]
            assert json.loads(await resp.read())["trace"]["trace_id"] == paris["trace_id"]

        # the live stream, unbuffered: botrace's hello frame arrives at once. (A client that
        # goes away is noticed at botrace's next heartbeat, within heartbeat_s = 15 s: the
        # dashboard's server reports a disconnect only when a write fails.)
        async with http.get(ext + "stream", headers=_auth(astrbot_run)) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            first = b""
            while b"event: hello" not in first:
                first += await asyncio.wait_for(resp.content.readany(), 10)


# -- the page, in Chromium -------------------------------------------------------------------

def _screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("BOTRACE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.browser
async def test_trace_page_in_the_dashboard(astrbot_run: AstrBotRun, tmp_path: Path) -> None:
    """Log in, find the page from the plugin's detail page, read a trace, watch a message
    arrive live, and switch tracing off and on from the page."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    from playwright.async_api import async_playwright, expect

    shots = _screenshot_dir(tmp_path)
    problems: list[str] = []
    async with async_playwright() as pw, aiohttp.ClientSession() as http:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 1400, "height": 900},
                                            locale="en-US", color_scheme="light")
        page = await context.new_page()

        def on_console(msg: Any) -> None:  # the plugin page's own errors (AstrBot's are offline noise)
            if msg.type == "error" and "/views/trace/" in (msg.location or {}).get("url", ""):
                problems.append(msg.text)

        page.on("console", on_console)

        # -- AstrBot's login (its form; the dashboard starts in Chinese: switch to English)
        await page.goto(astrbot_run.url + "/")
        await page.wait_for_url("**/#/auth/login")
        await page.locator("button.language-switcher").click()
        await page.get_by_text("English", exact=True).click()
        await page.locator("input[name=username]").fill(USER)
        await page.locator("input[name=password]").fill(PASSWORD)
        await page.get_by_role("button", name="Login").click()
        await page.wait_for_url("**/#/welcome")

        # -- Extensions › the plugin's card › its detail page › Pages › trace › Open
        await page.get_by_role("link", name="Extensions").click()
        card = page.locator(".extension-card", has=page.locator(f"img[alt='{PLUGIN_NAME}']"))
        await card.locator(".extension-title__text").click()
        await page.wait_for_url(f"**/#/extension/plugins/{PLUGIN_NAME}")
        entry = page.locator("td", has_text="Plugin Page entry")
        await expect(entry).to_be_visible()
        await expect(page.locator(".v-progress-linear--active")).to_have_count(0)  # loaded
        await page.screenshot(path=str(shots / "astrbot-plugin-pages.png"))
        await entry.get_by_role("button", name="Open").click()
        await page.wait_for_url(f"**/#/plugin-view/{PLUGIN_NAME}/trace")

        # -- the page: AstrBot's sandboxed iframe, live, in the dashboard's (light) theme
        iframe = page.locator("iframe.plugin-view-frame")
        assert await iframe.get_attribute("sandbox") == "allow-scripts allow-forms allow-downloads"
        frame = page.frame_locator("iframe.plugin-view-frame")
        await expect(frame.locator("#live")).to_have_attribute("data-state", "live", timeout=15000)
        await expect(frame.locator("html")).to_have_attribute("data-theme", "light")
        rows = frame.locator("table.traces tbody tr")
        await expect(rows).to_have_count(2)
        await expect(rows.nth(0).locator(".c-msg")).to_have_text(PARIS)  # newest first
        await expect(rows.nth(1).locator(".c-msg")).to_have_text("/probe hi")

        # -- one trace: AstrBot's stages, the probe's handlers, both model calls with tokens
        await rows.filter(has_text=PARIS).locator("a.row-link").click()
        await expect(frame.locator("h1.outline")).to_have_text(PARIS)
        spans = frame.locator(".span-row")
        await expect(spans.filter(has_text="llm fake-model")).to_have_count(2)
        names = await spans.locator(".span-name").all_inner_texts()
        for wanted in ("message", "Process", "AgentRequest", "on_llm_request ProbePlugin.add_system_marker",
                       "get_weather", "on_decorating_result ProbePlugin.decorate", "Respond"):
            assert wanted in names, (wanted, names)
        tool = spans.filter(has_text="get_weather")
        await expect(tool.locator(".chip.plugin")).to_have_text("Probe")  # credited to its plugin
        await spans.filter(has_text="llm fake-model").first.click()
        detail = frame.locator(".detail-pane")
        await expect(detail).to_contain_text("fake-model (fake_openai_chat)")
        served = astrbot_run.fake.served[0].usage
        await expect(detail).to_contain_text(
            f"{served['prompt_tokens']} in / {served['completion_tokens']} out")
        await page.screenshot(path=str(shots / "astrbot-dashboard-trace.png"))

        # -- back to the list; a message sent now appears by itself
        await frame.locator(".crumbs a").click()
        await expect(rows).to_have_count(2)
        astrbot_run.gates.open("page")
        live_row = rows.filter(has_text=LIVE)
        await expect(live_row).to_have_count(1, timeout=20000)
        await expect(live_row).to_have_attribute("data-status", "ok", timeout=20000)
        await astrbot_run.gates.reached("switch", astrbot_run)

        # -- the page's switch is AstrBot's trace_enable (its dashboard API and its config file)
        switch = frame.locator("#trace-enable")
        await expect(switch).to_be_checked()
        await frame.locator("label.switch").click()
        await expect(switch).not_to_be_checked()
        await expect(switch).to_be_enabled()  # botrace answered
        assert await _astrbot_trace_enable(http, astrbot_run) is False
        assert astrbot_run.config_file()["trace_enable"] is False

        # ... and holds: a message now is answered but not traced
        astrbot_run.gates.open("switch")
        await astrbot_run.gates.reached("reload", astrbot_run)
        async with http.get(astrbot_run.url + EXT + "traces", headers=_auth(astrbot_run)) as resp:
            outlines = [t["outline"] for t in (await resp.json())["data"]["traces"]]
        assert UNTRACED not in outlines and LIVE in outlines
        await expect(rows).to_have_count(3)

        await frame.locator("label.switch").click()
        await expect(switch).to_be_checked()
        await expect(switch).to_be_enabled()
        assert await _astrbot_trace_enable(http, astrbot_run) is True
        assert astrbot_run.config_file()["trace_enable"] is True

        # -- AstrBot's own Trace switch (4.29: Data & Logs › Trace › Pause / Start): botrace
        # follows it (its poller, every 0.5 s) ...
        await page.get_by_role("link", name="Data & Logs").click()
        await page.get_by_role("tab", name="Trace").click()
        await page.get_by_role("button", name="Pause").click()
        await expect(page.get_by_role("button", name="Start")).to_be_visible()
        await _botrace_follows(http, astrbot_run, False)
        # ... and the page, opened again (from the sidebar's entry this time), shows it
        await page.locator("nav").get_by_text("botrace · Trace", exact=True).click()
        await page.wait_for_url(f"**/#/plugin-view/{PLUGIN_NAME}/trace")
        await expect(frame.locator("#live")).to_have_attribute("data-state", "live", timeout=15000)
        await expect(switch).not_to_be_checked()
        for name in ("astrbot-dashboard-trace.png", "astrbot-plugin-pages.png"):
            assert (shots / name).stat().st_size < 300_000, name
        assert problems == [], problems

        # the page already open follows too: the live hub announces every switch
        try:
            await _set_astrbot_trace_enable(http, astrbot_run, True)
            await _botrace_follows(http, astrbot_run, True)
            await expect(switch).to_be_checked(timeout=3000)
        finally:
            await browser.close()



@pytest.mark.browser
async def test_page_stays_live_across_a_plugin_reload(astrbot_run: AstrBotRun) -> None:
    """AstrBot reloads a plugin when its settings are saved: the open page keeps showing
    new messages (it subscribes again to the new botrace behind the same route)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    from playwright.async_api import async_playwright, expect

    await astrbot_run.gates.advance_to("reload", astrbot_run)
    async with async_playwright() as pw, aiohttp.ClientSession() as http:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            # logged in already: the dashboard keeps its JWT in localStorage
            await context.add_init_script(f"localStorage.setItem('token', {astrbot_run.token!r})")
            page = await context.new_page()
            await page.goto(f"{astrbot_run.url}/#/plugin-view/{PLUGIN_NAME}/trace")
            frame = page.frame_locator("iframe.plugin-view-frame")
            await expect(frame.locator("#live")).to_have_attribute("data-state", "live", timeout=15000)
            # the card's "Reload Extension" button
            async with http.post(f"{astrbot_run.url}/api/v1/plugins/{PLUGIN_NAME}/reload",
                                 headers=_auth(astrbot_run)) as resp:
                assert (await resp.json())["status"] == "ok"
            await _botrace_follows(http, astrbot_run, True)  # the new botrace answers
            astrbot_run.gates.open("reload")
            row = frame.locator("table.traces tbody tr", has_text=AFTER_RELOAD)
            await expect(row).to_have_count(1, timeout=10000)
        finally:
            await browser.close()
