"""OTLP/HTTP export, received by a loopback server and decoded with opentelemetry-proto."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest
from aiohttp import web

from botrace import PluginRef, Tracer
from botrace.exporters.otlp import (
    OTLPExporter,
    encode_json,
    encode_request,
    otlp_spans,
    traces_url,
)
from botrace.store.synthetic import synthetic_traces

trace_service_pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")


class Receiver:
    """A stand-in OTLP receiver: records requests; can fail, stall or go away."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        self.fail_next = 0
        self.status = 500
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=self.status, text="receiver unhappy")
        self.requests.append((dict(request.headers), body))
        return web.Response(status=200, body=b"", content_type="application/x-protobuf")

    def app(self, path: str = "/v1/traces") -> web.Application:
        app = web.Application()
        app.router.add_post(path, self.handle)
        return app


@pytest.fixture
async def receiver(aiohttp_server):
    r = Receiver()
    server = await aiohttp_server(r.app())
    r.url = str(server.make_url(""))
    r.server = server
    return r


def decode(headers: dict, body: bytes):
    if body[:2] == b"\x1f\x8b":  # aiohttp's server usually inflates gzip bodies itself
        body = gzip.decompress(body)
    if headers["Content-Type"] == "application/x-protobuf":
        return trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    return json.loads(body)


def attrs_of(pb_span) -> dict:
    out = {}
    for kv in pb_span.attributes:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which)
    return out


async def traced_conversation(tracer: Tracer):
    search = PluginRef("search", "Web Search", "third_party", "0.9")
    with tracer.start_trace("message", {"user_id": "u1", "session_id": "s1",
                                        "umo": "qq:1", "outline": "weather?"}) as root:
        with tracer.span("Process", "pipeline_stage"):
            with tracer.span("llm", "llm_call") as llm:
                llm.set_meta(model="gpt-4o", provider="openai")
                llm.set_usage(input_tokens=120, output_tokens=30, cached_tokens=20)
                llm.set_input(messages=[{"role": "user", "content": "weather?"}])
            with tracer.span("get_weather", "tool_call") as tool:
                tool.set_meta(tool_name="get_weather")
            with tracer.span("search", "subagent_call", plugin=search) as agent:
                agent.set_meta(agent_name="search")
                with tracer.span("boom", "io_call") as io:
                    io.set_error(RuntimeError("upstream down"))
    return root.trace


async def test_protobuf_payload_decodes_into_the_same_tree(receiver) -> None:
    tracer = Tracer({"trace_enable": True, "trace_service_name": "bot-1"}, load_entrypoints=False)
    exporter = OTLPExporter(receiver.url, protocol="protobuf", flush_interval=0.05,
                            service_name="bot-1")
    tracer.register(exporter, name="otlp")
    await tracer.start()
    trace = await traced_conversation(tracer)
    assert await tracer.aflush()
    await exporter.flush()
    (headers, body) = receiver.requests[0]
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["Content-Encoding"] == "gzip"
    request = decode(headers, body)
    (rs,) = request.resource_spans
    resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
    assert resource["service.name"] == "bot-1"
    spans = list(rs.scope_spans[0].spans)
    assert len(spans) == len(trace.spans)

    by_id = {s.span_id.hex(): s for s in spans}
    for source in trace.spans:
        got = by_id[source.span_id]
        assert got.trace_id.hex() == trace.trace_id
        assert (got.parent_span_id.hex() or None) == source.parent_id
        assert got.start_time_unix_nano == source.start_ns
        assert got.end_time_unix_nano == source.end_ns

    by_name = {s.name: s for s in spans}
    llm = attrs_of(by_name["chat gpt-4o"])
    assert llm["openinference.span.kind"] == "LLM"
    assert llm["gen_ai.operation.name"] == "chat"
    assert llm["gen_ai.provider.name"] == "openai"
    assert llm["gen_ai.request.model"] == llm["llm.model_name"] == "gpt-4o"
    assert llm["gen_ai.usage.input_tokens"] == llm["llm.token_count.prompt"] == 120
    assert llm["gen_ai.usage.output_tokens"] == llm["llm.token_count.completion"] == 30
    assert llm["gen_ai.usage.cache_read.input_tokens"] == 20
    assert llm["session.id"] == llm["gen_ai.conversation.id"] == "s1"
    assert llm["user.id"] == "u1"
    assert json.loads(llm["input.value"])["messages"][0]["content"] == "weather?"
    assert by_name["chat gpt-4o"].kind == 3  # CLIENT
    tool = attrs_of(by_name["execute_tool get_weather"])
    assert tool["openinference.span.kind"] == "TOOL" and tool["gen_ai.tool.name"] == "get_weather"
    agent = attrs_of(by_name["invoke_agent search"])
    assert agent["openinference.span.kind"] == "AGENT" and agent["gen_ai.agent.name"] == "search"
    assert agent["botrace.plugin.name"] == "search"
    assert agent["botrace.plugin.plugin_type"] == "third_party"
    assert attrs_of(by_name["message"])["openinference.span.kind"] == "CHAIN"
    boom = by_name["boom"]
    assert boom.status.code == 2 and "upstream down" in boom.status.message
    assert [e.name for e in boom.events] == ["exception"]
    assert exporter.health()["exported"] == len(trace.spans)
    await tracer.aclose()


