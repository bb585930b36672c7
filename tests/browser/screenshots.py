"""Screenshots of the Trace tab for the docs, taken from a real ``botrace demo``.

    python tests/browser/screenshots.py [--out docs/screenshots]

Starts the demo (reference host, example plugins, scripted LLM with some
latency) on a free port, lets it handle a batch of synthetic messages, sends
one message from the chat box, and saves list.png, trace.png, stats.png (light)
and trace-dark.png, and prompt.png (light: the detail pane of the second LLM call, its
request as a chat).
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
            await _shoot(base, out)
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


async def _shoot(base: str, out: Path) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for scheme in ("light", "dark"):
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
        await browser.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
