"""The critical path in the Trace tab: the marked spans, the stripes, 'where the time went'."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import expect

from botrace import PluginRef

try:
    from browser.harness import wait_for_trace
except ImportError:  # pragma: no cover
    from tests.browser.harness import wait_for_trace

pytestmark = pytest.mark.browser

DICE = PluginRef("dice", "Dice", "third_party", "0.3")


async def gather_trace(host):
    """A handler that asks an LLM, then runs two tools at once: a fast one and a slow one."""
    tracer = host.tracer
    root = tracer.start_trace("message", {"outline": "roll two dice", "umo": "demo:FriendMessage:cp",
                                          "user_id": "u1", "session_id": "cp"})
    with root:
        with tracer.span("dice.on_message", "plugin_call", plugin=DICE):
            with tracer.span("llm scripted-1", "llm_call") as llm:
                llm.set_meta(model="scripted-1")
                await asyncio.sleep(0.12)

            async def tool(name, seconds):
                with tracer.span(name, "tool_call", plugin=DICE) as t:
                    t.set_meta(tool_name=name)
                    await asyncio.sleep(seconds)
            await asyncio.gather(tool("roll_fast", 0.02), tool("roll_slow", 0.25))
    await wait_for_trace(host.store, root.trace_id, tracer)
    return root.trace_id


async def marked(page):
    """Names of the rows marked as on the critical path, in tree order."""
    return await page.evaluate("""() => [...document.querySelectorAll('.span-row')]
        .sort((a, b) => a.dataset.index - b.dataset.index)
        .filter(r => r.classList.contains('critical') && r.querySelector('.cp-mark'))
        .map(r => r.querySelector('.span-name').textContent)""")


async def test_browser_critical_path_marks_the_blocking_chain_and_lists_where_the_time_went(host, page):
    tid = await gather_trace(host)
    await page.goto(f"{host.url}traces/{tid}")
    await expect(page.locator(".span-row")).to_have_count(5)
    await expect(page.locator(".critical-summary")).to_have_attribute("data-state", "ready")
    # the fast tool ran alongside the slow one and ended first: it is not on the path
    assert await marked(page) == ["message", "dice.on_message", "llm scripted-1", "roll_slow"]
    fast = page.locator(".span-row", has_text="roll_fast")
    await expect(fast).to_have_class(re.compile(r"\boff-path\b"))
    assert await fast.locator(".cp-mark").count() == 0
    assert await page.locator(".span-row", has_text="roll_slow").locator(".cp-seg").count() >= 1
    # the page's path is the API's
    doc = await (await page.request.get(f"{host.url}api/v1/traces/{tid}?shape=flat&values=none")).json()
    names = {s["span_id"]: s["name"] for s in doc["spans"]}
    assert sorted(await marked(page)) == sorted(names[s["span_id"]] for s in doc["critical_path"]["spans"])

    # where the time went: the slow tool and the LLM lead, the shares add up to ~100 %
    items = page.locator(".cp-list li")
    labels = await page.locator(".cp-list .cp-entry").evaluate_all(
        "els => els.map(e => e.querySelector('bdi').textContent)")
    assert labels[:2] == ["roll_slow (Dice)", "llm scripted-1 (Dice)"]  # the LLM call inherits the plugin
    pcts = [int(m) for m in re.findall(r"(\d+) %", " ".join(await items.all_inner_texts()))]
    assert 97 <= sum(pcts) <= 103, pcts
    shares = await items.evaluate_all("els => els.map(e => Number(e.dataset.share))")
    assert abs(sum(shares) - 1) < 1e-6
    api_labels = [g["label"] for g in doc["critical_path"]["summary"]]
    assert labels == api_labels[:len(labels)]

    # an entry selects its span
    await page.locator(".cp-entry", has_text="roll_slow").click()
    await expect(page.locator(".detail-title")).to_have_text("roll_slow")
    await expect(page.locator(".span-row.selected")).to_contain_text("roll_slow")

    # the toggle switches the marking off (and the choice survives a reload)
    toggle = page.locator(".cp-toggle")
    await expect(toggle).to_have_attribute("aria-pressed", "true")
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    await expect(page.locator(".span-row.critical")).to_have_count(0)
    await expect(page.locator(".cp-seg")).to_have_count(0)
    await expect(page.locator(".span-row.off-path")).to_have_count(0)
    await page.reload()
    await expect(page.locator(".span-row")).to_have_count(5)
    await expect(page.locator(".cp-toggle")).to_have_attribute("aria-pressed", "false")
    await expect(page.locator(".span-row.critical")).to_have_count(0)
    await page.locator(".cp-toggle").click()
    await expect(page.locator(".span-row.critical")).to_have_count(4)
    assert page.problems == []


async def test_browser_critical_path_of_a_running_trace_appears_when_it_finishes(host, page):
    host.gate = asyncio.Event()  # the harness message waits after its first LLM call
    await page.goto(host.url)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await page.fill("#chat-input", "slow weather")
    await page.click("#chat-send")
    running = page.locator('table.traces tbody tr[data-status="running"]', has_text="slow weather")
    await running.locator("a.row-link").click()
    await expect(page.locator(".span-row")).to_have_count(5)
    await expect(page.locator(".critical-summary")).to_have_attribute("data-state", "running")
    assert await page.locator(".span-row.critical").count() == 0
    host.gate.set()
    await expect(page.locator(".critical-summary")).to_have_attribute("data-state", "ready", timeout=10000)
    # the harness's message runs its stages, tools and LLM calls one after another: all block
    await expect(page.locator(".span-row.critical")).to_have_count(8)
    await expect(page.locator(".cp-entry").first).to_be_visible()
    assert page.problems == []
