"""Issue 17, item 15: the OTLP and Zipkin exporters say when they are losing data.

A sink's ``botrace_health`` entry carries ``state`` (``ok`` or ``degraded``, then with a
``reason``); ``/api/v1/health`` turns ``degraded`` when one does. The exporters' rule:
degraded while the batch being sent is being retried, after an export failed (until one
succeeds), and for ``degraded_window`` seconds after the queue overflowed.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from botrace import Tracer
from botrace.exporters.otlp import OTLPExporter
from botrace.exporters.zipkin import ZipkinExporter
from botrace.store.synthetic import synthetic_traces
from botrace_webui import create_app
from botrace_webui.api import API_PREFIX


class Switchable:
    """A receiver that answers 503 while ``down`` and 200 (counting spans) otherwise."""

    def __init__(self) -> None:
        self.down = True
        self.accepted = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        if self.down:
            return web.Response(status=503, text="unavailable")
        self.accepted += 1
        return web.Response(status=200)


async def switchable_server(aiohttp_server, path: str) -> tuple[Switchable, str]:
    receiver = Switchable()
    app = web.Application()
    app.router.add_post(path, receiver.handle)
    server = await aiohttp_server(app)
    return receiver, str(server.make_url(""))


def submit(exporter, n: int = 1) -> None:
    for trace in synthetic_traces(n, spans=20):
        exporter.submit(trace.to_dict(), [s.to_dict() for s in trace.spans])


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def check_degraded_while_down_then_ok(exporter, receiver) -> None:
    assert exporter.health()["state"] == "ok"
    exporter.start()
    submit(exporter)
    await until(lambda: exporter.retries >= 1)  # the receiver is failing, the batch retried
    health = exporter.health()
    assert health["state"] == "degraded" and "retrying" in health["reason"]
    await exporter.flush()
    health = exporter.health()
    assert health["state"] == "degraded" and "last export failed" in health["reason"]
    assert (health["exported"], health["dropped"], health["retries"]) == (0, 20, 2)
    assert health["queue_depth"] == 0 and "503" in health["last_error"]

    receiver.down = False  # back: the next export succeeds and the state is ok again
    submit(exporter)
    await exporter.flush()
    health = exporter.health()
    assert health["state"] == "ok" and "reason" not in health
    assert (health["exported"], health["dropped"]) == (20, 20)
    await exporter.aclose()


async def test_issue17_15_otlp_is_degraded_while_losing_data_and_ok_once_exports_succeed(
        aiohttp_server) -> None:
    receiver, url = await switchable_server(aiohttp_server, "/v1/traces")
    exporter = OTLPExporter(url, protocol="json", max_retries=2, backoff=0.05,
                            flush_interval=0.02)
    await check_degraded_while_down_then_ok(exporter, receiver)


async def test_issue17_15_zipkin_is_degraded_while_losing_data_and_ok_once_exports_succeed(
        aiohttp_server) -> None:
    receiver, url = await switchable_server(aiohttp_server, "/api/v2/spans")
    exporter = ZipkinExporter(url, max_retries=2, backoff=0.05, flush_interval=0.02)
    await check_degraded_while_down_then_ok(exporter, receiver)


def test_issue17_15_an_overflowing_queue_is_degraded_for_a_window() -> None:
    exporter = OTLPExporter("http://127.0.0.1:9", protocol="json", queue_size=30,
                            degraded_window=0.2)
    submit(exporter, 2)  # the second trace does not fit
    health = exporter.health()
    assert health["state"] == "degraded" and "overflowed" in health["reason"]
    assert (health["dropped"], health["queue_depth"]) == (20, 20)
    exporter._overflow_at -= 0.3  # the window has passed
    assert exporter.health()["state"] == "ok"


async def test_issue17_15_web_health_is_degraded_with_total_otlp_loss(
        aiohttp_client, unused_tcp_port) -> None:
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    exporter = OTLPExporter(f"http://127.0.0.1:{unused_tcp_port}", protocol="json",
                            max_retries=1, backoff=0.01, flush_interval=0.02)
    tracer.register(exporter, name="otlp")
    client = await aiohttp_client(create_app(tracer=tracer))
    await tracer.start()
    doc = await (await client.get(f"{API_PREFIX}/health")).json()
    assert doc["status"] == "ok"
    for _ in range(3):
        with tracer.start_trace("message", {"outline": "hi"}):
            pass
    assert await tracer.aflush()
    await exporter.flush()
    doc = await (await client.get(f"{API_PREFIX}/health")).json()
    assert doc["status"] == "degraded"
    (otlp,) = [s for s in doc["tracer"]["sinks"] if s["name"] == "otlp"]
    assert otlp["state"] == "degraded" and otlp["reason"]
    assert otlp["exported"] == 0 and otlp["dropped"] == 3 and otlp["retries"] >= 1
    await tracer.aclose()
