"""The Trace tab on the real reference host (what ``botrace demo`` serves), in Chromium."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from botrace.store import TraceStore
from botrace_host_adapter.demo import chat_function
from botrace_host_adapter.refhost.host import RefHost
from botrace_host_adapter.refhost.testing import TEST_CONFIG
from botrace_host_adapter.refhost.tracing import connect, disconnect
from botrace_webui import create_app, run_server

pytestmark = pytest.mark.browser


@pytest.fixture
async def refhost_url(tmp_path):
    host = RefHost.from_config_file(tmp_path / "refhost_config.json", **TEST_CONFIG)
    await host.start()
    store = TraceStore(str(tmp_path / "botrace.db"))
    await store.open()
    tracer = await connect(host, store, install=False)
    runner = await run_server(create_app(tracer, store, chat=chat_function(host)), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()
        await disconnect(host)
        await host.stop()
        await store.close()


async def test_browser_reference_host_message_shows_stages_plugins_and_icons(refhost_url, page):
    await page.goto(refhost_url)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await page.fill("#chat-input", "/weather Paris")
    await page.click("#chat-send")
    bubble = page.locator(".bubble.bot").last
    await expect(bubble).to_contain_text("Paris")
    await expect(page.locator("table.traces tbody tr", has_text="/weather Paris")).to_have_count(1)
    await bubble.locator("a.bubble-link").click()
    handler = page.locator(".span-row", has_text="WeatherPlugin.weather")
    await expect(handler).to_have_count(1)
    star_request = page.locator(".span-row", has_text="StarRequest")
    level = int(await star_request.get_attribute("aria-level"))
    assert int(await handler.get_attribute("aria-level")) == level + 1
    # third-party plugin: puzzle; the builtin session controller: gear
    await expect(handler.locator(".chip.plugin use")).to_have_attribute("href", "/static/icons.svg#puzzle")
    builtin = page.locator(".span-row", has_text="SessionController").first
    await expect(builtin.locator(".chip.plugin use")).to_have_attribute("href", "/static/icons.svg#gear")
    await handler.click()
    await expect(page.locator(".detail-pane")).to_contain_text("third-party")
    assert page.problems == []
