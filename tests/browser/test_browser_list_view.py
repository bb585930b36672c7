"""The trace list in Chromium (issue 18, items 5, 6, 7 and 10): live rows wait while the
pointer is over the list, names cut in the list and the chat box read in full on hover and
focus, sortable columns, and the latency scatter whose points open their trace."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from botrace import PluginRef

try:
    from browser.harness import wait_for_trace
except ImportError:  # pragma: no cover
    from tests.browser.harness import wait_for_trace

pytestmark = pytest.mark.browser

ROWS = "table.traces tbody tr"


async def open_list(page, url):
    await page.goto(url)
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")


async def chat(host, text, user="u1", session="s1", step=None):
    if step is not None:
        host.step_s = step
    await host.chat(text, user, session)
    tid = host.trace_ids[-1]
    await wait_for_trace(host.store, tid, host.tracer)
    return tid


async def record(host, outline, plugins=(), fail=False):
    """A finished trace with a span of each plugin, recorded through the tracer."""
    root = host.tracer.start_trace("message", {"user_id": "u1", "session_id": "s1", "outline": outline,
                                               "umo": "demo:FriendMessage:s1"})
    try:
        with root:
            for p in plugins:
                with host.tracer.span(f"{p.name}.handler", "plugin_call", plugin=p):
                    pass
            if fail:
                raise RuntimeError("the handler failed")
    except RuntimeError:
        pass
    await wait_for_trace(host.store, root.trace_id, host.tracer)
    return root.trace_id


async def row_under(page, x, y):
    return await page.evaluate("([x, y]) => document.elementFromPoint(x, y)?.closest('tr')?.dataset.traceId", [x, y])


async def test_browser_live_rows_wait_while_the_pointer_is_over_the_list(host, page):
    host.step_s = 0.01
    old = [await chat(host, f"older {i}") for i in range(3)]
    await open_list(page, host.url)
    rows = page.locator(ROWS)
    await expect(rows).to_have_count(3)
    # the pointer rests on the second row, as a reader about to click it
    box = await rows.nth(1).locator("td.c-time").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x, y)
    assert await row_under(page, x, y) == old[1]
    new_btn = page.locator("button.new-rows")
    first = await chat(host, "arrived while hovering")
    await expect(new_btn).to_be_visible()
    await expect(new_btn).to_have_text(re.compile(r"1 new"))
    second = await chat(host, "another while hovering")
    await expect(new_btn).to_have_text(re.compile(r"2 new"))
    await expect(new_btn).to_have_attribute("aria-label", "Show 2 new traces")
    # nothing moved: the same row is under the pointer, and no row was added
    await expect(rows).to_have_count(3)
    assert await row_under(page, x, y) == old[1]
    await new_btn.click()
    await expect(rows).to_have_count(5)
    await expect(new_btn).to_be_hidden()
    assert await page.eval_on_selector_all(ROWS, "rs => rs.map(r => r.dataset.traceId)") == \
        [second, first, old[2], old[1], old[0]]

    # leaving the list inserts what arrived meanwhile (and live insertion resumes)
    third = await chat(host, "third while hovering")
    await expect(new_btn).to_have_text(re.compile(r"1 new"))
    await page.mouse.move(5, 5)
    await expect(rows).to_have_count(6)
    await expect(rows.first).to_have_attribute("data-trace-id", third)
    await expect(new_btn).to_be_hidden()
    fourth = await chat(host, "while nobody looks")
    await expect(rows.first).to_have_attribute("data-trace-id", fourth)

    # a focused row pauses too; the button works from the keyboard and lands on the newest row
    await rows.nth(2).locator("a.row-link").focus()
    fifth = await chat(host, "arrived while a row had focus")
    await expect(new_btn).to_have_text(re.compile(r"1 new"))
    await expect(rows).to_have_count(7)
    await new_btn.focus()
    await page.keyboard.press("Enter")
    await expect(rows).to_have_count(8)
    await expect(rows.first).to_have_attribute("data-trace-id", fifth)
    assert await page.evaluate("document.activeElement.closest('tr')?.dataset.traceId") == fifth
    assert page.problems == []


async def test_browser_cut_names_read_in_full_on_hover_and_focus(host, page):
    long_names = [PluginRef("a_plugin_with_a_really_long_internal_name", "Long one", "third_party", "1"),
                  PluginRef("\u202eevil_looking_plugin_name_reversed", "Evil", "third_party", "1"),
                  PluginRef("third_plugin_hidden_behind_plus_one", "Third", "builtin", "1")]
    await record(host, "many plugins", long_names)
    await open_list(page, host.url)
    row = page.locator(ROWS, has_text="many plugins")
    chips = row.locator("td.c-plugins .chip")
    await expect(chips).to_have_count(3)
    first = chips.nth(0)
    # cut at rest: the chip is 98 px at most and its text does not fit
    assert (await first.bounding_box())["width"] <= 99
    assert await first.evaluate("c => c.querySelector('bdi').scrollWidth > c.querySelector('bdi').clientWidth")
    assert await first.get_attribute("title") == "plugin a_plugin_with_a_really_long_internal_name"
    await expect(chips.nth(2)).to_be_hidden()
    await expect(row.locator(".more")).to_have_text("+1")
    await expect(row.locator(".more")).to_have_attribute(
        "aria-label", "and 1 more: third_plugin_hidden_behind_plus_one")

    async def read_in_full():
        await expect(chips.nth(2)).to_be_visible()
        for i in range(3):
            fits = await chips.nth(i).evaluate(
                "c => c.querySelector('bdi').scrollWidth <= c.querySelector('bdi').clientWidth + 1")
            assert fits, i
        assert (await first.bounding_box())["width"] > 98
        await expect(row.locator(".more")).to_be_hidden()

    height = (await row.bounding_box())["height"]
    await row.locator("td.c-plugins").hover()
    await read_in_full()
    assert (await row.bounding_box())["height"] == height  # laid over the cell: nothing moves
    await page.mouse.move(5, 5)
    await expect(chips.nth(2)).to_be_hidden()
    await row.locator("a.row-link").focus()
    await read_in_full()
    # untrusted text stays text: the override shows as a mark, inside its own bidi isolate
    evil = chips.nth(1).locator("bdi")
    await expect(evil).to_have_text("⟨U+202E⟩evil_looking_plugin_name_reversed")

    # the chat box's 70 px fields: the full value as the title, and a focused field widens to show it
    user = page.locator("#chat-user")
    await user.fill("user-id-far-longer-than-70-px")
    await expect(user).to_have_attribute("title", "user-id-far-longer-than-70-px")
    await page.locator("#chat-session").focus()
    assert (await user.bounding_box())["width"] <= 71
    session = page.locator("#chat-session")
    await session.fill("\u202esession-reversed")
    await expect(session).to_have_attribute("title", "⟨U+202E⟩session-reversed")
    assert (await session.bounding_box())["width"] > 150
    await user.focus()
    assert (await user.bounding_box())["width"] > 150
    # the whole value fits the focused field: its text is narrower than the field's inside
    assert await user.evaluate("""u => {
        const ctx = document.createElement('canvas').getContext('2d');
        ctx.font = getComputedStyle(u).font;
        const pad = parseFloat(getComputedStyle(u).paddingLeft) + parseFloat(getComputedStyle(u).paddingRight);
        return ctx.measureText(u.value).width <= u.clientWidth - pad; }""")
    assert page.problems == []


async def ids(page):
    return await page.eval_on_selector_all(ROWS, "rs => rs.map(r => r.dataset.traceId)")


async def test_browser_list_columns_sort_by_header_and_keyboard(host, page):
    slow = await chat(host, "slow one", step=0.12)
    fast = await chat(host, "fast one", step=0.01)
    middle = await chat(host, "middle one", step=0.05)
    few = await record(host, "no tokens at all")
    await open_list(page, host.url)
    await expect(page.locator(ROWS)).to_have_count(4)
    time_th = page.locator("table.traces th.c-time")
    await expect(time_th).to_have_attribute("aria-sort", "descending")  # newest first
    dur_th = page.locator("table.traces th.c-dur")
    await dur_th.locator("button").click()
    await expect(dur_th).to_have_attribute("aria-sort", "descending")
    await expect(time_th).not_to_have_attribute("aria-sort", re.compile(".*"))
    await expect(dur_th.locator(".sort-arrow")).to_have_text("▼")
    await expect(page.locator(ROWS).first).to_have_attribute("data-trace-id", slow)
    assert await ids(page) == [slow, middle, fast, few]
    assert "sort=-duration" in page.url
    await dur_th.locator("button").click()
    await expect(dur_th).to_have_attribute("aria-sort", "ascending")
    await expect(page.locator(ROWS).first).to_have_attribute("data-trace-id", few)
    assert await ids(page) == [few, fast, middle, slow]
    # by keyboard: tokens, largest first (ties newest first)
    await page.locator("table.traces th.c-tokens button").focus()
    await page.keyboard.press("Enter")
    tok_th = page.locator("table.traces th.c-tokens")
    await expect(tok_th).to_have_attribute("aria-sort", "descending")
    await expect(page.locator(ROWS).last).to_have_attribute("data-trace-id", few)
    assert await ids(page) == [middle, fast, slow, few]
    # a reload keeps the order (it is in the URL)
    await page.reload()
    await expect(page.locator("table.traces th.c-tokens")).to_have_attribute("aria-sort", "descending")
    await expect(page.locator(ROWS)).to_have_count(4)
    assert await ids(page) == [middle, fast, slow, few]
    # under a sort a new trace waits behind the button, which reloads in that order
    await page.mouse.move(5, 5)
    newest = await chat(host, "new under a sort", step=0.01)
    new_btn = page.locator("button.new-rows")
    await expect(new_btn).to_have_text(re.compile(r"1 new"))
    await expect(page.locator(ROWS)).to_have_count(4)
    await new_btn.click()
    await expect(page.locator(ROWS)).to_have_count(5)
    assert await ids(page) == [newest, middle, fast, slow, few]
    # Time goes back to newest first
    await page.locator("table.traces th.c-time button").click()
    await expect(time_th).to_have_attribute("aria-sort", "descending")
    await expect(page.locator(ROWS).first).to_have_attribute("data-trace-id", newest)
    assert await ids(page) == [newest, few, middle, fast, slow]
    assert page.problems == []


async def test_browser_latency_scatter_points_open_their_trace(host, page):
    ok_ids = [await chat(host, f"ok {i}", step=0.01) for i in range(3)]
    failed = await record(host, "this one failed", fail=True)
    await open_list(page, host.url)
    points = page.locator(".latency-svg g.pt")
    await expect(points).to_have_count(4)
    await expect(page.locator(".latency-info")).to_have_text("4 traces · 1 errors")
    # an error is a cross, not only a colour; ok points are dots
    err = page.locator(f'.latency-svg g.pt[data-trace-id="{failed}"]')
    assert await err.get_attribute("class") == "pt pt-error"
    assert await err.evaluate("g => [...g.children].map(c => c.tagName).join(',')") == "title,circle,path"
    ok = page.locator(f'.latency-svg g.pt[data-trace-id="{ok_ids[0]}"]')
    assert await ok.evaluate("g => [...g.children].map(c => c.tagName).join(',')") == "title,circle,circle"
    await expect(err.locator("title")).to_contain_text("error")
    # a live trace adds its point
    live_id = await chat(host, "a live one", step=0.01)
    await expect(points).to_have_count(5)
    # filtered like the list
    await page.select_option("#f-status", "error")
    await expect(points).to_have_count(1)
    await expect(page.locator(ROWS)).to_have_count(1)
    await page.select_option("#f-status", "")
    await expect(points).to_have_count(5)
    # a click on a point opens its trace
    await err.click()
    await expect(page.locator("h1.outline")).to_have_text("this one failed")
    await page.go_back()
    await expect(points).to_have_count(5)
    # by keyboard: End picks the newest point, Enter opens it
    await page.locator(".latency-svg").focus()
    await page.keyboard.press("End")
    await expect(page.locator(f'.latency-svg g.pt.active[data-trace-id="{live_id}"]')).to_have_count(1)
    await expect(page.locator(".latency p.sr-only")).to_contain_text("5 of 5")
    await page.keyboard.press("Enter")
    await expect(page.locator("h1.outline")).to_have_text("a live one")
    assert page.problems == []
