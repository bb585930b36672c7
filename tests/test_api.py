"""The REST API over a real tracer and store: answers, shapes, bad input, security."""

from __future__ import annotations

import asyncio
import base64
import json
import re

import aiohttp
import pytest
from aiohttp import web

from botrace_webui import create_app, is_loopback, keys, run_server
from botrace_webui.api import API_PREFIX, ROUTES

try:
    from browser.harness import wait_for_trace
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.browser.harness import wait_for_trace

V1 = API_PREFIX


async def _chat(host, text="hello", user="u1", session="s1"):
    await host.chat(text, user, session)
    tid = host.trace_ids[-1]
    await wait_for_trace(host.store, tid, host.tracer)
    return tid


async def test_issue_99_traces_of_one_user_with_a_total(host, client):
    for i in range(12):
        await _chat(host, f"msg {i}", user="123" if i % 2 else "456")
    resp = await client.get(f"{V1}/traces?user_id=123&limit=10")
    assert resp.status == 200
    page = await resp.json()
    assert page["total"] == 6
    assert len(page["traces"]) == 6
    assert {t["user_id"] for t in page["traces"]} == {"123"}
    assert page["traces"][0]["outline"] == "msg 11"  # newest first


async def test_cursor_pages_through_every_trace_once(host, client):
    ids = [await _chat(host, f"m{i}") for i in range(7)]
    seen, cursor = [], None
    while True:
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = await (await client.get(f"{V1}/traces", params=params)).json()
        seen += [t["trace_id"] for t in page["traces"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))


async def test_one_trace_as_a_tree(host, client):
    tid = await _chat(host)
    doc = await (await client.get(f"{V1}/traces/{tid}")).json()
    assert doc["trace"]["trace_id"] == tid
    (root,) = doc["tree"]
    assert root["name"] == "message"
    assert [c["name"] for c in root["children"]] == ["WakingCheck", "ProcessStage", "RespondStage"]
    handler = root["children"][1]["children"][0]
    assert handler["name"] == "weather.on_message"
    assert handler["plugin"]["plugin_type"] == "third_party"
    assert [c["name"] for c in handler["children"]] == ["llm gpt-4o", "get_weather", "llm gpt-4o"]
    assert handler["children"][1]["input"] == {"city": "Paris"}


async def test_flat_shape_without_values_is_the_light_one(host, client):
    tid = await _chat(host)
    doc = await (await client.get(f"{V1}/traces/{tid}?shape=flat&values=none")).json()
    assert len(doc["spans"]) == 8
    assert all("input" not in s and "output" not in s for s in doc["spans"])
    llm = next(s for s in doc["spans"] if s["span_type"] == "llm_call")
    assert llm["meta"]["model"] == "gpt-4o"


async def test_root_values_only_carry_the_message_and_its_reply(host, client):
    tid = await _chat(host, "and in Paris?")
    doc = await (await client.get(f"{V1}/traces/{tid}?shape=flat&values=root")).json()
    (root,) = [s for s in doc["spans"] if s["parent_id"] is None]
    full = await (await client.get(f"{V1}/traces/{tid}?shape=flat")).json()
    (whole,) = [s for s in full["spans"] if s["parent_id"] is None]
    assert root["output"] == whole["output"] and root["output"]
    assert all("input" not in s and "output" not in s for s in doc["spans"] if s is not root)


async def test_one_span_with_values_and_as_a_download(host, client):
    tid = await _chat(host, "what about Paris?")
    spans = (await (await client.get(f"{V1}/traces/{tid}?shape=flat")).json())["spans"]
    tool = next(s for s in spans if s["name"] == "get_weather")
    resp = await client.get(f"{V1}/traces/{tid}/spans/{tool['span_id']}")
    assert (await resp.json())["output"] == {"forecast": "sunny", "celsius": 21}
    resp = await client.get(f"{V1}/traces/{tid}/spans/{tool['span_id']}?download=1")
    assert "attachment" in resp.headers["Content-Disposition"]


