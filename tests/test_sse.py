"""The SSE stream over HTTP: the trace lifecycle, filters, heartbeats, slow readers, resume."""

from __future__ import annotations

import asyncio
import json
import threading

from botrace_webui import keys
from botrace_webui.api import API_PREFIX
from botrace_webui.livehub import LiveHub

try:
    from browser.harness import Host, wait_for_trace
except ImportError:  # pragma: no cover
    from tests.browser.harness import Host, wait_for_trace

STREAM = f"{API_PREFIX}/stream"


async def read_events(resp, until, timeout=5.0):
    """Parse SSE frames until ``until(event, events)`` is true; event = {"event", "data", "id"}."""
    events: list[dict] = []
    cur: dict = {}
    async with asyncio.timeout(timeout):
        while True:
            raw = await resp.content.readline()
            if not raw:
                return events
            line = raw.decode().rstrip("\n")
            if line == "":
                if "data" in cur:  # a frame without data (e.g. only "retry:") is no event
                    cur["json"] = json.loads(cur["data"])
                    events.append(cur)
                    if until(cur, events):
                        return events
                cur = {}
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            cur[key] = value[1:] if value.startswith(" ") else value


def _kind(name):
    return lambda e, _all: e.get("event") == name


async def test_stream_carries_a_trace_from_start_to_finish(host, client):
    resp = await client.get(STREAM)
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    hello = await read_events(resp, _kind("hello"))
    assert hello[-1]["json"]["resume"] == "none" and hello[-1]["json"]["live"] is True
    await host.chat("hello there", "u1", "s1")
    events = await read_events(resp, _kind("trace_finished"))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "trace_started" and kinds[-1] == "trace_finished"
    assert kinds.count("span_started") == kinds.count("span_finished") == 8  # the root is a span too
    assert events[0]["json"]["outline"] == "hello there"
    assert all(e["id"].startswith(host.app[keys.HUB].epoch) for e in events)
    # a span starts before its children and finishes after them
    names = [(e["event"], e["json"]["name"]) for e in events if e["event"].startswith("span")]
    assert names.index(("span_started", "ProcessStage")) < names.index(("span_started", "get_weather"))
    assert names.index(("span_finished", "get_weather")) < names.index(("span_finished", "ProcessStage"))


async def test_stream_filters_by_umo(host, client):
    resp = await client.get(STREAM, params={"umo": "demo:FriendMessage:wanted"})
    await read_events(resp, _kind("hello"))
    await host.chat("not this one", "u1", "other")
    await host.chat("this one", "u1", "wanted")
    events = await read_events(resp, _kind("trace_finished"))
    assert {e["json"]["trace_id"] for e in events} == {host.trace_ids[1]}


async def test_heartbeats_keep_a_quiet_stream_alive(host, client):
    host.app[keys.HUB].heartbeat_s = 0.05
    resp = await client.get(STREAM)
    events = await read_events(resp, lambda e, evs: sum(x["event"] == "heartbeat" for x in evs) >= 3)
    assert "t" in events[-1]["json"]


async def test_config_changes_reach_every_page(client):
    resp = await client.get(STREAM)
    await read_events(resp, _kind("hello"))
    await client.put(f"{API_PREFIX}/config", json={"trace_enable": False})
    events = await read_events(resp, _kind("config"))
    assert events[-1]["json"] == {"trace_enable": False}


async def test_slow_subscriber_is_told_what_it_lost_and_others_get_everything(tmp_path, aiohttp_client):
    host = await Host(str(tmp_path / "t.db"), step_s=0).open()
    hub = LiveHub(queue_size=5)
    from botrace_webui import create_app

    client = await aiohttp_client(create_app(host.tracer, host.store, hub=hub))
    host.tracer.register(hub)
    try:
        slow = await client.get(STREAM)
        await read_events(slow, _kind("hello"))
        # a burst of 40 events lands in one loop callback: more than a queue of 5 holds
        def burst():
            for i in range(40):
                hub.publish("span_finished", {"trace_id": "a" * 32, "i": i}, "a" * 32, None)

        t = threading.Thread(target=burst)
        t.start()
        t.join()
        events = await read_events(slow, lambda e, evs: e["event"] == "span_finished" and e["json"]["i"] == 39)
        lost = [e for e in events if e["event"] == "lost"]
        assert lost and lost[0]["json"]["count"] == 35
        assert [e["json"]["i"] for e in events if e["event"] == "span_finished"] == list(range(35, 40))
        # the stream goes on after the loss
        await host.chat("after", "u1", "s1")
        events = await read_events(slow, _kind("trace_finished"))
        assert events[-1]["json"]["outline"] == "after"
    finally:
        host.tracer.unregister(hub)
        await host.stop()


