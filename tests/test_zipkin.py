"""Zipkin v2 JSON export to a loopback receiver."""

from __future__ import annotations

from aiohttp import web

from botrace import Tracer
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


# -- issue 17 ------------------------------------------------------------------------------

def conversation():
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    with tracer.start_trace("message", {"outline": "Weather in Paris?"}) as root:
        with tracer.span("WakingCheck", "pipeline_stage"):
            pass
        with tracer.span("Process", "pipeline_stage"):
            with tracer.span("llm", "llm_call") as llm:
                llm.set_meta(model="GPT-4o")
            with tracer.span("Fetch", "io_call") as io:
                io.set_error(TimeoutError("weather API timed out"))
        root.set_output(reply="Sorry, no weather today.")
    tracer.close()
    trace = root.trace
    return trace.to_dict(), [s.to_dict() for s in trace.spans]


def test_issue17_21_names_and_service_are_lower_case_as_the_zipkin_server_stores_them() -> None:
    out = encode_zipkin([conversation()], "Support-Bot")
    names = [s["name"] for s in out]
    assert names == ["message", "wakingcheck", "process", "chat gpt-4o", "fetch"]
    assert {s["localEndpoint"]["serviceName"] for s in out} == {"support-bot"}
    by_name = {s["name"]: s for s in out}
    assert by_name["wakingcheck"]["tags"]["botrace.name"] == "WakingCheck"
    assert "botrace.name" not in by_name["message"]["tags"]


def test_issue17_17_the_root_carries_the_error_of_its_trace() -> None:
    out = encode_zipkin([conversation()], "bot")
    (root,) = [s for s in out if "parentId" not in s]
    assert "'Fetch'" in root["tags"]["error"] and "timed out" in root["tags"]["error"]
    assert root["tags"]["input.value"] == "Weather in Paris?"
    assert root["tags"]["output.value"] == "Sorry, no weather today."
