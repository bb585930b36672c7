"""The live hub: dispatcher-thread hand-off, bounded subscribers, replay for resume."""

from __future__ import annotations

import asyncio
import json
import threading

from botrace import PluginRef, Tracer
from botrace_webui.livehub import LiveHub


def _publish_from_thread(hub: LiveHub, n: int, *, umo: str = "u:1", plugin: str = "weather",
                         start: int = 0) -> None:
    def run() -> None:
        for i in range(start, start + n):
            hub.publish("span_finished", {"trace_id": "t" * 32, "i": i}, "t" * 32, umo, (plugin,))

    t = threading.Thread(target=run)
    t.start()
    t.join()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_events_from_another_thread_reach_subscribers_in_order_in_batches():
    hub = LiveHub()
    hub.bind(asyncio.get_running_loop())
    sub = hub.subscribe()
    _publish_from_thread(hub, 500)
    await _settle()
    events = await sub.next(timeout=1)
    assert [json.loads(e.data)["i"] for e in events] == list(range(500))
    # one loop callback per batch, not per event
    assert hub.batches_total < 10
    assert [e.seq for e in events] == list(range(1, 501))


async def test_slow_subscriber_loses_only_its_own_oldest_events_and_is_told():
    hub = LiveHub(queue_size=10)
    hub.bind(asyncio.get_running_loop())
    fast, slow = hub.subscribe(), hub.subscribe()
    got = []
    for round_ in range(100):
        _publish_from_thread(hub, 10, start=round_ * 10)
        await _settle()
        got += [json.loads(e.data)["i"] for e in await fast.next(timeout=0)]
    assert got == list(range(1000))  # the fast one missed nothing, only 10 at a time queued
    kept = [json.loads(e.data)["i"] for e in await slow.next(timeout=0)]
    assert kept == list(range(990, 1000))  # the newest survive
    assert slow.take_lost() == 990
    assert slow.take_lost() == 0  # told once


async def test_a_subscriber_that_never_reads_stays_bounded_and_does_not_block_publishers():
    hub = LiveHub(queue_size=100)
    hub.bind(asyncio.get_running_loop())
    stuck = hub.subscribe()
    _publish_from_thread(hub, 20_000)
    await _settle()
    assert len(stuck._queue) == 100
    assert stuck.lost_total == 19_900
    assert hub.stats()["lost_by_slow_subscribers"] == 19_900


async def test_filters_by_umo_and_plugin():
    hub = LiveHub()
    hub.bind(asyncio.get_running_loop())
    by_umo = hub.subscribe(umo="u:2")
    by_plugin = hub.subscribe(plugin="search")
    _publish_from_thread(hub, 3, umo="u:1", plugin="weather")
    _publish_from_thread(hub, 2, umo="u:2", plugin="search", start=3)
    await _settle()
    assert [json.loads(e.data)["i"] for e in await by_umo.next(timeout=0)] == [3, 4]
    assert [json.loads(e.data)["i"] for e in await by_plugin.next(timeout=0)] == [3, 4]


async def test_replay_since_an_id_in_the_buffer_and_gap_otherwise():
    hub = LiveHub(replay_size=100)
    hub.bind(asyncio.get_running_loop())
    hub.subscribe().close()  # a page was watching and went away: it may come back
    _publish_from_thread(hub, 150)
    await _settle()
    sub = hub.subscribe()
    replay = hub.replay_since(hub.event_id(140), sub)
    assert [json.loads(e.data)["i"] for e in replay] == list(range(140, 150))
    assert hub.replay_since(hub.event_id(150), sub) == []
    assert hub.replay_since(hub.event_id(10), sub) is None  # fell out of the buffer
    assert hub.replay_since("deadbeef-140", sub) is None  # another process's id
    assert hub.replay_since("garbage", sub) is None
    assert hub.replay_since(hub.event_id(999), sub) is None  # from the future


