"""OTLP/HTTP export, received by a loopback server and decoded with opentelemetry-proto."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest
from aiohttp import web

from botrace import PluginRef, Settings, Tracer
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
                llm.set_meta(model="gpt-4o", provider="openai", stream=True, ttft_ms=250.0,
                             finish_reason="stop", served_model="gpt-4o-2024-08-06")
                llm.set_usage(input_tokens=120, output_tokens=30, cached_tokens=20)
                llm.set_input(messages=[{"role": "user", "content": "weather?"}])
                llm.set_output(text="Let me look.",
                               tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
            with tracer.span("get_weather", "tool_call") as tool:
                tool.set_meta(tool_name="get_weather", tool_call_id="call_1")
                tool.set_input(city="Paris")
                tool.set_output(temp_c=21)
            with tracer.span("search", "subagent_call", plugin=search) as agent:
                agent.set_meta(agent_name="search")
                with tracer.span("boom", "io_call") as io:
                    io.set_error(RuntimeError("upstream down"))
        root.set_output(reply="Sunny, 21 °C.")
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


# -- issue 17: hardening ------------------------------------------------------------------

def root_of(spans):
    (root,) = [s for s in spans if not s.parent_span_id]
    return root


async def exported_request(tracer: Tracer, receiver, **kwargs):
    """Trace a conversation through a real exporter; the decoded request and the trace."""
    exporter = OTLPExporter(receiver.url, protocol="protobuf", flush_interval=0.05,
                            service_name=kwargs.pop("service_name", "bot-1"), **kwargs)
    tracer.register(exporter, name="otlp")
    await tracer.start()
    trace = await traced_conversation(tracer)
    assert await tracer.aflush()
    await exporter.flush()
    await tracer.aclose()
    (headers, body) = receiver.requests[-1]
    return decode(headers, body), trace


async def test_issue17_16_retries_are_counted(receiver) -> None:
    receiver.fail_next = 2
    exporter = OTLPExporter(receiver.url, protocol="json", backoff=0.01, flush_interval=0.05)
    exporter.start()
    (trace,) = synthetic_traces(1)
    exporter.submit(trace.to_dict(), [s.to_dict() for s in trace.spans])
    await exporter.flush()
    health = exporter.health()
    assert (health["exported"], health["dropped"], health["retries"]) == (20, 0, 2)
    await exporter.aclose()


async def test_issue17_16_close_counts_everything_not_exported_as_dropped() -> None:
    async def never_answer(reader, writer):
        await asyncio.sleep(30)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        exporter = OTLPExporter(f"http://127.0.0.1:{port}", protocol="json", flush_interval=0.05)
        exporter.start()
        for t in synthetic_traces(100, spans=20):  # 2,000 spans, about four batches
            assert exporter.submit(t.to_dict(), [s.to_dict() for s in t.spans])
        await asyncio.sleep(0.1)  # the first batch is on its way
        await exporter.aclose(timeout=0.5)
        health = exporter.health()
        assert (health["exported"], health["dropped"], health["queue_depth"]) == (0, 2000, 0)
    finally:
        server.close()


async def test_issue17_17_a_failed_span_makes_the_root_an_error_that_names_it(receiver) -> None:
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    request, trace = await exported_request(tracer, receiver)
    assert trace.to_dict()["status"] == "error"
    root = root_of(request.resource_spans[0].scope_spans[0].spans)
    assert root.status.code == 2  # STATUS_CODE_ERROR
    assert "'boom'" in root.status.message and "upstream down" in root.status.message
    attrs = attrs_of(root)
    assert attrs["error.type"] == "RuntimeError" and attrs["botrace.error.span_name"] == "boom"


def test_issue17_17_an_ok_trace_keeps_an_ok_root() -> None:
    (trace,) = synthetic_traces(1, spans=20, error_rate=0.0)
    records = otlp_spans(trace.to_dict(), [s.to_dict() for s in trace.spans])
    assert all(r["status"][0] != 2 for r in records)


async def test_issue17_18_resource_names_the_phoenix_project(receiver) -> None:
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    request, _ = await exported_request(tracer, receiver, service_name="support-bot")
    resource = {kv.key: kv.value.string_value
                for kv in request.resource_spans[0].resource.attributes}
    assert resource["service.name"] == resource["openinference.project.name"] == "support-bot"


def test_issue17_18_settings_reach_the_exporter() -> None:
    settings = Settings.from_mapping({"trace_otlp_endpoint": "http://c:4318",
                                      "trace_service_name": "support-bot",
                                      "trace_otlp_gzip": False,
                                      "trace_otlp_headers": {"api_key": "k"},
                                      "trace_otlp_capture_content": True})
    exporter = OTLPExporter.from_settings(settings)
    assert (exporter.service_name, exporter.gzip_body, exporter.headers,
            exporter.capture_content) == ("support-bot", False, {"api_key": "k"}, True)
    body, headers = exporter.encode([])
    assert "Content-Encoding" not in headers
    resource = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    assert {kv.key: kv.value.string_value for kv in resource.resource_spans[0].resource.attributes
            }["openinference.project.name"] == "support-bot"


async def test_issue17_19_root_input_is_the_user_text_and_output_the_reply(receiver) -> None:
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    request, _ = await exported_request(tracer, receiver)
    root = attrs_of(root_of(request.resource_spans[0].scope_spans[0].spans))
    assert (root["input.value"], root["input.mime_type"]) == ("weather?", "text/plain")
    assert (root["output.value"], root["output.mime_type"]) == ("Sunny, 21 °C.", "text/plain")


def test_issue17_19_root_text_from_its_input_or_a_host_list_of_replies() -> None:
    def root_attrs(inp, out, outline=None):
        span = {"trace_id": "a" * 32, "span_id": "b" * 16, "parent_id": None,
                "name": "message", "span_type": "message", "start_ns": 1, "end_ns": 2,
                "status": "ok", "input": inp, "output": out}
        (record,) = otlp_spans({"outline": outline}, [span])
        return dict(record["attributes"])

    got = root_attrs({"text": "full text"}, {"replies": ["one", "two"]}, outline="full…")
    assert (got["input.value"], got["output.value"]) == ("full text", "one\ntwo")
    got = root_attrs(None, {"reply": "hi", "stopped": True}, outline="hello")
    assert got["input.value"] == "hello" and got["output.value"] == "hi"
    assert json.loads(got["botrace.output"]) == {"reply": "hi", "stopped": True}


async def test_issue17_20_genai_conventions(receiver) -> None:
    semconv = pytest.importorskip("opentelemetry.semconv._incubating.attributes.gen_ai_attributes")
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    request, _ = await exported_request(tracer, receiver)
    spans = {s.name: s for s in request.resource_spans[0].scope_spans[0].spans}
    llm = attrs_of(spans["chat gpt-4o"])
    assert llm[semconv.GEN_AI_PROVIDER_NAME] == "openai"
    assert llm[semconv.GEN_AI_CONVERSATION_ID] == "s1"
    assert llm[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 20
    finish_reasons = llm[semconv.GEN_AI_RESPONSE_FINISH_REASONS].values
    assert [v.string_value for v in finish_reasons] == ["stop"]
    assert llm[semconv.GEN_AI_REQUEST_STREAM] is True
    assert llm[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] == pytest.approx(0.25)
    assert llm[semconv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    tool = attrs_of(spans["execute_tool get_weather"])
    assert tool[semconv.GEN_AI_TOOL_CALL_ID] == "call_1"
    assert tool[semconv.GEN_AI_OPERATION_NAME] == "execute_tool"
    agent = spans["invoke_agent search"]
    assert agent.kind == 1  # INTERNAL: an in-process agent
    assert attrs_of(agent)[semconv.GEN_AI_AGENT_NAME] == "search"
    # message content is opt-in: off by default, while Phoenix's OpenInference input stays
    content = {semconv.GEN_AI_INPUT_MESSAGES, semconv.GEN_AI_OUTPUT_MESSAGES,
               semconv.GEN_AI_TOOL_CALL_ARGUMENTS, semconv.GEN_AI_TOOL_CALL_RESULT}
    for span in spans.values():
        assert not content & set(attrs_of(span))
    assert llm["openinference.span.kind"] == "LLM" and "input.value" in llm


async def test_issue17_20_message_content_when_opted_in(receiver) -> None:
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    request, _ = await exported_request(tracer, receiver, capture_content=True)
    spans = {s.name: s for s in request.resource_spans[0].scope_spans[0].spans}
    llm = attrs_of(spans["chat gpt-4o"])
    assert json.loads(llm["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "weather?"}]}]
    assert json.loads(llm["gen_ai.output.messages"]) == [{"role": "assistant", "parts": [
        {"type": "text", "content": "Let me look."},
        {"type": "tool_call", "name": "get_weather", "arguments": {"city": "Paris"}}]}]
    tool = attrs_of(spans["execute_tool get_weather"])
    assert json.loads(tool["gen_ai.tool.call.arguments"]) == {"city": "Paris"}
    assert json.loads(tool["gen_ai.tool.call.result"]) == {"temp_c": 21}
