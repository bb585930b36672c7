"""An llm_call's request rendered as a chat in the detail pane (prompt.js), a hook's
additions to the request, and the bot's replies in the conversation view (people.js)."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from botrace import PluginRef
from botrace.prompt import request_diff, request_input

try:
    from browser.harness import wait_for_trace
except ImportError:  # pragma: no cover
    from tests.browser.harness import wait_for_trace

pytestmark = pytest.mark.browser

NOTES = PluginRef("notes", "Notes", "third_party", "0.1")
SYSTEM = "You are a dice bot. Answer briefly."
LONG = "history " + "z" * 6000  # past trace_max_string (4,096): cut, and marked


async def llm_trace(host):
    tracer = host.tracer
    root = tracer.start_trace("message", {"outline": "roll a d20", "umo": "demo:FriendMessage:pr",
                                          "user_id": "u1", "session_id": "pr"})
    with root:
        before = {"system_prompt": SYSTEM, "contexts": [], "tools": ["roll"]}
        with tracer.span("notes.on_llm_request", "plugin_call", plugin=NOTES) as hook:
            added = {"role": "system", "content": "Notes: the user likes d20s. " + "n" * 72}
            diff = request_diff(before, {"system_prompt": SYSTEM + " Be fun!", "contexts": [added],
                                         "tools": ["roll", "lookup_note"]})
            hook.set_output(request_added=diff)
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": LONG},
            {"role": "assistant", "content": "ok \u202egnp.exe"},
            {"role": "user", "content": "roll a d20"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "roll", "arguments": '{"sides": 20}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "17"},
        ]
        with tracer.span("llm scripted-1", "llm_call") as llm:
            llm.set_meta(model="scripted-1")
            llm.set_input(request_input(messages, [{"type": "function", "function": {"name": "roll"}}]))
            llm.set_output(text="You rolled 17.")
        root.set_output(reply="You rolled 17.")
    await wait_for_trace(host.store, root.trace_id, tracer)
    return root.trace_id


async def test_browser_llm_request_renders_as_a_chat_with_the_response_below(host, page):
    tid = await llm_trace(host)
    await page.goto(f"{host.url}traces/{tid}")
    await page.locator(".span-row", has_text="llm scripted-1").click()
    view = page.locator(".detail-pane .prompt-view")
    await expect(view).to_be_visible()
    chat = view.locator(".values-prompt .prompt-chat > li")
    await expect(chat).to_have_count(6)
    roles = await chat.evaluate_all("els => els.map(e => e.className)")
    assert [re.search(r"role-(\w+)", c)[1] for c in roles] == [
        "system", "user", "assistant", "user", "assistant", "tool"]
    # the system prompt is collapsed; opening it shows the text
    system = chat.nth(0).locator("details")
    assert await system.get_attribute("open") is None
    await expect(system.locator(".msg-text")).to_be_hidden()
    await system.locator("summary").click()
    await expect(system.locator(".msg-text")).to_have_text(SYSTEM)
    # the cut history message says so
    await expect(chat.nth(1).locator(".cut-mark")).to_contain_text("more chars")
    # untrusted text stays text, bidi controls visible and isolated
    bidi = chat.nth(2).locator(".msg-text bdi")
    await expect(bidi).to_have_text("ok ⟨U+202E⟩gnp.exe")
    # the tool call and its result are folded
    call = chat.nth(4).locator("details.tool-call")
    await expect(call.locator("summary")).to_contain_text("calls roll")
    await expect(call.locator("pre")).to_be_hidden()
    await call.locator("summary").click()
    await expect(call.locator("pre")).to_contain_text('"sides": 20')
    result = chat.nth(5).locator("details")
    await expect(result.locator("summary")).to_contain_text("tool result roll · call_1")
    await result.locator("summary").click()
    await expect(result.locator(".msg-text")).to_have_text("17")
    await expect(view.locator(".prompt-tools")).to_contain_text("roll")
    # the response below, and the raw JSON instead of the plain input/output blocks
    await expect(view.locator(".values-response .msg-text")).to_have_text("You rolled 17.")
    assert await page.locator(".detail-pane .values-input").count() == 0
    assert await page.locator(".detail-pane script, .detail-pane img").count() == 0
    # the hook's span says what it added to the request
    await page.locator(".span-row", has_text="notes.on_llm_request").click()
    added = page.locator(".detail-pane .values-added")
    # 8 system-prompt chars + a 100-char message = 108 chars, / 4 (botrace.prompt's estimate)
    await expect(added).to_contain_text("≈ 27 tokens (108 chars ÷ 4): system prompt +8 chars")
    await expect(added).to_contain_text("1 messages added")
    await expect(added).to_contain_text("tools added: lookup_note")
    await expect(added.locator(".prompt-chat > li")).to_have_count(1)
    assert page.problems == []


async def test_browser_conversation_shows_the_bots_replies_linked_to_their_traces(host, page):
    for i in range(2):
        await host.chat(f"hello {i}", "alice", "room-9")
    await wait_for_trace(host.store, host.trace_ids[-1], host.tracer)
    await page.goto(f"{host.url}conversation?session_id=room-9")
    turns = page.locator(".conversation .turn")
    await expect(turns).to_have_count(2)
    first = turns.nth(0)
    await expect(first.locator(".bubble.me")).to_have_text("hello 0")
    reply = first.locator("a.bubble.bot.reply")
    await expect(reply).to_have_text("It will be sunny. You said: hello 0")
    await expect(turns.nth(1).locator("a.bubble.bot.reply")).to_have_text("It will be sunny. You said: hello 1")
    meta = first.locator(".reply-meta")
    await expect(meta.locator(".reply-tokens")).to_have_text("300 / 43 tokens")  # the harness's two LLM calls
    await expect(meta.locator(".reply-duration")).to_have_text(re.compile(r"\d"))
    await expect(meta.locator(".reply-cost")).not_to_be_empty()
    await reply.click()
    await expect(page).to_have_url(re.compile(rf"traces/{host.trace_ids[0]}(\?|$)"))
    await expect(page.locator(".span-row").first).to_contain_text("message")
    assert page.problems == []


async def test_browser_the_prompt_view_leaves_the_demo_chat_box_its_own_style(host, page):
    """The request's chat list has a class of its own: the stylesheet's rules for it once
    took the demo chat box's padding and stickiness away (both were `.chat`)."""
    await page.goto(host.url)
    box = page.locator("aside.chat")
    await expect(box).to_be_visible()
    style = await box.evaluate(
        "e => { const s = getComputedStyle(e); return [s.paddingTop, s.position]; }")
    assert style == ["14px", "sticky"]
    assert await page.locator(".prompt-chat").count() == 0
