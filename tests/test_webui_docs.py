"""docs/WEBUI.md's examples run, and the helpers behind the API behave as documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from botrace_webui.download import trace_to_otlp_json
from botrace_webui.params import BadParam, Param, parse_query, parse_time

DOC = Path(__file__).resolve().parents[1] / "docs" / "WEBUI.md"


def _example(name: str) -> str:
    text = DOC.read_text()
    m = re.search(rf"<!-- example: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"example {name} not found in {DOC}"
    return m.group(1)


async def test_mounted_app_defers_to_the_hosts_auth(tmp_path, aiohttp_client):
    from botrace import Tracer
    from botrace.store import TraceStore

    namespace: dict = {}
    exec(compile(_example("mounted-auth"), str(DOC), "exec"), namespace)
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    store = TraceStore(str(tmp_path / "t.db"))
    await store.open()

    async def is_logged_in(request):
        return request.headers.get("X-Session") == "ok"

    try:
        client = await aiohttp_client(namespace["build_dashboard"](tracer, store, is_logged_in))
        for path in ("/trace/", "/trace/api/v1/traces", "/trace/api/v1/stream"):
            resp = await client.get(path, allow_redirects=False)
            assert resp.status == 302 and resp.headers["Location"] == "/login", path
        resp = await client.get("/trace/api/v1/traces", headers={"X-Session": "ok"})
        assert resp.status == 200 and (await resp.json())["total"] == 0
    finally:
        await store.close()
        tracer.close()


def test_times_relative_iso_and_ns():
    now = 10**18
    assert parse_time("since", "15m", now_ns=now) == now - 15 * 60 * 10**9
    assert parse_time("since", "7d", now_ns=now) == now - 7 * 86400 * 10**9
    assert parse_time("since", "2026-01-02T03:04:05Z") == parse_time("since", "2026-01-02T03:04:05+00:00")
    assert parse_time("since", "123") == 123
    with pytest.raises(BadParam) as err:
        parse_time("until", "soonish")
    assert err.value.param == "until" and "until" in err.value.message


def test_empty_values_count_as_absent_and_defaults_apply():
    params = (Param("limit", "int", default=50, minimum=1), Param("q"))
    assert parse_query({"limit": "", "q": ""}, params) == {"limit": 50}
    with pytest.raises(BadParam, match="at least 1"):
        parse_query({"limit": "0"}, params)
    with pytest.raises(BadParam, match="NUL"):
        parse_query({"q": "a\x00b"}, params)


def test_otlp_download_keeps_ids_hex_and_errors_as_exception_events():
    trace = {"umo": "qq:group:1"}
    spans = [{"trace_id": "a" * 32, "span_id": "b" * 16, "parent_id": None, "name": "get_weather",
              "span_type": "tool_call", "start_ns": 1, "end_ns": 5, "status": "error",
              "error": {"type": "LookupError", "message": "no city", "traceback": "tb"},
              "meta": {"tool_name": "get_weather"}, "plugin": {"name": "weather", "plugin_type": "third_party"}}]
    doc = trace_to_otlp_json(trace, spans, service_name="astrbot")
    rs = doc["resourceSpans"][0]
    assert {"key": "service.name", "value": {"stringValue": "astrbot"}} in rs["resource"]["attributes"]
    span = rs["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == "a" * 32 and "parentSpanId" not in span  # a root
    assert span["status"]["code"] == 2
    attrs = {a["key"]: a["value"] for a in span["attributes"]}
    assert attrs["gen_ai.operation.name"] == {"stringValue": "execute_tool"}
    assert attrs["gen_ai.tool.name"] == {"stringValue": "get_weather"}
    (event,) = span["events"]
    assert event["name"] == "exception"
