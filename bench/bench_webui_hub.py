"""What the live hub costs the tracer's dispatcher thread, per span event.

    python bench/bench_webui_hub.py [--spans 20000]

Feeds finished spans of realistic traces (the store's synthetic generator)
straight into the sink hooks, as the dispatcher does, and prints µs per event
for: the live hub with a subscriber, the live hub with nobody watching, and,
as the peer measured in the same run, the SQLite store's hook.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

from botrace.store import TraceStore
from botrace.store.synthetic import synthetic_traces
from botrace_webui.livehub import LiveHub


def _spans(n: int) -> list:
    out = []
    for trace in synthetic_traces(n // 20 + 1, spans=20):
        out.extend(trace.spans)
    return out[:n]


def _per_event_us(hook, spans) -> float:
    t0 = time.perf_counter()
    for span in spans:
        hook(span=span)
    return (time.perf_counter() - t0) / len(spans) * 1e6


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--spans", type=int, default=20_000)
    args = p.parse_args()
    spans = _spans(args.spans)
    loop = asyncio.get_running_loop()

    watched = LiveHub(queue_size=len(spans) + 10, replay_size=len(spans) + 10)
    watched.bind(loop)
    sub = watched.subscribe()
    hub_us = await asyncio.to_thread(_per_event_us, watched.botrace_span_finished, spans)
    await asyncio.sleep(0.1)
    delivered = len(await sub.next(timeout=1))

    idle = LiveHub(idle_keep_s=0)
    idle.bind(loop)
    idle_us = await asyncio.to_thread(_per_event_us, idle.botrace_span_finished, spans)

    with tempfile.TemporaryDirectory() as tmp:
        store = TraceStore(os.path.join(tmp, "b.db"))
        await store.open()
        store_us = await asyncio.to_thread(_per_event_us, store.botrace_span_finished, spans)
        await store.close()

    print(f"{len(spans)} span_finished events on the dispatcher thread, µs per event:")
    print(f"  live hub, one subscriber : {hub_us:6.2f}  ({delivered} delivered, "
          f"{watched.batches_total} loop callbacks)")
    print(f"  live hub, nobody watching: {idle_us:6.2f}")
    print(f"  peer: SQLite store hook  : {store_us:6.2f}  (hub/store = {hub_us / store_us:.2f}x)")


if __name__ == "__main__":
    asyncio.run(main())
