"""``GET /api/v1/health``'s verdict (issue 17, item 15): degraded while a sink says so or is
losing data, ok again once the losses stop (webui/health.py)."""

from __future__ import annotations

import time

from botrace import hookimpl
from botrace_webui.health import LossWatch, assess

V1 = "/api/v1"
MIN_NS = 60 * 10**9


class LosingExporter:
    """An OTLP exporter whose receiver is gone: every span it gets is dropped."""

    def __init__(self) -> None:
        self.dropped = 0

    @hookimpl
    def botrace_health(self, tracer):
        return {"name": "otlp", "url": "http://collector:4318/v1/traces", "queue_depth": 0,
                "queue_max": 2048, "exported": 0, "dropped": self.dropped,
                "failed_batches": self.dropped // 10,
                "last_error": "ConnectionRefusedError: [Errno 111] Connection refused"}


async def test_health_is_degraded_while_an_exporter_loses_everything(host, client):
    exporter = LosingExporter()
    host.tracer.register(exporter, name="test-otlp")
    doc = await (await client.get(f"{V1}/health")).json()
    assert doc["status"] == "ok" and doc["problems"] == []
    exporter.dropped = 120  # 100 % loss: nothing exported, state not even reported
    doc = await (await client.get(f"{V1}/health")).json()
    assert doc["status"] == "degraded"
    assert {p["part"] for p in doc["problems"]} == {"otlp"}
    assert any("dropped: 120" in p["problem"] and "ConnectionRefusedError" in p["problem"]
               for p in doc["problems"])
    doc = await (await client.get(f"{V1}/health")).json()  # not growing since, but lately
    assert doc["status"] == "degraded"


async def test_a_sink_that_says_it_is_degraded_makes_health_degraded(host, client):
    class Adapter:
        @hookimpl
        def botrace_health(self, tracer):
            return {"name": "astrbot adapter", "state": "degraded", "wrapped": ["stages"],
                    "unavailable": {"tool calls": "FunctionToolExecutor.execute not found"}}

    host.tracer.register(Adapter(), name="test-adapter")
    doc = await (await client.get(f"{V1}/health")).json()
    assert doc["status"] == "degraded"
    assert doc["problems"] == [{"part": "astrbot adapter", "problem": "not traced: tool calls"}]


def test_losses_count_while_they_grow_and_for_a_window_after():
    watch = LossWatch(window_s=300)
    now = 10**18

    def doc(dropped, errors=0, last_error_ns=None):
        sink = {"name": "otlp", "dropped": dropped, "failed_batches": errors, "retries": 50}
        if last_error_ns:
            sink["last_error_ns"] = last_error_ns
        return {"tracer": {"dropped_events": 0, "sink_errors": {}, "sinks": [sink]},
                "store": {"state": "ok", "dropped": 0, "write_errors": 0}}

    assert assess(doc(0), watch, now) == []
    assert [p["problem"] for p in assess(doc(5), watch, now + MIN_NS)] == ["dropped: 5 in the last 5 min"]
    assert assess(doc(8), watch, now + 2 * MIN_NS)[0]["problem"] == "dropped: 8 in the last 5 min"
    assert assess(doc(8), watch, now + 6 * MIN_NS) != []  # 4 min after the last growth
    assert assess(doc(8), watch, now + 8 * MIN_NS) == []  # quiet for 6 min: history
    assert assess(doc(9), watch, now + 9 * MIN_NS)[0]["problem"] == "dropped: 1 in the last 5 min"
    # retries are not losses; a counter that starts again from zero (a restart) is no loss
    assert assess(doc(0), LossWatch(), now) == []
    # a first look dates old losses by the last error when the sink reports one
    fresh = LossWatch()
    assert assess(doc(3, last_error_ns=now - 3600 * 10**9), fresh, now) == []
    assert assess(doc(3, errors=1), LossWatch(), now) != []  # undated: counted at the first look


def test_tracer_drops_and_sink_errors_count_and_a_broken_part_is_reported():
    watch = LossWatch()
    now = time.time_ns()
    doc = {"tracer": {"dropped_events": 0, "sink_errors": {"zipkin": 0}, "sinks": []}}
    assert assess(doc, watch, now) == []
    doc["tracer"]["sink_errors"]["zipkin"] = 4
    doc["tracer"]["dropped_events"] = 10
    parts = {p["part"] for p in assess(doc, watch, now + 1)}
    assert parts == {"tracer", "zipkin"}
    assert assess({"store": {"error": "RuntimeError('x')"}}, watch, now)[0]["part"] == "store"
    assert assess({"store": {"state": "read_only", "dropped": 0}}, watch, now) == []
