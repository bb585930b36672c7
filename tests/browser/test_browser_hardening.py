"""The page's side of issue 17 ("Hardening"): bidi text, long errors, the running trace's
header, the health view and late spans, in headless Chromium."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from playwright.async_api import expect

from botrace import PluginRef, hookimpl

try:
    from browser.harness import wait_for_trace
except ImportError:  # pragma: no cover
    from tests.browser.harness import wait_for_trace

pytestmark = pytest.mark.browser

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: what follows is drawn right to left

# Whether `needle` is drawn left to right where it appears (as text) under `selector`: its
# first character left of its last. A string reversed by a bidi override draws the other way.
DRAWN_LTR = """([selector, needle]) => {
  const root = document.querySelector(selector);
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const i = node.data.indexOf(needle);
    if (i < 0) continue;
    const box = (a) => {
      const r = document.createRange();
      r.setStart(node, a);
      r.setEnd(node, a + 1);
      return r.getBoundingClientRect();
    };
    return box(i).left < box(i + needle.length - 1).left;
  }
  throw new Error(`${needle} is not in ${selector}`);
}"""


async def drawn_ltr(page, selector: str, needle: str) -> bool:
    return await page.evaluate(DRAWN_LTR, [selector, needle])


async def test_browser_bidi_overrides_in_trace_strings_stay_in_their_place(host, page):
    """Item 12: a plugin display name with U+202E drew the page's own "third-party" as
    "ytrap-driht"; a message "\\u202egnp.exe" showed as "exe.png"."""
    plugin = PluginRef("sly", f"{RLO}Sly plugin", "third_party", "1.0")
    root = host.tracer.start_trace("message", {"outline": f"{RLO}gnp.exe", "user_id": f"{RLO}eve",
                                               "session_id": "s1"})
    with root, host.tracer.span(f"{RLO}open gnp.exe", "tool_call", plugin=plugin) as s:
        s.set_input(file=f"{RLO}gnp.exe")
    await wait_for_trace(host.store, root.trace_id, host.tracer)

    await page.goto(host.url)
    cell = page.locator("table.traces tbody tr .c-msg")
    await expect(cell).to_have_text("⟨U+202E⟩gnp.exe")  # the control is shown, not obeyed
    assert await drawn_ltr(page, "table.traces tbody tr .c-msg", "gnp.exe")
    assert await drawn_ltr(page, "table.traces tbody tr .c-from", "eve")

    await page.goto(f"{host.url}traces/{root.trace_id}")
    await page.locator(".span-row", has_text="open gnp.exe").click()
    plugin_row = page.locator(".detail-pane .kv dd", has_text="third-party")
    await expect(plugin_row).to_have_text("⟨U+202E⟩Sly plugin · third-party · v1.0")
    assert await drawn_ltr(page, ".detail-pane .kv", "third-party")
    await expect(page.locator(".values-input pre")).to_contain_text('"file": "\\u202egnp.exe"')
    assert await drawn_ltr(page, "h1.outline", "gnp.exe")
    # every string from the trace sits in its own isolate
    for selector in ("h1.outline", ".detail-title", ".detail-pane .chip.plugin", ".span-row .span-name",
                     ".facts a[href*='user']"):
        assert await page.locator(f"{selector} bdi").count() >= 1, selector
    assert page.problems == []


async def test_browser_long_errors_are_cut_for_display(host, page):
    """Item 13: the error message and traceback were shown whole (a 100 KB error filled the pane)."""
    root = host.tracer.start_trace("message", {"outline": "a long error"})
    with root, host.tracer.span("fetch", "io_call") as s:
        s.set_error("short")
    await wait_for_trace(host.store, root.trace_id, host.tracer)

    async def with_a_100kb_error(route):  # what a host with generous limits may record
        resp = await route.fetch()
        span = await resp.json()
        span["error"] = {"type": "LookupError", "message": "no forecast: " + "m" * 100_000,
                         "traceback": '  File "x.py", line 1, in f\n' * 3000 + "LookupError: the end\n"}
        await route.fulfill(response=resp, body=json.dumps(span))

    await page.route(f"**/api/v1/traces/{root.trace_id}/spans/*", with_a_100kb_error)
    await page.goto(f"{host.url}traces/{root.trace_id}")
    await page.locator(".span-row", has_text="fetch").click()
    head = page.locator(".error-box .error-head")
    await expect(head).to_contain_text("[cut for display: 98013 more characters]")
    assert len(await head.text_content()) < 2200
    traceback = await page.locator(".error-box .traceback").text_content()
    assert traceback.startswith("[cut for display:") and len(traceback) < 2200
    assert traceback.endswith("LookupError: the end\n")  # a traceback's end says most
    await expect(page.locator(".detail-pane")).to_contain_text("The download has them in full")
    assert page.problems == []


async def test_browser_running_trace_header_counts_the_spans_it_grows(host, page):
    """Item 13: the header's span count stayed at what the trace had when it started."""
    host.gate = asyncio.Event()
    await page.goto(host.url)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await page.fill("#chat-input", "count me")
    await page.click("#chat-send")
    running = page.locator('table.traces tbody tr[data-status="running"]', has_text="count me")
    await running.locator("a.row-link").click()
    await expect(page.locator(".span-row")).to_have_count(5)
    spans = page.locator(".facts > div", has_text="Spans").locator("dd")
    await expect(spans).to_have_text("5")
    host.gate.set()
    await expect(page.locator(".trace-title .status")).to_contain_text("ok", timeout=10000)
    await expect(spans).to_have_text("8")
    assert page.problems == []


