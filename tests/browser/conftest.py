"""Fixtures for the browser tests: a running host (tracer, store, web app) and a Chromium page."""

from __future__ import annotations

import faulthandler
import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

try:
    from browser.harness import Host
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.browser.harness import Host


@pytest.fixture(autouse=True)
def _no_endless_browser_test():
    """A browser test stuck for minutes dumps every thread's stack and ends the run,
    rather than hanging CI without a word (each test here takes seconds)."""
    faulthandler.dump_traceback_later(240, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
async def host(tmp_path):
    h = await Host(str(tmp_path / "traces.db"), step_s=0.12).start()
    yield h
    await h.stop()


class PageProblems(list):
    """Script errors and CSP violations the page reported; a test ends by asserting none."""


@pytest.fixture
async def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture
async def page(browser):
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    pg = await context.new_page()
    problems = PageProblems()
    pg.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))

    def on_console(msg):
        if msg.type == "error" and ("Content Security Policy" in msg.text or "Uncaught" in msg.text):
            problems.append(f"console: {msg.text}")

    pg.on("console", on_console)
    pg.problems = problems
    yield pg
    await context.close()
