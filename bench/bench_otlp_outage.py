"""OTLP receiver outage: what a steady stream of messages loses while the receiver is down.

A host sends ``--rate`` messages a second (each a trace of ``--spans`` spans) through a
real tracer and the OTLP exporter, with the settings an operator gets by default
(``trace_otlp_endpoint`` only: protobuf, gzip, batches of 512 spans, a queue of 20,000,
5 retries with backoff from 0.5 s, 10 s per attempt). The receiver is a loopback OTLP/HTTP
server that decodes every request with opentelemetry-proto and keeps the span ids it got.
It is up for ``--before`` s, down for N s, up again for ``--after`` s; then the tracer
closes (everything still queued is sent, within the exporter's 10 s close timeout).

Two ways of being down:

- ``refuse``: the server is gone (connections refused, open ones closed);
- ``hang``: it accepts requests and never answers (each attempt times out after 10 s).

For each outage it prints what was produced, received (decoded, distinct span ids),
exported, dropped (the exporter's counts) and retried; whether every span is accounted
for (produced = exported + dropped, received = exported); and when the health state
turned ``degraded`` after the receiver went down and ``ok`` after it came back.

    /work/venv/bin/python bench/bench_otlp_outage.py                   # 10/30/60 s refused, 30 s hung: ~5 min
    /work/venv/bin/python bench/bench_otlp_outage.py --down 5 --quick  # one short outage
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botrace import SpanType, Tracer
from botrace.exporters.otlp import OTLPExporter


class Receiver:
    """A loopback OTLP/HTTP receiver that can go down (refuse or hang) and come back."""

    def __init__(self, port: int) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.port = port
        self.pb = trace_service_pb2
        self.span_ids: set[bytes] = set()
        self.duplicates = 0
        self.requests = 0
        self.hanging = False
        self._up = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hanging:
            await self._up.wait()  # the client gave up long before (its 10 s timeout)
            return web.Response(status=503)
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        message = self.pb.ExportTraceServiceRequest.FromString(body)
        self.requests += 1
        for rs in message.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    if span.span_id in self.span_ids:
                        self.duplicates += 1
                    self.span_ids.add(span.span_id)
        return web.Response(status=200, content_type="application/x-protobuf")

    async def up(self) -> None:
        self.hanging = False
        self._up.set()
        if self._runner is None:
            app = web.Application()
            app.router.add_post("/v1/traces", self.handle)
            self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def down(self, mode: str) -> None:
        if mode == "hang":
            self._up.clear()
            self.hanging = True
        elif self._runner is not None:
            await self._runner.cleanup()  # listening socket and open connections closed
            self._runner = None


@dataclass
class Result:
    mode: str
    down_s: float
    produced: int = 0
    received: int = 0
    duplicates: int = 0
    exported: int = 0
    dropped: int = 0
    queue_full: int = 0
    failed_batches: int = 0
    retries: int = 0
    queue_depth: int = 0
    degraded_after_s: float | None = None
    ok_after_s: float | None = None
    states: list[tuple[float, str]] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_message(tracer: Tracer, i: int, spans: int) -> int:
    """One message's trace: a root, pipeline stages, an LLM call, a tool call and custom spans."""
    made = 1
    with tracer.start_trace("message", {"umo": f"bench:{i % 50}", "user_id": f"u{i % 200}",
                                        "session_id": f"s{i % 50}", "outline": f"message {i}"}) as root:
        with tracer.span("Process", SpanType.PIPELINE_STAGE):
            made += 1
            if spans > 2:
                with tracer.span("llm", SpanType.LLM_CALL) as llm:
                    llm.set_meta(model="gpt-4o-mini", provider="openai")
                    llm.set_usage(input_tokens=800, output_tokens=60)
                made += 1
            while made < spans:
                with tracer.span("step", SpanType.CUSTOM):
                    pass
                made += 1
        root.set_output(reply=f"reply {i}")
    return made


