"""The Trace tab in headless Chromium: a 5,000-span trace, scrolling it, a list over 100k traces.

    python bench/bench_webui.py [--spans 5000] [--runs 5] [--traces 100000]

Prints, for the same machine and run:

- open: ms from navigation start to the span tree drawn (the page's
  ``botrace:trace-drawn`` mark), median of ``--runs``, with the API fetch alone;
  against a peer: the same 5,000 rows drawn naively (every row in the DOM),
  timed in the same page;
- scroll: frame intervals while scrolling the whole tree top to bottom;
- list: the first page of a list over ``--traces`` stored traces, then ten
  cursor pages through the API, and how many rows the page holds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

import aiohttp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from browser.conftest import CHROMIUM, CHROMIUM_ARGS
from browser.harness import Host, wait_for_trace

NAIVE_RENDER = """(n) => {
  // the peer: every row in the DOM at once, with the same parts a row has
  const t0 = performance.now();
  const box = document.createElement('div');
  box.className = 'tree-spacer';
  for (let i = 0; i < n; i++) {
    const row = document.createElement('div');
    row.className = 'span-row';
    row.style.position = 'relative';
    const name = document.createElement('div');
    name.className = 'col-name';
    const ind = document.createElement('span'); ind.style.width = (i % 6) * 16 + 'px'; name.append(ind);
    const label = document.createElement('span'); label.className = 'span-name'; label.textContent = 'span ' + i;
    name.append(label);
    const wf = document.createElement('div'); wf.className = 'col-wf';
    const bar = document.createElement('div'); bar.className = 'bar'; bar.style.left = (i / n * 100) + '%';
    bar.style.width = '1%'; wf.append(bar);
    row.append(name, wf);
    box.append(row);
  }
  document.querySelector('.tree-scroll').append(box);
  void box.offsetHeight;
  const ms = performance.now() - t0;
  box.remove();
  return ms;
}"""

SCROLL = """() => new Promise((done) => {
  const el = document.querySelector('.tree-scroll');
  const frames = [];
  let last = performance.now();
  el.scrollTop = 0;
  function step(now) {
    frames.push(now - last);
    last = now;
    if (el.scrollTop + el.clientHeight >= el.scrollHeight - 1) return done(frames.slice(1));
    el.scrollTop += 250;
    requestAnimationFrame(step);
  }
  requestAnimationFrame(step);
})"""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def bench_trace(host: Host, browser, spans: int, runs: int) -> None:
    tid = host.big_trace(spans)
    await wait_for_trace(host.store, tid, host.tracer, timeout=120)
    stored = len((await host.store.get_trace(tid, flat=True))["spans"])
    if stored != spans:
        print(f"(the store holds {stored} of the {spans} spans; the page draws those)")
    spans = stored
    async with aiohttp.ClientSession() as http:
        api_ms = []
        for _ in range(runs):
            t0 = time.perf_counter()
            async with http.get(f"{host.url}api/v1/traces/{tid}?shape=flat&values=none") as r:
                await r.read()
            api_ms.append((time.perf_counter() - t0) * 1000)
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(host.url)
    drawn = []
    for _ in range(runs):
        await page.goto(f"{host.url}traces/{tid}")
        await page.wait_for_selector(f"#main[data-drawn='{spans}']")
        drawn.append(await page.evaluate("performance.getEntriesByName('botrace:trace-drawn')[0].startTime"))
    naive = [await page.evaluate(NAIVE_RENDER, spans) for _ in range(runs)]
    dom_rows = await page.locator(".span-row").count()
    frames = await page.evaluate(SCROLL)
    await page.close()
    med = statistics.median(drawn)
    print(f"open {spans}-span trace: {med:.0f} ms median to the tree drawn "
          f"(min {min(drawn):.0f}, max {max(drawn):.0f}; API fetch {statistics.median(api_ms):.0f} ms; "
          f"bound 1000 ms -> {'OK' if med <= 1000 else 'OVER'})")
    print(f"  peer, all {spans} rows in the DOM: {statistics.median(naive):.0f} ms just to build and lay out "
          f"(virtualised page keeps {dom_rows} rows; naive/virtualised render = "
          f"{statistics.median(naive) / max(1e-9, med - statistics.median(api_ms)):.1f}x)")
    print(f"scroll through {spans} rows: {len(frames)} frames, interval p50 {pct(frames, .5):.1f} ms, "
          f"p95 {pct(frames, .95):.1f} ms, max {max(frames):.1f} ms, "
          f"{sum(f > 50 for f in frames)} frames over 50 ms")


async def bench_list(host: Host, browser, n: int) -> None:
    from botrace.store.synthetic import feed, synthetic_traces

    t0 = time.perf_counter()

    def fill() -> None:
        for trace in synthetic_traces(n, spans=3, start_ns=time.time_ns() - n * 1_000_000,
                                      step_ns=1_000_000):
            feed(host.store, trace)

    await asyncio.to_thread(fill)
    await host.store.flush()
    # the writer may still hold batches: wait until the count stops moving
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 2:
        total = (await host.store.list_traces(limit=1))["total"]
        if total != last:
            last, stable_since = total, time.monotonic()
        await asyncio.sleep(0.2)
    health = host.store.health()
    print(f"stored {last} of {n} synthetic traces in {time.perf_counter() - t0:.1f} s "
          f"(store accepted {health.get('accepted')}, written {health.get('written')}, dropped {health.get('dropped')}, pruned {health.get('pruned_traces')}, write errors {health.get('write_errors')})")
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(host.url)
    t0 = time.perf_counter()
    await page.reload()
    await page.wait_for_selector("table.traces tbody tr")
    first_ms = (time.perf_counter() - t0) * 1000
    rows = await page.locator("table.traces tbody tr").count()
    info = await page.locator(".pager-info").text_content()
    t0 = time.perf_counter()
    await page.click("text=Load more")
    await page.locator("table.traces tbody tr").nth(99).wait_for()
    more_ms = (time.perf_counter() - t0) * 1000
    await page.close()
    async with aiohttp.ClientSession() as http:
        cursor, times = None, []
        for _ in range(10):
            t0 = time.perf_counter()
            params = {"limit": "50"} | ({"cursor": cursor} if cursor else {})
            async with http.get(f"{host.url}api/v1/traces", params=params) as r:
                cursor = (await r.json())["next_cursor"]
            times.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        async with http.get(f"{host.url}api/v1/traces", params={"user_id": "u7", "limit": "50"}) as r:
            total = (await r.json())["total"]
        filtered_ms = (time.perf_counter() - t0) * 1000
    print(f"list over {n} traces: page shows {rows} rows ('{info}') in {first_ms:.0f} ms after reload; "
          f"next page {more_ms:.0f} ms")
    print(f"  API: 10 cursor pages of 50, median {statistics.median(times):.1f} ms, max {max(times):.1f} ms; "
          f"filter user_id (total {total}) {filtered_ms:.0f} ms")


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--spans", type=int, default=5000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--traces", type=int, default=100_000)
    args = p.parse_args()
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as tmp:
        host = await Host(os.path.join(tmp, "bench.db"), step_s=0).start()
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                await bench_trace(host, browser, args.spans, args.runs)
                if args.traces:
                    await bench_list(host, browser, args.traces)
                await browser.close()
        finally:
            await host.stop()


if __name__ == "__main__":
    asyncio.run(main())
