"""Stats › Plugins (every span of a plugin), the plugin filter by display name, and the top
spenders on the Users and Conversations views, in Chromium."""

from __future__ import annotations

import re
import time

import pytest
from playwright.async_api import expect
from test_plugin_stats import PRICES, known_traces

from botrace import Tracer
from botrace.config import Settings
from botrace.store import TraceStore
from botrace.store.synthetic import feed
from botrace_webui import create_app, run_server

pytestmark = pytest.mark.browser


@pytest.fixture
async def url(tmp_path):
    """The page over a store holding the known traces, half a minute old, with prices."""
    settings = Settings.from_mapping({"trace_price_table": PRICES, "trace_retention_days": 0})
    store = TraceStore(str(tmp_path / "p.db"), settings, flush_interval=0.0)
    await store.open()
    for trace in known_traces(time.time_ns() - 30 * 10**9):
        feed(store, trace)
    assert await store.flush(timeout=30)
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    runner = await run_server(create_app(tracer, store, None), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()
        await tracer.aclose()
        await store.close()


async def test_browser_plugin_stats_show_a_tool_only_plugin_with_its_timeout(url, page):
    await page.goto(f"{url}stats?group_by=plugin")
    rows = page.locator("table.stats-plugins tbody tr")
    await expect(rows).to_have_count(3)  # alpha, tooler (tools only), core
    tooler = page.locator("table.stats-plugins tbody tr[data-plugin='tooler']")
    await expect(tooler.locator("th")).to_contain_text("Tool Only (tooler)")
    await expect(tooler.locator(".c-count")).to_have_text("3")
    await expect(tooler.locator(".c-errors")).to_contain_text("(1)")
    # the 2 s timeout (within its 3 % histogram bucket); before, the plugin had no row
    await expect(tooler.locator(".c-p99")).to_have_text(re.compile(r"^(1\.9\d|2\.0\d) s$"))
    await expect(tooler.locator(".c-types [data-span-type='tool_call']")).to_contain_text("×3 (1 err)")
    alpha = page.locator("table.stats-plugins tbody tr[data-plugin='alpha']")
    for stype in ("plugin_call", "io_call", "llm_call"):
        await expect(alpha.locator(f".c-types [data-span-type='{stype}']")).to_have_count(1)
    # its link filters the list by the plugin; the list then offers both names
    await tooler.locator("th a").click()
    await expect(page.locator("table.traces tbody tr")).to_have_count(2)
    options = page.locator("datalist#plugin-names option")
    await expect(options.and_(page.locator("[value='Tool Only']"))).to_have_attribute(
        "label", "Tool Only (tooler)")
    assert page.problems == []


async def test_browser_the_plugin_filter_takes_the_display_name(url, page):
    await page.goto(url)
    await expect(page.locator("table.traces tbody tr")).to_have_count(4)
    await page.fill("#f-plugin", "alpha helper")
    await expect(page.locator("table.traces tbody tr")).to_have_count(2)
    await expect(page.locator("table.traces tbody tr").first).to_contain_text("m2")
    assert page.problems == []


async def test_browser_top_spenders_on_the_users_and_conversations_views(url, page):
    await page.goto(f"{url}users")
    card = page.locator(".spend-card")
    rows = card.locator("tbody tr")
    await expect(rows).to_have_count(3)
    # carol's one call to the dear model costs most, then alice, then bob
    assert [await r.get_attribute("data-key") for r in await rows.all()] == ["carol", "alice",
                                                                             "bob"]
    await expect(rows.nth(0).locator(".c-cost")).to_have_text("$0.03")
    # alice's LLM tokens: alpha's call 1,100 of 1,650, the host's own 550
    await expect(rows.nth(1).locator(".c-shares")).to_contain_text("Alpha Helper 67%")
    await expect(rows.nth(1).locator(".c-shares")).to_contain_text("host 33%")
    await card.locator("select.spend-window").select_option("today")
    await expect(rows).to_have_count(3)
    await page.goto(f"{url}sessions")
    await expect(page.locator(".spend-card tbody tr").first).to_have_attribute("data-key", "s-d")
    await page.locator(".spend-card tbody tr").first.locator("a").click()
    await expect(page.locator(".conversation .turn")).to_have_count(1)
    assert page.problems == []