async def test_without_a_loop_events_are_counted_not_kept():
    hub = LiveHub()
    hub.publish("trace_started", {"trace_id": "a"}, "a", None)
    assert hub.dropped_unbound == 1


async def test_registered_on_a_tracer_it_streams_a_whole_trace():
    tracer = Tracer({"trace_enable": True, "trace_dispatch_interval_ms": 5}, load_entrypoints=False)
    hub = LiveHub()
    hub.bind(asyncio.get_running_loop())
    tracer.register(hub)
    await tracer.start()
    sub = hub.subscribe()
    weather = PluginRef("weather", "Weather", "third_party")
    try:
        with tracer.start_trace("message", {"umo": "u:1", "outline": "hi"}):
            with tracer.span("ProcessStage", "pipeline_stage"):
                with tracer.span("get_weather", "tool_call", plugin=weather) as s:
                    s.set_input(city="Paris")
        await tracer.aflush()
        await _settle()
        events = await sub.next(timeout=2)
    finally:
        await tracer.aclose()
    kinds = [e.kind for e in events]
    assert kinds == ["trace_started", "span_started", "span_started", "span_started",
                     "span_finished", "span_finished", "span_finished", "trace_finished"]
    tool = json.loads(events[4].data)
    assert tool["name"] == "get_weather" and tool["input"] == {"city": "Paris"}
    assert tool["plugin"]["name"] == "weather"
    assert events[4].umo == "u:1" and events[4].plugins == {"weather"}
    assert json.loads(events[-1].data)["outline"] == "hi"


async def test_nobody_watching_costs_nothing_and_a_later_resume_is_a_gap():
    hub = LiveHub(idle_keep_s=0.0)
    hub.bind(asyncio.get_running_loop())
    sub = hub.subscribe()
    _publish_from_thread(hub, 5)
    await _settle()
    last_id = hub.event_id((await sub.next(timeout=0))[-1].seq)
    sub.close()  # the page goes away; nobody watches
    _publish_from_thread(hub, 100, start=5)
    assert hub.skipped_idle == 100 and hub.last_seq == 5  # not even serialised
    again = hub.subscribe()
    assert hub.replay_since(last_id, again) is None  # they happened: reload, do not trust the replay
    _publish_from_thread(hub, 3, start=105)
    await _settle()
    assert [json.loads(e.data)["i"] for e in await again.next(timeout=0)] == [105, 106, 107]
    assert hub.replay_since(last_id, again) is None  # still a gap once the hole is numbered
    assert hub.replay_since(hub.event_id(hub.last_seq - 1), again) is not None


async def test_a_switch_from_anywhere_is_announced_to_open_pages():
    """The page's switch and the host's (AstrBot's Trace switch, followed by its adapter,
    from the loop or another thread) both reach every open page as a config event."""
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    hub = LiveHub()
    hub.bind(asyncio.get_running_loop())
    tracer.register(hub)
    sub = hub.subscribe()
    try:
        tracer.set_enabled(False)                       # on the loop
        thread = threading.Thread(target=tracer.set_enabled, args=(True,))
        thread.start()
        thread.join()                                   # from another thread
        tracer.set_enabled(True)                        # no change: nothing to announce
        await _settle()
        events = await sub.next(timeout=1)
        assert [(e.kind, json.loads(e.data)) for e in events] == [
            ("config", {"trace_enable": False}), ("config", {"trace_enable": True})]
    finally:
        tracer.close()


async def test_a_hub_nobody_has_watched_yet_does_not_serialise_events():
    """A host starting with no page open pays nothing for the stream from the start: no page
    can resume from an event it never received."""
    hub = LiveHub()
    hub.bind(asyncio.get_running_loop())
    _publish_from_thread(hub, 10)
    await _settle()
    assert hub.skipped_idle == 10 and hub.events_total == 0
    sub = hub.subscribe()  # a page opens: from now on it gets every event
    _publish_from_thread(hub, 3)
    await _settle()
    assert [json.loads(e.data)["i"] for e in await sub.next(timeout=1)] == [0, 1, 2]
