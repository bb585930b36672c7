"""The Trace tab's tools: find in trace, the slowest/errors jumps, the resizable name column,
and comparing two traces (compare.js over GET /api/v1/compare)."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import expect

from botrace import PluginRef

try:
    from browser.harness import wait_for_trace
    from browser.test_plugin_page import dashboard, open_page  # dashboard: a fixture
except ImportError:  # pragma: no cover
    from tests.browser.harness import wait_for_trace
    from tests.browser.test_plugin_page import dashboard, open_page  # noqa: F401

pytestmark = pytest.mark.browser

DICE = PluginRef("dice", "Dice roller", "third_party", "0.3")
LONG = "summarise_the_whole_conversation_history_and_every_attachment_of_the_user_" * 2


async def dice_trace(host, slow_s=0.15, fail=True):
    """message > dice.on_message > [llm, roll_fast, roll_slow (fails), LONG tool], then RespondStage."""
    tracer = host.tracer
    root = tracer.start_trace("message", {"outline": "roll two dice", "umo": "demo:FriendMessage:d",
                                          "user_id": "u1", "session_id": "d"})
    with root:
        with tracer.span("dice.on_message", "plugin_call", plugin=DICE):
            with tracer.span("llm scripted-1", "llm_call") as llm:
                llm.set_meta(model="scripted-1")
                llm.set_usage(input_tokens=100, output_tokens=10)
                await asyncio.sleep(0.02)
            with tracer.span("roll_fast", "tool_call", plugin=DICE) as t:
                t.set_meta(tool_name="roll_fast")
                await asyncio.sleep(0.01)
            try:
                with tracer.span("roll_slow", "tool_call", plugin=DICE) as t:
                    t.set_meta(tool_name="roll_slow")
                    await asyncio.sleep(slow_s)
                    if fail:
                        raise TimeoutError("the dice fell off the table")
            except TimeoutError:
                pass
            with tracer.span(LONG, "tool_call", plugin=DICE):
                pass
        with tracer.span("RespondStage", "pipeline_stage"):
            pass
    await wait_for_trace(host.store, root.trace_id, tracer)
    return root.trace_id


async def open_trace(page, host, tid, rows):
    await page.goto(f"{host.url}traces/{tid}")
    await expect(page.locator(".span-row")).to_have_count(rows)


async def test_find_in_trace_counts_highlights_and_steps_through_matches(host, page):
    tid = await dice_trace(host)
    await open_trace(page, host, tid, 7)
    find = page.locator(".find-input")
    count = page.locator(".find-count")
    await find.fill("roll_")  # ("roll" alone also finds every span of the plugin "Dice roller")
    await expect(count).to_have_text("2 matches")
    await expect(page.locator(".span-row.match")).to_have_count(2)
    # the waterfall's bars of the matches are marked, the others dimmed
    outline = await page.locator(".span-row", has_text="roll_slow").locator(".bar").evaluate(
        "b => getComputedStyle(b).outlineStyle")
    assert outline == "solid"
    assert await page.locator(".span-row", has_text="RespondStage").locator(".bar").evaluate(
        "b => Number(getComputedStyle(b).opacity)") < 1
    # Enter: next, Shift+Enter: previous, wrapping; the detail follows
    await find.press("Enter")
    await expect(count).to_have_text("1 of 2")
    await expect(page.locator(".detail-title")).to_have_text("roll_fast")
    await expect(page.locator(".span-row.match-current")).to_contain_text("roll_fast")
    await find.press("Enter")
    await expect(count).to_have_text("2 of 2")
    await expect(page.locator(".span-row.selected")).to_contain_text("roll_slow")
    await find.press("Enter")
    await expect(count).to_have_text("1 of 2")
    await find.press("Shift+Enter")
    await expect(count).to_have_text("2 of 2")
    await expect(find).to_be_focused()  # Enter kept the focus in the box
    await page.locator(".find-prev").click()
    await expect(count).to_have_text("1 of 2")

    # fields: type, status, plugin (display name or name), name; all terms must match
    for query, expected in (("type:tool status:error roll", ["roll_slow"]),
                            ("type:llm", ["llm scripted-1"]),
                            ("plugin:roller type:handler", ["dice.on_message"]),
                            ("plugin:dice name:fast", ["roll_fast"]),
                            ("status:err", ["roll_slow"]),
                            ('"respond"', ["RespondStage"]),
                            ("scripted", ["llm scripted-1"])):
        await find.fill(query)
        await expect(page.locator(".span-row.match .span-name")).to_have_text(expected)
        await expect(count).to_have_text(f"{len(expected)} {'match' if len(expected) == 1 else 'matches'}")
    await find.fill("nothing like this")
    await expect(count).to_have_text("no matches")
    await expect(page.locator(".span-row.match")).to_have_count(0)
    await expect(page.locator(".find-next")).to_be_disabled()

    # a match inside a folded span: Enter unfolds its parent and shows it
    await page.get_by_role("button", name="Collapse all").click()
    await expect(page.locator(".span-row")).to_have_count(3)
    await find.fill("roll_slow")
    await expect(count).to_have_text("1 match")
    await find.press("Enter")
    await expect(page.locator(".span-row.selected")).to_contain_text("roll_slow")
    await expect(page.locator(".span-row")).to_have_count(7)
    # Escape clears the search
    await find.press("Escape")
    await expect(find).to_have_value("")
    await expect(count).to_have_text("")
    await expect(page.locator(".span-row.match")).to_have_count(0)
    # from the tree, f focuses the box
    await page.locator(".span-row", has_text="RespondStage").click()
    await page.locator(".tree-scroll").press("f")
    await expect(find).to_be_focused()
    assert page.problems == []


async def test_slowest_and_errors_jump_to_their_spans(host, page):
    tid = await dice_trace(host, slow_s=0.2)
    await open_trace(page, host, tid, 7)
    await page.locator(".span-row", has_text="RespondStage").click()
    slow = page.locator(".slowest-btn")
    await slow.click()
    await expect(slow).to_have_attribute("aria-expanded", "true")
    entries = page.locator(".slowest-list .slow-entry")
    assert await entries.count() == 7
    # by own time: the slow tool first (its parent's own time is small)
    await expect(entries.first).to_contain_text("roll_slow")
    await expect(entries.first).to_contain_text("(Dice roller)")
    await entries.first.click()
    await expect(page.locator(".slowest-list")).to_be_hidden()
    await expect(page.locator(".detail-title")).to_have_text("roll_slow")
    await expect(page.locator(".span-row.selected")).to_contain_text("roll_slow")

    errors = page.locator(".errors-btn")
    await expect(errors).to_have_text("Errors 1")
    await page.locator(".span-row", has_text="RespondStage").click()
    await errors.click()
    await expect(page.locator(".span-row.selected")).to_contain_text("roll_slow")
    await expect(errors).to_have_text("Errors 1/1")
    await expect(page.locator(".error-box")).to_contain_text("the dice fell off the table")
    assert page.problems == []


async def test_errors_jump_is_off_without_errors_and_scrolls_far_in_a_big_trace(host, page):
    tid = await dice_trace(host, fail=False)
    await open_trace(page, host, tid, 7)
    await expect(page.locator(".errors-btn")).to_be_disabled()
    await expect(page.locator(".errors-btn")).to_have_text("No errors")
    assert page.problems == []


async def test_find_in_a_5000_span_trace_counts_every_match_and_scrolls_to_it(host, page):
    tid = host.big_trace(5000)
    await wait_for_trace(host.store, tid, host.tracer, timeout=60)
    doc = await host.store.get_trace(tid, flat=True)
    spans = doc["spans"]
    tools = [s for s in spans if s["span_type"] == "tool_call"]
    await page.goto(f"{host.url}traces/{tid}")
    await page.wait_for_selector(f"#main[data-drawn='{len(spans)}']")
    find = page.locator(".find-input")
    await find.fill("type:tool")
    await expect(page.locator(".find-count")).to_have_text(f"{len(tools):,} matches")
    # the last match, far down the tree: Shift+Enter from the top wraps to it
    await page.locator(".span-row").first.click()
    await find.press("Shift+Enter")
    await expect(page.locator(".find-count")).to_have_text(f"{len(tools):,} of {len(tools):,}")
    last = page.locator(".span-row.match-current")
    await expect(last).to_have_count(1)
    await expect(last).to_be_in_viewport()
    await expect(page.locator(".detail-title")).to_have_text(tools[-1]["name"])
    assert await page.locator(".span-row").count() < 150  # still virtualised
    # a name deep in the trace
    target = spans[4321]["name"]
    await find.fill(f"name:{target}")
    await find.press("Enter")
    await expect(page.locator(".detail-title")).to_have_text(re.compile(re.escape(target)))
    await expect(page.locator(".span-row.selected")).to_be_in_viewport()
    # compared with itself: every span aligned, the first 1,000 rows drawn, the rest on demand
    await page.goto(f"{host.url}compare/{tid}/{tid}")
    await expect(page.locator("#main")).to_have_attribute("data-compared", str(len(spans)))
    await expect(page.locator(".compare-counts")).to_have_text(f"{len(spans):,} aligned · 0 only in A · 0 only in B")
    assert await page.locator("tr.cmp-row").count() == 1000
    await expect(page.locator(".compare-pane .pager button")).to_have_text(f"Show all {len(spans):,}")
    assert page.problems == []


async def test_the_name_column_resizes_by_drag_and_keyboard_and_is_remembered(host, page):
    tid = await dice_trace(host)
    await open_trace(page, host, tid, 7)
    head = page.locator(".tree-head .col-name")
    row_name = page.locator(".span-row", has_text="RespondStage").locator(".col-name")
    before = (await head.bounding_box())["width"]
    handle = page.locator(".col-resize")
    box = await handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x + 60, y, steps=3)
    await page.mouse.move(x + 150, y, steps=3)
    await page.mouse.up()
    after = (await head.bounding_box())["width"]
    assert abs(after - (before + 150)) <= 3, (before, after)
    assert abs((await row_name.bounding_box())["width"] - after) <= 1  # the rows follow the header
    await expect(handle).to_have_attribute("aria-valuenow", str(round(after)))
    # remembered
    await page.reload()
    await expect(page.locator(".span-row")).to_have_count(7)
    assert abs((await head.bounding_box())["width"] - after) <= 1
    # the keyboard: ← narrower by 20 px, Home the narrowest, double-click the default again
    await handle.focus()
    await handle.press("ArrowLeft")
    assert abs((await head.bounding_box())["width"] - (after - 20)) <= 1
    await handle.press("Home")
    await expect(handle).to_have_attribute("aria-valuenow", "140")
    assert abs((await head.bounding_box())["width"] - 140) <= 1
    await handle.dblclick()
    assert abs((await head.bounding_box())["width"] - before) <= 1
    assert await page.evaluate("localStorage.getItem('botrace-name-col')") is None
    assert page.problems == []


async def test_a_cut_name_shows_in_full_on_hover_and_when_its_row_has_the_focus(host, page):
    tid = await dice_trace(host)
    await open_trace(page, host, tid, 7)
    name = page.locator(".span-row", has_text=LONG[:40]).locator(".span-name")
    clipped = await name.evaluate("n => [n.scrollWidth, n.clientWidth]")
    assert clipped[0] > clipped[1]  # cut while not focused
    await expect(name).to_have_attribute("title", re.compile(re.escape(LONG)))  # hover: the tooltip
    await name.click()  # selects the row; the tree has the focus
    await expect(page.locator(".tree-scroll")).to_be_focused()
    full = await name.evaluate("n => [n.scrollWidth, n.clientWidth, n.getBoundingClientRect().width]")
    assert full[0] <= full[1] + 1, full  # not cut any more
    assert page.problems == []


async def test_compare_two_traces_side_by_side_from_the_trace_view(host, page):
    a = await dice_trace(host, slow_s=0.05, fail=False)
    b = await dice_trace(host, slow_s=0.3)
    # a third with another shape: one extra tool
    tracer = host.tracer
    root = tracer.start_trace("message", {"outline": "roll two dice", "umo": "demo:FriendMessage:d"})
    with root:
        with tracer.span("dice.on_message", "plugin_call", plugin=DICE):
            with tracer.span("llm scripted-1", "llm_call") as llm:
                llm.set_usage(input_tokens=400, output_tokens=10)
            with tracer.span("reroll", "tool_call", plugin=DICE):
                pass
    await wait_for_trace(host.store, root.trace_id, tracer)
    c = root.trace_id

    await open_trace(page, host, a, 7)
    await page.locator(".compare-with").click()
    candidates = page.locator(".compare-candidate")
    await expect(candidates).to_have_count(2)  # the same message, not this trace
    assert {await x.get_attribute("data-trace") for x in await candidates.all()} == {b, c}
    await page.locator(f'.compare-candidate[data-trace="{b}"]').click()
    await expect(page).to_have_url(re.compile(f"compare/{a}/{b}$"))
    await expect(page.locator("#main")).to_have_attribute("data-compared", "7")
    rows = page.locator("tr.cmp-row")
    await expect(rows).to_have_count(7)
    slow = rows.filter(has_text="roll_slow")
    delta_ns = int(await slow.locator(".c-dt .delta").get_attribute("data-ns"))
    assert delta_ns > 150_000_000  # 0.3 s against 0.05 s
    await expect(slow.locator(".c-dt .delta")).to_have_class(re.compile(r"\bslower\b"))
    await expect(slow.locator(".c-b .err-mark")).to_have_count(1)  # failed in B
    await expect(page.locator(".compare-counts")).to_have_text("7 aligned · 0 only in A · 0 only in B")
    # the largest difference is the slow tool; its entry points at its row
    await page.locator(".compare-largest button").first.click()
    await expect(slow).to_have_class(re.compile(r"\bflash\b"))
    # a side's time opens that span in its trace
    await slow.locator(".c-b a").click()
    await expect(page).to_have_url(re.compile(f"traces/{b}\\?span="))
    await expect(page.locator(".detail-title")).to_have_text("roll_slow")
    await page.go_back()
    await expect(rows).to_have_count(7)

    # another shape, by URL: spans of one trace only are marked, tokens compared
    await page.goto(f"{host.url}compare/{a}/{c}")
    await expect(page.locator("#main")).to_have_attribute("data-compared", re.compile(r"\d+"))
    only_a = page.locator("tr.cmp-row.only-a")
    only_b = page.locator("tr.cmp-row.only-b")
    assert set(await only_a.locator(".span-name").all_inner_texts()) == {"roll_fast", "roll_slow", LONG, "RespondStage"}
    assert await only_b.locator(".span-name").all_inner_texts() == ["reroll"]
    await expect(only_b.locator(".only-chip")).to_have_text("only in B")
    llm = rows.filter(has_text="llm scripted-1")
    await expect(llm.locator(".c-dtok .delta")).to_have_attribute("data-n", "300")
    # only the differences
    await page.locator(".only-diff input").check()
    assert await rows.filter(has_text="reroll").count() == 1
    # swap: B is the baseline
    await page.locator(".swap").click()
    await expect(page).to_have_url(re.compile(f"compare/{c}/{a}$"))
    await expect(page.locator("tr.cmp-row.only-a .span-name")).to_have_text(["reroll"])
    await expect(page.locator(".trace-head .side-a .outline")).to_have_text("roll two dice")
    # an unknown trace
    await page.goto(f"{host.url}compare/{a}/{'0' * 32}")
    await expect(page.locator(".compare-pane .notice")).to_contain_text("not found")
    assert page.problems == []


async def test_compare_by_trace_id_and_through_astrbots_bridge(dashboard, page):
    host = dashboard.host
    a = await dice_trace(host)
    await host.chat("hello there", "u2", "s9")
    other = host.trace_ids[-1]
    await wait_for_trace(host.store, other, host.tracer)
    frame, child = await open_page(page, dashboard)
    await child.evaluate(f"location.hash = '#/traces/{a}'")
    await expect(frame.locator(".span-row")).to_have_count(7)
    await frame.locator(".compare-with").click()
    # no other trace of this message: recent ones are offered, and a trace id can be typed
    await expect(frame.locator(".compare-candidates")).to_have_attribute("data-kind", "recent")
    await frame.locator(".compare-id").fill(other)
    await frame.locator(".compare-id").press("Enter")
    await expect(frame.locator("#main")).to_have_attribute("data-compared", re.compile(r"\d+"))
    assert f"#/compare/{a}/{other}" in child.url
    await expect(frame.locator("tr.cmp-row.only-b", has_text="WakingCheck")).to_have_count(1)
    await expect(frame.locator("tr.cmp-row").first).not_to_have_class(re.compile("only-"))  # the roots align
    assert page.problems == []
