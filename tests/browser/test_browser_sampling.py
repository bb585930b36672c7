"""Tail-based sampling in the page: only kept traces listed, the stats say they are sampled,
the Health view counts what was kept and why."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

try:
    from browser.harness import Host, wait_for_trace
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.browser.harness import Host, wait_for_trace

pytestmark = pytest.mark.browser


async def test_browser_sampled_traces_listed_stats_noted_health_counted(tmp_path, page):
    host = await Host(str(tmp_path / "traces.db"), step_s=0.01).start()
    try:
        await host.chat("before sampling", "carol", "room-0")
        await wait_for_trace(host.store, host.trace_ids[-1], host.tracer)
        await page.goto(f"{host.url}stats")
        await expect(page.locator("table.stats tbody tr").first).to_be_visible()
        await expect(page.locator("#stats-sampled")).to_be_hidden()  # rate 1: nothing to say

        host.tracer.update_settings(trace_sample_rate=0.0, trace_sample_keep_users=["alice"])
        await host.chat("hello from alice", "alice", "room-1")   # forced: kept
        await host.chat("hello from bob", "bob", "room-2")       # sampled out
        await host.chat("hello again", "bob", "room-2")          # sampled out
        await host.chat("fail now", "bob", "room-2")             # an error: kept
        alice, bob1, bob2, failed = host.trace_ids[-4:]
        await wait_for_trace(host.store, alice, host.tracer)
        await wait_for_trace(host.store, failed, host.tracer)
        assert await host.store.get_trace(bob1) is None and await host.store.get_trace(bob2) is None

        await page.goto(host.url)
        rows = page.locator("table.traces tbody tr")
        await expect(rows).to_have_count(3)
        await expect(rows.filter(has_text="hello from bob")).to_have_count(0)
        await expect(rows.filter(has_text="fail now")).to_have_count(1)

        await page.goto(f"{host.url}stats")
        note = page.locator("#stats-sampled")
        await expect(note).to_be_visible()
        await expect(note).to_contain_text("Sampled: these figures are from the traces kept")
        await expect(note).to_contain_text("0% of ordinary traces are kept")

        await page.goto(f"{host.url}health")
        tracer = page.locator('.health-card[data-part="tracer"]')
        await expect(tracer).to_contain_text("1 failed, 0 slow, 1 forced, 0 by rate")
        await expect(tracer.locator("dt:text-is('Sampled out') + dd")).to_have_text("2")
        await expect(tracer.locator("dt:text-is('Sampling') + dd")).to_have_text(
            "0% of ordinary traces kept")
        assert page.problems == []
    finally:
        await host.stop()
