"""Zipkin v2 JSON export to a loopback receiver."""

from __future__ import annotations

from aiohttp import web

from botrace.exporters.zipkin import ZipkinExporter, encode_zipkin
from botrace.store.synthetic import synthetic_traces


async def test_zipkin_receiver_gets_v2_spans_with_parents_and_tags(aiohttp_server) -> None:
    received: list = []

    async def spans(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/api/v2/spans", spans)
    server = await aiohttp_server(app)
    exporter = ZipkinExporter(str(server.make_url("")), service_name="bot", flush_interval=0.05)
    exporter.start()
    traces = list(synthetic_traces(2, spans=20))
    for t in traces:
        exporter.submit(t.to_dict(), [s.to_dict() for s in t.spans])
    await exporter.flush()
    spans_out = [s for body in received for s in body]
    assert len(spans_out) == 40
    by_id = {s["id"]: s for s in spans_out}
    for t in traces:
        for src in t.spans:
            got = by_id[src.span_id]
            assert got["traceId"] == t.trace_id
            assert got.get("parentId") == src.parent_id
            assert got["timestamp"] == src.start_ns // 1000
            assert got["duration"] >= 1
            assert got["localEndpoint"] == {"serviceName": "bot"}
    llm = next(s for s in spans_out if s["name"].startswith("chat "))
    assert llm["kind"] == "CLIENT"
    assert llm["tags"]["openinference.span.kind"] == "LLM"
    assert llm["tags"]["gen_ai.usage.input_tokens"].isdigit()
    assert exporter.health()["exported"] == 40
    await exporter.aclose()


def test_error_spans_carry_the_error_tag() -> None:
    (trace,) = synthetic_traces(1, spans=20)
    trace.spans[3].status = "error"
    trace.spans[3].error = {"type": "ValueError", "message": "bad", "traceback": ""}
    out = encode_zipkin([(trace.to_dict(), [s.to_dict() for s in trace.spans])])
    failed = next(s for s in out if s["id"] == trace.spans[3].span_id)
    assert failed["tags"]["error"] == "bad"
    assert failed["annotations"][-1]["value"] == "exception"