async def run(mode: str, down_s: float, args: argparse.Namespace) -> Result:
    port = free_port()
    receiver = Receiver(port)
    await receiver.up()
    tracer = Tracer({"trace_enable": True, "trace_otlp_endpoint": f"http://127.0.0.1:{port}",
                     "trace_service_name": "bench"}, load_entrypoints=False)
    (exporter,) = tracer.register_exporters()
    assert isinstance(exporter, OTLPExporter)
    await tracer.start()
    result = Result(mode, down_s)
    t0 = time.monotonic()
    down_at, up_at = args.before, args.before + down_s
    end_at = up_at + args.after
    phase = "up"
    i = 0
    next_sample = 0.0
    while (now := time.monotonic() - t0) < end_at:
        if phase == "up" and now >= down_at:
            await receiver.down(mode)
            phase = "down"
        elif phase == "down" and now >= up_at:
            await receiver.up()
            phase = "back"
        while i < now * args.rate:  # keep the rate whatever the loop's jitter
            result.produced += one_message(tracer, i, args.spans)
            i += 1
        if now >= next_sample:
            state = exporter.health()["state"]
            result.states.append((round(now, 2), state))
            if phase == "down" and state == "degraded" and result.degraded_after_s is None:
                result.degraded_after_s = now - down_at
            if phase == "back" and state == "ok" and result.ok_after_s is None:
                result.ok_after_s = now - up_at
            next_sample = now + 0.1
        await asyncio.sleep(0.005)
    await tracer.aclose()  # the dispatcher drains, then the exporter sends what is queued
    health = exporter.health()
    result.received, result.duplicates = len(receiver.span_ids), receiver.duplicates
    result.exported, result.dropped = health["exported"], health["dropped"]
    result.queue_full, result.failed_batches = health["dropped_queue_full"], health["failed_batches"]
    result.retries, result.queue_depth = health["retries"], health["queue_depth"]
    await receiver.down("refuse")
    return result


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\n{args.rate:g} messages/s x {args.spans} spans = {args.rate * args.spans:g} spans/s; "
          f"receiver up {args.before:g} s, down N s, up {args.after:g} s; default exporter "
          "settings (batch 512, queue 20,000 spans, 5 retries, backoff 0.5 s doubling, "
          "10 s per attempt)\n")
    print("| receiver down | spans produced | received (decoded) | exported | dropped (counted) "
          "| of which: delivery given up (batches) / no room in the queue | retries "
          "| accounted for | degraded after | ok again after |")
    print("|---|---:|---:|---:|---:|---|---:|---|---:|---:|")
    for r in results:
        accounted = (r.produced == r.exported + r.dropped and r.received == r.exported
                     and r.duplicates == 0 and r.queue_depth == 0)
        degraded = "-" if r.degraded_after_s is None else f"{r.degraded_after_s:.1f} s"
        ok = "-" if r.ok_after_s is None else f"{r.ok_after_s:.1f} s"
        print(f"| {r.down_s:g} s, {r.mode} | {r.produced:,} | {r.received:,} | {r.exported:,} "
              f"| {r.dropped:,} ({100 * r.dropped / max(1, r.produced):.1f} %) "
              f"| {r.dropped - r.queue_full:,} ({r.failed_batches}) / {r.queue_full:,} "
              f"| {r.retries} "
              f"| {'yes' if accounted else 'NO'} | {degraded} | {ok} |")


async def amain(args: argparse.Namespace) -> int:
    plan = [("refuse", d) for d in args.down] + [("hang", d) for d in args.hang]
    results = []
    for mode, down_s in plan:
        print(f"running: receiver {mode} for {down_s:g} s ...", file=sys.stderr, flush=True)
        results.append(await run(mode, down_s, args))
    report(results, args)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=40, help="messages a second (default 40)")
    p.add_argument("--spans", type=int, default=10, help="spans a message (default 10)")
    p.add_argument("--before", type=float, default=5, help="seconds up before the outage")
    p.add_argument("--after", type=float, default=30, help="seconds up after the outage")
    p.add_argument("--down", type=float, nargs="*", default=[10, 30, 60],
                   help="outages with connections refused, in seconds (default 10 30 60)")
    p.add_argument("--hang", type=float, nargs="*", default=[30],
                   help="outages with requests never answered, in seconds (default 30)")
    p.add_argument("--quick", action="store_true", help="no hung outage; 10 s after")
    args = p.parse_args()
    if args.quick:
        args.hang, args.after = [], 10
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