async def test_resume_with_last_event_id_replays_what_was_missed(host, client):
    resp = await client.get(STREAM)
    await read_events(resp, _kind("hello"))
    await host.chat("first", "u1", "s1")
    seen = await read_events(resp, _kind("trace_finished"))
    last_id = seen[-1]["id"]
    resp.close()
    await asyncio.sleep(0.05)
    await host.chat("while away", "u1", "s1")  # the page is disconnected now
    await host.tracer.aflush()
    await asyncio.sleep(0.05)
    resp = await client.get(STREAM, headers={"Last-Event-ID": last_id})
    events = await read_events(resp, _kind("hello"))
    hello = events[-1]["json"]
    assert hello["resume"] == "replayed" and hello["replayed"] == 18
    replayed = events[:-1]
    assert replayed[0]["event"] == "trace_started" and replayed[0]["json"]["outline"] == "while away"
    assert replayed[-1]["event"] == "trace_finished"
    # the query-string form (used when the page reconnects by itself) works the same
    resp2 = await client.get(STREAM, params={"last_event_id": last_id})
    assert (await read_events(resp2, _kind("hello")))[-1]["json"]["replayed"] == 18


async def test_resume_from_an_unknown_id_says_gap_so_the_page_reloads(client):
    resp = await client.get(STREAM, headers={"Last-Event-ID": "0badc0de-12"})
    hello = (await read_events(resp, _kind("hello")))[-1]["json"]
    assert hello["resume"] == "gap" and hello["replayed"] == 0


async def test_read_only_viewer_streams_what_another_writer_stores(host, aiohttp_client):
    from botrace_webui import create_app

    await host.chat("already there", "u1", "s1")  # before the viewer looked: not news
    await wait_for_trace(host.store, host.trace_ids[-1], host.tracer)
    app = create_app(tracer=None, store=host.store, poll_interval_s=0.05)
    app[keys.HUB].heartbeat_s = 0.05
    client = await aiohttp_client(app)
    resp = await client.get(STREAM)
    events = await read_events(resp, _kind("heartbeat"))
    assert events[0]["event"] == "hello" and events[0]["json"]["source"] == "store"
    await host.chat("written by the host", "u1", "s1")
    events = await read_events(resp, _kind("trace_finished"))
    outlines = [(e["event"], e["json"]["outline"]) for e in events if e["event"].startswith("trace")]
    assert outlines[-1] == ("trace_finished", "written by the host")
    assert ("trace_finished", "already there") not in outlines


async def test_read_only_viewer_shows_a_running_trace_span_by_span(host, aiohttp_client):
    """What another process writes grows on the viewer's stream span by span: spans still
    running are announced as started, finished ones as finished, then the trace."""
    from botrace_webui import create_app

    app = create_app(tracer=None, store=host.store, poll_interval_s=0.05)
    app[keys.HUB].heartbeat_s = 0.05
    client = await aiohttp_client(app)
    resp = await client.get(STREAM)
    await read_events(resp, _kind("heartbeat"))
    tracer = host.tracer

    async def written() -> None:
        await tracer.aflush()
        await host.store.flush()

    def spans(events):
        return [(e["event"], e["json"]["name"]) for e in events if e["event"].startswith("span")]

    with tracer.start_trace("message", {"user_id": "u9", "outline": "grows"}) as root:
        with tracer.span("Process", "pipeline_stage"):
            with tracer.span("lookup", "custom"):
                pass
            await written()
            first = await read_events(
                resp, lambda e, _: e["event"] == "span_finished" and e["json"]["name"] == "lookup")
            assert [e["json"]["trace_id"] for e in first if e["event"] == "trace_started"] \
                == [root.trace_id]
            assert spans(first) == [("span_started", "message"), ("span_started", "Process"),
                                    ("span_finished", "lookup")]
            lookup = first[-1]["json"]
            assert lookup["trace_id"] == root.trace_id and lookup["status"] == "ok"
            assert lookup["parent_id"] == next(
                e["json"]["span_id"] for e in first if e["json"].get("name") == "Process")
            with tracer.span("reply", "custom"):
                await written()
                second = await read_events(
                    resp, lambda e, _: e["event"] == "span_started" and e["json"]["name"] == "reply")
                assert spans(second) == [("span_started", "reply")]
    await written()
    last = await read_events(resp, _kind("trace_finished"))
    assert spans(last) == [("span_finished", "message"), ("span_finished", "Process"),
                           ("span_finished", "reply")]  # in start order
    assert last[-1]["json"]["trace_id"] == root.trace_id and last[-1]["json"]["status"] == "ok"


async def test_viewer_without_store_or_tracer_streams_heartbeats_only(aiohttp_client):
    from botrace_webui import create_app

    app = create_app()
    app[keys.HUB].heartbeat_s = 0.05
    client = await aiohttp_client(app)
    events = await read_events(await client.get(STREAM), _kind("heartbeat"))
    assert events[0]["json"]["live"] is False


async def test_closing_the_app_ends_open_streams(host, aiohttp_client):
    client = await aiohttp_client(host.app)
    resp = await client.get(STREAM)
    await read_events(resp, _kind("hello"))
    await asyncio.wait_for(client.close(), 5)  # does not hang on the open stream