async def test_json_encoding_needs_no_protobuf_and_keeps_hex_ids(receiver) -> None:
    exporter = OTLPExporter(receiver.url + "/v1/traces", protocol="json", gzip_body=False,
                            flush_interval=0.05)
    exporter.start()
    (trace,) = synthetic_traces(1, spans=20)
    exporter.submit(trace.to_dict(), [s.to_dict() for s in trace.spans])
    await exporter.flush()
    headers, body = receiver.requests[0]
    assert headers["Content-Type"] == "application/json"
    doc = decode(headers, body)
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert len(spans) == 20
    ids = {s["spanId"] for s in spans}
    assert all(s["traceId"] == trace.trace_id for s in spans)
    assert all(s.get("parentSpanId") in ids for s in spans if s["name"] != "message")
    llm = next(s for s in spans if s["name"].startswith("chat "))
    attrs = {a["key"]: a["value"] for a in llm["attributes"]}
    assert attrs["openinference.span.kind"] == {"stringValue": "LLM"}
    assert "intValue" in attrs["gen_ai.usage.input_tokens"]
    await exporter.aclose()


async def test_receiver_answering_500_is_retried_until_it_accepts(receiver) -> None:
    receiver.fail_next = 2
    exporter = OTLPExporter(receiver.url, protocol="json", backoff=0.01, flush_interval=0.05)
    exporter.start()
    (trace,) = synthetic_traces(1)
    exporter.submit(trace.to_dict(), [s.to_dict() for s in trace.spans])
    await exporter.flush()
    assert len(receiver.requests) == 1
    health = exporter.health()
    assert health["exported"] == 20 and health["dropped"] == 0
    await exporter.aclose()


async def test_receiver_down_counts_losses_and_never_blocks_the_caller(unused_tcp_port) -> None:
    exporter = OTLPExporter(f"http://127.0.0.1:{unused_tcp_port}", protocol="json",
                            max_retries=2, backoff=0.01, flush_interval=0.02)
    exporter.start()
    traces = list(synthetic_traces(5))
    for t in traces:  # returns at once: the posting happens in the background task
        assert exporter.submit(t.to_dict(), [s.to_dict() for s in t.spans])
    await exporter.flush()
    health = exporter.health()
    assert health["dropped"] == 100 and health["exported"] == 0
    assert health["failed_batches"] >= 1
    assert "failed" in health["last_error"]
    await exporter.aclose()


async def test_slow_receiver_times_out_and_recovers_when_it_speeds_up(receiver) -> None:
    receiver.delay = 1.0
    exporter = OTLPExporter(receiver.url, protocol="protobuf", max_retries=1, backoff=0.01,
                            timeout=0.1, flush_interval=0.02, batch_size=20)
    exporter.start()
    a, b = synthetic_traces(2)
    exporter.submit(a.to_dict(), [s.to_dict() for s in a.spans])
    await exporter.flush()
    assert exporter.health()["dropped"] == 20
    receiver.delay = 0.0
    exporter.submit(b.to_dict(), [s.to_dict() for s in b.spans])
    await exporter.flush()
    assert exporter.health()["exported"] == 20
    assert len(receiver.requests) >= 1
    await exporter.aclose()


async def test_client_error_is_not_retried(receiver) -> None:
    receiver.fail_next, receiver.status = 1, 400
    exporter = OTLPExporter(receiver.url, protocol="json", backoff=0.01)
    exporter.start()
    (trace,) = synthetic_traces(1)
    exporter.submit(trace.to_dict(), [s.to_dict() for s in trace.spans])
    await exporter.flush()
    assert exporter.health()["dropped"] == 20 and receiver.fail_next == 0
    assert receiver.requests == []
    await exporter.aclose()


def test_queue_is_bounded_and_drops_are_counted() -> None:
    exporter = OTLPExporter("http://127.0.0.1:9", protocol="json", queue_size=50)
    accepted = [exporter.submit(t.to_dict(), [s.to_dict() for s in t.spans])
                for t in synthetic_traces(4, spans=20)]
    assert accepted == [True, True, False, False]
    assert exporter.health()["dropped"] == 40 and exporter.health()["queue_depth"] == 40


def test_names_and_urls() -> None:
    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces/") == "http://c:4318/v1/traces"
    (trace,) = synthetic_traces(1, spans=40)
    records = otlp_spans(trace.to_dict(), [s.to_dict() for s in trace.spans])
    names = {r["name"].split(" ")[0] for r in records}
    assert {"chat", "execute_tool"} <= names
    doc = encode_json(records, "svc")
    assert doc["resourceSpans"][0]["resource"]["attributes"][0] == {
        "key": "service.name", "value": {"stringValue": "svc"}}


def test_bodies_are_gzipped_and_decode_to_the_same_request() -> None:
    (trace,) = synthetic_traces(1)
    batch = [(trace.to_dict(), [s.to_dict() for s in trace.spans])]
    body, headers = encode_request(batch, "protobuf", "svc", gzip_body=True)
    assert body[:2] == b"\x1f\x8b" and headers["Content-Encoding"] == "gzip"
    plain, _ = encode_request(batch, "protobuf", "svc", gzip_body=False)
    assert gzip.decompress(body) == plain
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(plain)
    assert len(request.resource_spans[0].scope_spans[0].spans) == 20
