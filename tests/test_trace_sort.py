"""Sorted trace lists (duration, tokens, cost, time) page with a cursor through every
matching trace once, ties newest first; and the latency points of the list's filters."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from storeutil import fed_store

from botrace.config import Settings
from botrace.query import QueryError
from botrace.store import TraceStore
from botrace.store.synthetic import synthetic_traces

PRICES = {"gpt-4o": {"input": 2.5, "cached_input": 1.25, "output": 10.0},
          "claude-sonnet-4": {"input": 3.0, "output": 15.0}}


@pytest.fixture(scope="module")
def generated() -> list:
    return list(synthetic_traces(160, spans=12, users=6, sessions=20, error_rate=0.2, seed=11))


@pytest.fixture
async def store(tmp_path: Path, generated):
    settings = Settings.from_mapping({"trace_price_table": PRICES, "trace_retention_days": 0})
    async with fed_store(tmp_path / "s.db", settings, generated) as s:
        yield s


def key_of(sort: str, t: dict):
    k = sort.lstrip("-")
    if k == "time":
        return t["start_ns"]
    if k == "duration":
        return -1 if t["duration_ns"] is None else t["duration_ns"]
    if k == "tokens":
        return t["input_tokens"] + t["output_tokens"]
    return t["cost_usd"]


def expected(summaries: list[dict], sort: str) -> list[str]:
    # ties newest first, whichever way the key runs
    rows = sorted(summaries, key=lambda t: (t["start_ns"], t["trace_id"]), reverse=True)
    rows.sort(key=lambda t: key_of(sort, t), reverse=sort.startswith("-"))
    return [t["trace_id"] for t in rows]


async def pages(store: TraceStore, sort: str, limit: int, filters=None) -> list[str]:
    ids, cursor = [], None
    while True:
        page = await store.list_traces(filters or {}, limit=limit, cursor=cursor, sort=sort)
        ids += [t["trace_id"] for t in page["traces"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
        assert len(page["traces"]) == limit


@pytest.mark.parametrize("sort", ["duration", "-duration", "tokens", "-tokens", "cost", "-cost",
                                  "time", "-time"])
async def test_sorted_pages_hold_every_trace_once_in_order(store, sort) -> None:
    everything = (await store.list_traces({}, limit=500))["traces"]
    assert len(everything) == 160
    want = expected(everything, sort)
    got = await pages(store, sort, 7)
    assert got == want
    assert len(set(got)) == 160
    # the order is the one asked for, not the default one
    if sort != "-time":
        assert got != expected(everything, "-time")


async def test_equal_keys_across_a_page_boundary_are_neither_lost_nor_repeated(store) -> None:
    everything = (await store.list_traces({}, limit=500))["traces"]
    costs = [t["cost_usd"] for t in everything]
    tied = max(set(costs), key=costs.count)
    assert costs.count(tied) >= 5, "the data must hold a run of equal costs for this test"
    for limit in (2, 3, 5):
        assert await pages(store, "cost", limit) == expected(everything, "cost")
        assert await pages(store, "-cost", limit) == expected(everything, "-cost")


async def test_sort_with_a_filter_sorts_only_the_matches(store) -> None:
    everything = (await store.list_traces({}, limit=500))["traces"]
    errors = [t for t in everything if t["status"] == "error"]
    assert errors
    got = await pages(store, "-duration", 4, {"status": "error"})
    assert got == expected(errors, "-duration")


def _cursor(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(("sort", "cursor", "param"), [
    ("longest", None, "sort"),
    ("duration; DROP TABLE traces", None, "sort"),
    ("duration", _cursor([123, "a" * 32]), "cursor"),            # the default order's cursor
    ("duration", _cursor(["-duration", "5", 1, "a" * 32]), "cursor"),  # another sort's
    ("cost", _cursor(["cost", "nan", 1, "a" * 32]), "cursor"),
    ("tokens", _cursor(["tokens", "x", 1, "a" * 32]), "cursor"),
])
async def test_bad_sort_or_cursor_raises_naming_the_parameter(store, sort, cursor, param) -> None:
    with pytest.raises(QueryError) as err:
        await store.list_traces({}, limit=5, cursor=cursor, sort=sort)
    assert err.value.param == param


async def test_latency_points_are_the_newest_finished_matches(store) -> None:
    everything = (await store.list_traces({}, limit=500))["traces"]
    doc = await store.trace_points({"status": "error"}, limit=10)
    want = [t for t in everything if t["status"] == "error"][:10]
    assert [p["trace_id"] for p in doc["points"]] == [t["trace_id"] for t in want]
    assert [p["duration_ns"] for p in doc["points"]] == [t["duration_ns"] for t in want]
    assert {p["status"] for p in doc["points"]} == {"error"}
    assert doc["more"] is (len([t for t in everything if t["status"] == "error"]) > 10)
    with pytest.raises(QueryError) as err:
        await store.trace_points({}, limit=5000)
    assert err.value.param == "limit"


# -- over the API ------------------------------------------------------------------------

try:
    from browser.harness import wait_for_trace
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.browser.harness import wait_for_trace

V1 = "/api/v1"


async def test_api_sort_pages_and_400s(host, client) -> None:
    ids = []
    for i in range(5):
        await host.chat(f"/roll {i}" if i % 2 else f"hello {i}", "u1", "s1")
        ids.append(host.trace_ids[-1])
        await wait_for_trace(host.store, ids[-1], host.tracer)
    everything = (await (await client.get(f"{V1}/traces", params={"limit": "50"})).json())["traces"]
    for sort in ("-duration", "tokens"):
        got, cursor = [], None
        while True:
            params = {"limit": "2", "sort": sort} | ({"cursor": cursor} if cursor else {})
            resp = await client.get(f"{V1}/traces", params=params)
            assert resp.status == 200
            page = await resp.json()
            got += [t["trace_id"] for t in page["traces"]]
            assert page["total"] == len(everything)
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert got == expected(everything, sort)
    for bad in ("longest", "DURATION", "-", "duration,cost"):
        resp = await client.get(f"{V1}/traces", params={"sort": bad})
        assert resp.status == 400, bad
        assert (await resp.json())["param"] == "sort"
    # a cursor of the default order used with a sort names the cursor
    first = await (await client.get(f"{V1}/traces", params={"limit": "1"})).json()
    resp = await client.get(f"{V1}/traces", params={"sort": "cost", "cursor": first["next_cursor"]})
    assert resp.status == 400 and (await resp.json())["param"] == "cursor"
    spec = await (await client.get(f"{V1}/openapi.json")).json()
    sort = next(p for p in spec["paths"][f"{V1}/traces"]["get"]["parameters"] if p["name"] == "sort")
    assert set(sort["schema"]["enum"]) >= {"duration", "-duration", "tokens", "cost", "time"}

    resp = await client.get(f"{V1}/latency", params={"user_id": "u1", "limit": "3"})
    assert resp.status == 200
    doc = await resp.json()
    assert [p["trace_id"] for p in doc["points"]] == list(reversed(ids))[:3] and doc["more"] is True
    for bad in ({"limit": "0"}, {"limit": "2001"}, {"status": "nope"}):
        resp = await client.get(f"{V1}/latency", params=bad)
        assert resp.status == 400 and (await resp.json())["param"] == next(iter(bad))
