"""GET /api/v1/compare: two stored traces aligned by span path."""

from __future__ import annotations

from botrace_webui.api import API_PREFIX

try:
    from browser.harness import wait_for_trace
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.browser.harness import wait_for_trace

V1 = API_PREFIX


async def _chat(host, text):
    await host.chat(text, "u1", "s1")
    tid = host.trace_ids[-1]
    await wait_for_trace(host.store, tid, host.tracer)
    return tid


async def test_compare_aligns_two_stored_traces(host, client):
    ok = await _chat(host, "weather please")
    failed = await _chat(host, "weather fail")  # the tool raises: same shape, one span in error
    resp = await client.get(f"{V1}/compare", params={"a": ok, "b": failed.upper()})
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["a"]["trace_id"] == ok and doc["b"]["trace_id"] == failed
    stored = await host.store.get_trace(ok, flat=True)
    assert doc["summary"]["aligned"] == len(stored["spans"]) == len(doc["rows"])
    assert doc["summary"]["only_a"] == doc["summary"]["only_b"] == 0
    tool = next(r for r in doc["rows"] if r["name"] == "get_weather")
    assert tool["path"] == ["message", "ProcessStage", "weather.on_message", "get_weather"]
    assert (tool["a"]["status"], tool["b"]["status"]) == ("ok", "error")
    llms = [r for r in doc["rows"] if r["name"] == "llm gpt-4o"]
    assert [r["occurrence"] for r in llms] == [0, 1]
    assert [r["a"]["input_tokens"] for r in llms] == [120, 180]
    assert all(r["delta"]["tokens"] == 0 for r in llms)
    root = doc["rows"][0]
    assert root["depth"] == 0 and root["a"]["input_tokens"] == 300  # the subtree's tokens
    assert root["delta"]["duration_ns"] == doc["b"]["duration_ns"] - doc["a"]["duration_ns"]
    ids = {s["span_id"] for s in stored["spans"]}
    assert {r["a"]["span_id"] for r in doc["rows"]} == ids


async def test_compare_marks_spans_of_one_trace_only(host, client):
    a = await _chat(host, "weather please")
    root = host.tracer.start_trace("message", {"outline": "weather please", "umo": "demo:x:s1"})
    with root:
        with host.tracer.span("ProcessStage", "pipeline_stage"):
            with host.tracer.span("extra", "tool_call"):
                pass
    await wait_for_trace(host.store, root.trace_id, host.tracer)
    doc = await (await client.get(f"{V1}/compare", params={"a": a, "b": root.trace_id})).json()
    only = {(r["name"], r["only"]) for r in doc["rows"] if r["only"]}
    assert ("extra", "b") in only and ("get_weather", "a") in only and ("WakingCheck", "a") in only
    assert doc["summary"]["only_b"] == 1
    stage = next(r for r in doc["rows"] if r["name"] == "ProcessStage")
    assert stage["only"] is None and stage["delta"] is not None


async def test_compare_bad_ids_are_400_naming_the_parameter_and_unknown_ones_404(host, client):
    tid = await _chat(host, "hello")
    for params, param in (({"b": tid}, "a"), ({"a": tid}, "b"), ({"a": "xyz", "b": tid}, "a"),
                          ({"a": tid, "b": "g" * 32}, "b"), ({"a": tid, "b": tid, "c": "1"}, "c"),
                          ({"a": tid, "b": "a" * 33}, "b")):
        resp = await client.get(f"{V1}/compare", params=params)
        assert resp.status == 400, (params, await resp.text())
        assert (await resp.json())["param"] == param
    resp = await client.get(f"{V1}/compare", params={"a": tid, "b": "0" * 32})
    assert resp.status == 404 and "not found" in (await resp.json())["error"]
    resp = await client.get(f"{V1}/compare", params={"a": "0" * 32, "b": tid})
    assert resp.status == 404
    # a trace with itself: every span aligned, no differences
    doc = await (await client.get(f"{V1}/compare", params={"a": tid, "b": tid})).json()
    assert doc["summary"]["only_a"] == doc["summary"]["only_b"] == 0
    assert all(r["delta"]["duration_ns"] == 0 for r in doc["rows"])


async def test_openapi_says_both_ids_are_required_trace_ids(client):
    doc = await (await client.get(f"{V1}/openapi.json")).json()
    params = {p["name"]: p for p in doc["paths"][f"{V1}/compare"]["get"]["parameters"]}
    assert set(params) == {"a", "b"}
    for p in params.values():
        assert p["required"] is True and p["schema"]["pattern"] == "^[0-9a-fA-F]{32}$"
    # the other routes' query parameters stay optional
    others = [p for path, ops in doc["paths"].items() if path != f"{V1}/compare"
              for op in ops.values() for p in op["parameters"] if p["in"] == "query"]
    assert others and not any(p["required"] for p in others)