class _LosingExporter:
    def __init__(self) -> None:
        self.dropped = 0

    @hookimpl
    def botrace_health(self, tracer):
        return {"name": "otlp", "url": "http://collector:4318/v1/traces", "queue_depth": 12,
                "queue_max": 2048, "exported": 0, "dropped": self.dropped, "retries": 7,
                "last_error": "ConnectionRefusedError: [Errno 111] Connection refused",
                "last_error_ns": time.time_ns()}


class _AstrBotAdapter:
    @hookimpl
    def botrace_health(self, tracer):
        return {"name": "astrbot adapter", "astrbot_version": "4.29.3", "state": "degraded",
                "wrapped": ["pipeline stages", "LLM calls"],
                "unavailable": {"tool calls": "FunctionToolExecutor.execute not found"}}


async def test_browser_health_view_shows_every_part_and_what_is_wrong(host, page):
    """Item 15: the health panel the README promised did not exist."""
    exporter = _LosingExporter()
    host.tracer.register(exporter, name="test-otlp")
    host.tracer.register(_AstrBotAdapter(), name="test-adapter")
    exporter.dropped = 300
    await page.goto(f"{host.url}health")
    await expect(page.locator(".health-status")).to_have_text("degraded")
    problems = page.locator(".health-problems")
    await expect(problems).to_contain_text("otlp: dropped: 300 in the last 5 min")
    await expect(problems).to_contain_text("astrbot adapter: not traced: tool calls")
    otlp = page.locator('.health-card[data-part="otlp"]')
    await expect(otlp).to_contain_text("ConnectionRefusedError")
    await expect(otlp.locator("dd.err")).to_have_text("300")  # dropped, as a loss
    await expect(otlp).to_contain_text("Retries")
    await expect(otlp).to_contain_text("12 / 2,048")
    adapter = page.locator('.health-card[data-part="astrbot adapter"]')
    await expect(adapter.locator(".not-traced")).to_contain_text("tool calls: FunctionToolExecutor.execute not found")
    store = page.locator('.health-card[data-part="store"]')
    await expect(store).to_contain_text("Writer")
    await expect(store.locator(".chip.state")).to_have_text("ok")
    await expect(page.locator('.health-card[data-part="tracer"]')).to_contain_text("Events dropped")
    await expect(page.locator('[data-nav="health"]')).to_have_attribute("data-status", "degraded")
    await expect(page.locator('[data-nav="health"]')).to_have_attribute("aria-current", "page")
    assert page.problems == []


async def test_browser_late_spans_are_marked_and_announced(host, page):
    """A span that started after its trace's root ended (a background task) is marked late;
    the trace's ``late_spans`` count is announced in the header."""
    async def background() -> None:
        await asyncio.sleep(0.05)
        with host.tracer.span("reminder.later", "custom"):
            pass

    root = host.tracer.start_trace("message", {"outline": "remind me"})
    with root:
        with host.tracer.span("reminder.set", "custom"):
            pass
        task = asyncio.get_running_loop().create_task(background())
    await task
    await wait_for_trace(host.store, root.trace_id, host.tracer)

    async def with_late_count(route):  # the summary's count, whether or not the store has it yet
        resp = await route.fetch()
        doc = await resp.json()
        doc["trace"]["late_spans"] = 1
        await route.fulfill(response=resp, body=json.dumps(doc))

    await page.route(f"**/api/v1/traces/{root.trace_id}?*", with_late_count)
    await page.goto(f"{host.url}traces/{root.trace_id}")
    await expect(page.locator(".trace-head .notice-warn")).to_contain_text("1 span started after the message's trace had ended")
    late = page.locator(".span-row.late")
    await expect(late).to_have_count(1)
    await expect(late).to_contain_text("reminder.later")
    await late.click()
    await expect(page.locator(".detail-pane .kv")).to_contain_text("after the trace ended")
    await expect(page.locator(".span-row", has_text="reminder.set")).not_to_have_class("late")
    assert page.problems == []
