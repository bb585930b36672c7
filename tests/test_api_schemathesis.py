"""Schemathesis against the served OpenAPI description: no input is a 500, and a request
the description calls valid is never rejected (issue 17, item 10).

The app runs for real (tracer, store, chat) on a loopback port in a thread of its own; every
operation but the endless live stream gets a bounded number of generated requests, valid
and invalid ones, plus schemathesis' boundary values (2**63, ``1e13``, …).

The operations are collected from the description of an app with the same routes (pytest
parametrizes at collection time, before any server runs); a first test checks that the
served description is that one.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import requests

from botrace_webui import create_app
from botrace_webui.openapi import build_openapi

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    status_code_conformance,
)

try:
    from browser.harness import Host, wait_for_trace
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.browser.harness import Host, wait_for_trace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The base URL of a running app with a few traces in its store."""
    loop = asyncio.new_event_loop()
    started: dict = {}
    ready = threading.Event()

    async def start() -> None:
        host = await Host(str(tmp_path_factory.mktemp("openapi") / "t.db"), step_s=0).start()
        for i in range(3):
            await host.chat(f"message {i}", f"user{i}", "s1")
        await wait_for_trace(host.store, host.trace_ids[-1], host.tracer)
        started["host"] = host

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        finally:
            ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="openapi-server", daemon=True)
    thread.start()
    assert ready.wait(60) and "host" in started, "the app did not start"
    host = started["host"]
    yield host.url.rstrip("/")
    asyncio.run_coroutine_threadsafe(host.stop(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _description() -> dict:
    """What an app with a tracer, a store and a chat describes (the harness' app)."""
    return build_openapi(create_app(object(), object(), chat=lambda *a: None))


schema = schemathesis.openapi.from_dict(_description()).exclude(
    path="/api/v1/stream")  # endless by design: tests/test_sse.py


def test_the_served_description_is_the_one_tested(served):
    assert requests.get(f"{served}/api/v1/openapi.json", timeout=10).json() == _description()


@schemathesis.check
def valid_requests_are_accepted(ctx, response, case):
    """schemathesis' positive_data_acceptance, but for the opaque ``cursor``: the description
    can say what a cursor looks like, not which ones the API handed out."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    if (response.json() or {}).get("param") == "cursor":
        return None
    raise AssertionError(f"a request valid by the OpenAPI description was rejected: "
                         f"{response.status_code} {response.text}")


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_served_openapi_holds_for_generated_requests(case, served):
    case.call_and_validate(base_url=served, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        valid_requests_are_accepted], timeout=10)
