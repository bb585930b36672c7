"""Screenshots of the Trace tab for the docs, taken from a real ``botrace demo``.

    python tests/browser/screenshots.py [--out docs/screenshots]

Starts the demo (reference host, example plugins, scripted LLM with some
latency) on a free port, lets it handle a batch of synthetic messages, sends
one message from the chat box, and saves list.png, trace.png, stats.png (light)
and trace-dark.png, and prompt.png (light: the detail pane of the second LLM call, its
request as a chat), and compare.png (light: the message the demo answered twice with the
largest difference, the two traces compared). ``--only compare`` (or any comma-separated
names) takes only those shots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(HERE.parents[1] / "docs" / "screenshots"))
    p.add_argument("--messages", type=int, default=48)
    p.add_argument("--only", help="comma-separated shots to take (list, trace, stats, prompt, compare); "
                                  "default: all")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    botrace = Path(sys.executable).with_name("botrace")
    with tempfile.TemporaryDirectory() as data:
        proc = await asyncio.create_subprocess_exec(
            str(botrace), "demo", "--port", str(port), "--data-dir", data, "--messages", str(args.messages),
            "--stay", "--latency-ms", "90", "--concurrency", "3",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                line = (await proc.stdout.readline()).decode()
                if re.search(r"open http://", line):
                    break
            asyncio.get_running_loop().create_task(_drain(proc))
            while time.monotonic() < deadline:
                page = await asyncio.to_thread(_get, base + "api/v1/traces?limit=1")
                running = await asyncio.to_thread(_get, base + "api/v1/traces?status=running&limit=1")
                if page["total"] >= args.messages and running["total"] == 0:
                    break
                await asyncio.sleep(0.5)
            await _shoot(base, out, set(args.only.split(",")) if args.only else None)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
    print("screenshots in", out)


async def _drain(proc) -> None:
    while await proc.stdout.readline():
        pass


async def _shoot(base: str, out: Path, only: set[str] | None = None) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for scheme in ("light", "dark") if only is None or only - {"compare"} else ():
            ctx = await browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme=scheme,
                                            device_scale_factor=1)
            page = await ctx.new_page()
            suffix = "" if scheme == "light" else "-dark"
            await page.goto(base)
            await page.locator("#live[data-state='live']").wait_for()
            await page.fill("#chat-input", "what's the weather in Paris and in Berlin?")
            await page.click("#chat-send")
            await page.locator(".bubble-link").last.wait_for(timeout=20000)
            await page.wait_for_timeout(600)
            await page.screenshot(path=str(out / f"list{suffix}.png"))
            await page.locator(".bubble-link").last.click()
            await page.locator(".span-row").first.wait_for()
            tool = page.locator(".span-row.type-tool_call").first
            if await tool.count():
                await tool.click()
            await page.wait_for_timeout(500)
            await page.screenshot(path=str(out / f"trace{suffix}.png"))
            llm = page.locator(".span-row.type-llm_call").last
            if scheme == "light" and await llm.count():
                await llm.click()
                await page.locator(".prompt-view").wait_for()
                await page.locator(".prompt-view .role-tool details").first.evaluate("d => d.open = true")
                await page.wait_for_timeout(300)
                await page.locator(".detail-pane").screenshot(path=str(out / "prompt.png"))
            await page.goto(base + "stats?group_by=stage")
            await page.locator("table.stats tbody tr").first.wait_for()
            await page.wait_for_timeout(300)
            await page.screenshot(path=str(out / f"stats{suffix}.png"))
            await ctx.close()
        if only is None or "compare" in only:
            await _shoot_compare(browser, base, out)
        await browser.close()


async def _shoot_compare(browser, base: str, out: Path) -> None:
    """compare.png: the same message answered fast and slow, side by side (compare.js)."""
    traces = (await asyncio.to_thread(_get, base + "api/v1/traces?limit=200"))["traces"]
    by_outline: dict[str, list[dict]] = {}
    for t in traces:
        if t["status"] != "running" and t.get("duration_ns"):
            by_outline.setdefault(t.get("outline") or "", []).append(t)
    # the message whose slowest answer took longest next to its fastest, with the most spans
    pairs = [(max(ts, key=lambda t: t["duration_ns"]), min(ts, key=lambda t: t["duration_ns"]))
             for ts in by_outline.values() if len(ts) > 1]
    if not pairs:
        print("compare.png: no message was answered twice")
        return
    slow, fast = max(pairs, key=lambda p: (bool(p[0].get("input_tokens")), p[0]["span_count"] >= 6,
                                           p[0]["duration_ns"] / p[1]["duration_ns"]))
    ctx = await browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme="light",
                                    device_scale_factor=1)
    page = await ctx.new_page()
    await page.goto(f"{base}compare/{fast['trace_id']}/{slow['trace_id']}")
    await page.locator("#main[data-compared]").wait_for()
    await page.wait_for_timeout(400)
    await page.screenshot(path=str(out / "compare.png"))
    await ctx.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