async def test_download_json_and_otlp(host, client):
    tid = await _chat(host)
    doc = await (await client.get(f"{V1}/traces/{tid}/download")).json()
    assert len(doc["spans"]) == 8 and doc["trace"]["trace_id"] == tid
    otlp = await (await client.get(f"{V1}/traces/{tid}/download?format=otlp")).json()
    spans = otlp["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert {s["traceId"] for s in spans} == {tid}
    # the exporter's own mapping: GenAI span names ("chat gpt-4o") and attributes
    llm = next(s for s in spans if s["name"] == "chat gpt-4o")
    attrs = {a["key"]: a["value"] for a in llm["attributes"]}
    assert attrs["gen_ai.operation.name"] == {"stringValue": "chat"}
    assert attrs["gen_ai.request.model"] == {"stringValue": "gpt-4o"}
    assert attrs["gen_ai.usage.input_tokens"] == {"intValue": "120"}


async def test_unknown_ids_are_404(client):
    for path in (f"/traces/{'a' * 32}", f"/traces/{'a' * 32}/spans/{'b' * 16}",
                 f"/traces/{'a' * 32}/download"):
        resp = await client.get(V1 + path)
        assert resp.status == 404, path
        assert "not found" in (await resp.json())["error"]


async def test_unknown_span_in_a_known_trace_is_404(host, client):
    tid = await _chat(host)
    resp = await client.get(f"{V1}/traces/{tid}/spans/{'b' * 16}")
    assert resp.status == 404


async def test_malformed_ids_are_400_naming_them(client):
    resp = await client.get(f"{V1}/traces/not-an-id")
    assert resp.status == 400 and (await resp.json())["param"] == "trace_id"
    resp = await client.get(f"{V1}/traces/{'a' * 32}/spans/xyz")
    assert resp.status == 400 and (await resp.json())["param"] == "span_id"


_BAD = {"int": "ten", "float": "fast", "enum": "nonsense", "time": "last tuesday-ish",
        "bool": "maybe", "str": "x" * 3000, "cursor": "!!not-a-cursor!!"}


def _concrete(path: str) -> str:
    return path.replace("{trace_id}", "a" * 32).replace("{span_id}", "b" * 16)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_bad_parameters_on_every_route_get_a_400_naming_them(route, client):
    url = V1 + _concrete(route.path)
    if route.needs_chat is False and route.name == "stream":
        pass
    # an unknown parameter
    resp = await client.request(route.method, url, params={"bogus": "1"})
    assert resp.status == 400, (route.name, await resp.text())
    assert (await resp.json())["param"] == "bogus"
    # each declared parameter with a value of the wrong kind
    for p in route.params:
        bad = _BAD[p.kind] if p.kind != "str" else "x" * (p.max_length + 1)
        resp = await client.request(route.method, url, params={p.name: bad})
        assert resp.status == 400, (route.name, p.name, await resp.text())
        body = await resp.json()
        assert body["param"] == p.name and p.name in body["error"]
    # a body that is not JSON
    if route.body is not None:
        resp = await client.request(route.method, url, data="{nope", headers={"Content-Type": "application/json"})
        assert resp.status == 400 and (await resp.json())["param"] == "body"
        resp = await client.request(route.method, url, data="x=1",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert resp.status == 400


async def test_values_the_store_rejects_are_400_too(client):
    resp = await client.get(f"{V1}/traces?cursor=!!not-a-cursor!!")
    assert resp.status == 400
    assert (await resp.json())["param"] == "cursor"
    resp = await client.get(f"{V1}/traces?limit=0")
    assert resp.status == 400 and (await resp.json())["param"] == "limit"
    resp = await client.get(f"{V1}/traces?limit=501")
    assert resp.status == 400 and (await resp.json())["param"] == "limit"
    resp = await client.get(f"{V1}/traces?min_duration_ms=-1")
    assert resp.status == 400 and (await resp.json())["param"] == "min_duration_ms"


def _cursor(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


_OVERSIZED = [("since", "9223372036854775808"), ("until", "99999999999999999999999"),
              ("since", "9999-12-31"), ("until", "0001-01-01T00:00:00Z"),
              ("min_duration_ms", "1e13"), ("cursor", _cursor(10**30, "z")),
              ("cursor", _cursor(-(2**63) - 1, "z")), ("cursor", "[" * 1500)]


@pytest.mark.parametrize("path", ["/traces", "/sessions", "/users", "/stats"])
async def test_oversized_numbers_are_400_naming_the_parameter(path, client):
    """Issue 17, item 10: numbers beyond SQLite's 64-bit INTEGER were an OverflowError (500)."""
    accepted = {p.name for r in ROUTES if r.path == path for p in r.params}
    for name, value in _OVERSIZED:
        if name in accepted:
            resp = await client.get(V1 + path, params={name: value})
            assert resp.status == 400, (path, name, value, await resp.text())
            assert (await resp.json())["param"] == name


async def test_time_windows_at_their_edges(client):
    # a relative time reaching back before 1970 means 1970; an inverted window is empty
    for query in ({"since": "9" * 400 + "s"}, {"since": "99999999999w"}, {"since": "1h", "until": "2h"}):
        resp = await client.get(f"{V1}/traces", params=query)
        assert resp.status == 200, (query, await resp.text())
    resp = await client.get(f"{V1}/stats", params={"since": "1h", "until": "2h"})
    assert resp.status == 200 and (await resp.json())["groups"] == []
    # an absolute time outside 1970..2262, or a digit only to str.isdigit(), is a 400
    for name, value in (("until", "1969-12-31T23:00Z"), ("since", "²")):
        resp = await client.get(f"{V1}/traces", params={name: value})
        assert resp.status == 400 and (await resp.json())["param"] == name


async def test_openapi_describes_exactly_the_registered_routes(client, host):
    doc = await (await client.get(f"{V1}/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    registered = set()
    for resource in host.app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if not path or not path.startswith(V1):
            continue
        for route in resource:
            if route.method != "HEAD":
                registered.add((route.method, path))
    assert documented == registered
    # and every documented query parameter is accepted by the route
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            names = {p["name"] for p in op["parameters"] if p["in"] == "query"}
            route = next(r for r in ROUTES if V1 + r.path == path and r.method == method.upper())
            assert names == {p.name for p in route.params}
            for name in re.findall(r"{(\w+)}", path):
                assert any(p["name"] == name and p["in"] == "path" for p in op["parameters"])


async def test_stats_per_plugin_with_percentiles(host, client):
    for i in range(5):
        await _chat(host, f"m{i}")
    st = await (await client.get(f"{V1}/stats?group_by=plugin")).json()
    groups = {g["key"]: g for g in st["groups"]}
    # every span of the plugin counts; its 5 handlers are its top-level spans
    types = {t["span_type"]: t["count"] for t in groups["weather"]["by_type"]}
    assert types["plugin_call"] == 5 and groups["weather"]["count"] == sum(types.values())
    assert groups["weather"]["top_count"] == 5
    for key in ("p50_ms", "p95_ms", "error_rate"):
        assert key in groups["weather"]
    st = await (await client.get(f"{V1}/stats?group_by=tool&since=1h")).json()
    assert [g["key"] for g in st["groups"]] == ["get_weather"]


async def test_sessions_and_users(host, client):
    await _chat(host, user="alice", session="s-a")
    await _chat(host, user="bob", session="s-b")
    await _chat(host, user="alice", session="s-a")
    sessions = await (await client.get(f"{V1}/sessions")).json()
    assert {s["session_id"]: s["trace_count"] for s in sessions["sessions"]} == {"s-a": 2, "s-b": 1}
    users = await (await client.get(f"{V1}/users?limit=1")).json()
    assert users["total"] == 2 and len(users["users"]) == 1 and users["next_cursor"]
    alice = await (await client.get(f"{V1}/users?user_id=alice")).json()
    assert [(u["user_id"], u["trace_count"], u["session_count"]) for u in alice["users"]] \
        == [("alice", 2, 1)]


async def test_health_reports_tracer_store_and_live_stream(client):
    doc = await (await client.get(f"{V1}/health")).json()
    assert doc["status"] == "ok"
    assert "queue_depth" in doc["store"]
    assert doc["tracer"]["enabled"] is True
    assert doc["live"]["subscribers"] == 0


async def test_switch_turns_tracing_off_and_the_next_message_leaves_no_trace(host, client):
    resp = await client.put(f"{V1}/config", json={"trace_enable": False})
    assert resp.status == 200 and (await resp.json())["trace_enable"] is False
    assert host.tracer.enabled is False
    await host.chat("unseen", "u1", "s1")
    assert host.trace_ids[-1] is None
    assert (await (await client.get(f"{V1}/traces")).json())["total"] == 0
    resp = await client.put(f"{V1}/config", json={"trace_enable": True})
    assert (await (await client.get(f"{V1}/config")).json())["trace_enable"] is True


async def test_config_rejects_other_settings_and_non_booleans(client):
    resp = await client.put(f"{V1}/config", json={"trace_db_path": "/etc/passwd"})
    assert resp.status == 400 and (await resp.json())["param"] == "trace_db_path"
    resp = await client.put(f"{V1}/config", json={"trace_enable": "yes"})
    assert resp.status == 400 and (await resp.json())["param"] == "trace_enable"


async def test_read_only_viewer_has_no_switch(host, aiohttp_client):
    client = await aiohttp_client(create_app(tracer=None, store=host.store))
    cfg = await (await client.get(f"{V1}/config")).json()
    assert cfg["read_only"] is True and cfg["trace_enable"] is None
    resp = await client.put(f"{V1}/config", json={"trace_enable": True})
    assert resp.status == 409
    assert (await client.get(f"{V1}/traces")).status == 200
    assert (await client.post(f"{V1}/chat", json={"text": "x"})).status == 404


async def test_chat_route_calls_the_host_and_validates_its_body(host, client):
    resp = await client.post(f"{V1}/chat", json={"text": "hi", "user_id": "u9", "session": "s9"})
    assert (await resp.json())["reply"].startswith("It will be sunny")
    resp = await client.post(f"{V1}/chat", json={"text": ""})
    assert resp.status == 400 and (await resp.json())["param"] == "text"
    resp = await client.post(f"{V1}/chat", json={"text": "hi", "user_id": 5})
    assert resp.status == 400 and (await resp.json())["param"] == "user_id"


async def test_a_host_chat_that_raises_is_a_502_not_a_crash(host, aiohttp_client):
    async def broken(text, user_id, session):
        raise RuntimeError("model offline")

    client = await aiohttp_client(create_app(host.tracer, host.store, broken))
    resp = await client.post(f"{V1}/chat", json={"text": "hi"})
    assert resp.status == 502 and "model offline" in (await resp.json())["error"]


# -- security -----------------------------------------------------------------------

async def test_every_response_has_a_csp_without_inline_script(client):
    for path in ("/", f"{V1}/traces", "/static/app.css", "/nope"):
        resp = await client.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_page_has_no_inline_script_and_escapes_what_it_renders(host, aiohttp_client):
    client = await aiohttp_client(create_app(host.tracer, host.store, title="<b>x</b>"))
    html = await (await client.get("/")).text()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    for script in re.findall(r"<script[^>]*>(.*?)</script>", html, re.S):
        assert script.strip() == ""
    assert not re.search(r"\son[a-z]+=", html)


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
                                  "/static/%2e%2e%2f%2e%2e%2fpyproject.toml", "/static//etc/passwd",
                                  "/static/js/../../api.py"])
async def test_static_paths_cannot_escape_their_folder(client, path):
    resp = await client.get(path)
    assert resp.status in (403, 404), path
    assert "import" not in await resp.text()


async def test_static_files_are_served(client):
    resp = await client.get("/static/js/app.js")
    assert resp.status == 200 and "javascript" in resp.headers["Content-Type"]


async def test_cors_is_closed_by_default(client):
    resp = await client.get(f"{V1}/traces", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = await client.options(f"{V1}/config", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_cors_opens_only_to_listed_origins(host, aiohttp_client):
    client = await aiohttp_client(create_app(host.tracer, host.store, cors_origins=["https://ok.example"]))
    resp = await client.get(f"{V1}/traces", headers={"Origin": "https://ok.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://ok.example"
    resp = await client.get(f"{V1}/traces", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_token_guards_api_and_pages(host, aiohttp_client):
    client = await aiohttp_client(create_app(host.tracer, host.store, token="s3cret"))
    resp = await client.get(f"{V1}/traces")
    assert resp.status == 401 and "WWW-Authenticate" in resp.headers
    resp = await client.get(f"{V1}/traces", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401
    resp = await client.get(f"{V1}/traces", headers={"Authorization": "Bearer s3cret"})
    assert resp.status == 200
    resp = await client.get("/stats", allow_redirects=False)
    assert resp.status == 302 and "/login?next=" in resp.headers["Location"]
    assert (await client.get("/static/app.css")).status == 200  # the login page needs its CSS


async def test_login_sets_an_httponly_cookie_that_then_works(host, aiohttp_client):
    client = await aiohttp_client(create_app(host.tracer, host.store, token="s3cret"))
    resp = await client.post("/login", data={"token": "nope", "next": "/"}, allow_redirects=False)
    assert resp.status == 401
    resp = await client.post("/login", data={"token": "s3cret", "next": "//evil.example/"},
                             allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/"  # no open redirect
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "s3cret" not in cookie
    assert (await client.get(f"{V1}/traces")).status == 200  # the client kept the cookie


async def test_logout_revokes_the_session_and_sessions_expire(host, aiohttp_client):
    """Issue 17, item 13: the cookie was a fixed HMAC of the token, valid until the token changed."""
    app = create_app(host.tracer, host.store, token="s3cret")
    client = await aiohttp_client(app)
    resp = await client.post("/login", data={"token": "s3cret", "next": "/"}, allow_redirects=False)
    assert "Max-Age=43200" in resp.headers["Set-Cookie"]
    copied = {"Cookie": f"botrace_session={resp.cookies['botrace_session'].value}"}
    second = await aiohttp_client(create_app(host.tracer, host.store, token="s3cret"))
    assert (await client.get(f"{V1}/traces", headers=copied)).status == 200
    assert (await second.get(f"{V1}/traces", headers=copied)).status == 401  # another server's
    resp = await client.post("/logout", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/login"
    assert (await client.get(f"{V1}/traces", headers=copied)).status == 401  # the copy is dead too
    assert len(app[keys.SESSIONS]) == 0

    short = await aiohttp_client(create_app(host.tracer, host.store, token="s3cret", session_ttl_s=0.2))
    await short.post("/login", data={"token": "s3cret", "next": "/"}, allow_redirects=False)
    assert (await short.get(f"{V1}/traces")).status == 200
    await asyncio.sleep(0.3)
    assert (await short.get(f"{V1}/traces")).status == 401


async def _status(url: str, host_header: str, method: str = "GET") -> int:
    async with aiohttp.ClientSession() as session:
        kw = {"json": {"trace_enable": True}} if method == "PUT" else {}
        async with session.request(method, url, headers={"Host": host_header}, **kw) as resp:
            return resp.status


async def test_served_without_a_token_answers_only_to_loopback_host_names(host):
    """Issue 17, item 11: DNS rebinding. A page of attacker.example, its name pointed at
    127.0.0.1, could read every trace and flip the switch of a token-less server."""
    runner = await run_server(create_app(host.tracer, host.store), "127.0.0.1", 0)
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    try:
        for evil in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}",
                     f"localhost.attacker.example:{port}", "127.0.0.1:x"):
            assert await _status(f"{base}{V1}/config", evil) == 403, evil
            assert await _status(f"{base}{V1}/config", evil, "PUT") == 403, evil
            assert await _status(f"{base}/", evil) == 403, evil
        for good in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}",
                     "127.0.0.2", f"localhost.:{port}"):
            assert await _status(f"{base}{V1}/config", good) == 200, good
    finally:
        await runner.cleanup()
    # a token guards the page instead: a rebinding page cannot have the login cookie
    runner = await run_server(create_app(host.tracer, host.store, token="t"), "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}{V1}/config"
        assert await _status(url, "attacker.example") == 401
    finally:
        await runner.cleanup()


async def test_host_names_when_mounted_are_the_hosts_business_unless_listed(host, aiohttp_client):
    root = web.Application()
    root.add_subapp("/trace", create_app(host.tracer, host.store))
    client = await aiohttp_client(root)
    resp = await client.get(f"/trace{V1}/config", headers={"Host": "dashboard.example"})
    assert resp.status == 200
    # a host that wants the check lists its own names
    root = web.Application()
    root.add_subapp("/trace", create_app(host.tracer, host.store, allowed_hosts=["Dashboard.example"]))
    client = await aiohttp_client(root)
    assert (await client.get(f"/trace{V1}/config", headers={"Host": "dashboard.example:443"})).status == 200
    assert (await client.get(f"/trace{V1}/config", headers={"Host": "127.0.0.1"})).status == 200
    resp = await client.get(f"/trace{V1}/config", headers={"Host": "attacker.example"})
    assert resp.status == 403 and "allowed_hosts" in (await resp.json())["error"]


async def test_binding_beyond_loopback_needs_a_token(host):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    with pytest.raises(ValueError, match="token"):
        await run_server(create_app(None, host.store), "0.0.0.0", 0)
    runner = await run_server(create_app(None, host.store, token="t"), "0.0.0.0", 0)
    await runner.cleanup()


async def test_mounted_under_a_prefix_the_page_knows_its_base(host, aiohttp_client):
    root = web.Application()
    root.add_subapp("/trace", host.app)
    client = await aiohttp_client(root)
    html = await (await client.get("/trace/")).text()
    assert 'data-base="/trace/"' in html and 'src="/trace/static/js/app.js"' in html
    assert (await client.get("/trace/api/v1/health")).status == 200
    assert host.app[keys.HUB] is not None
