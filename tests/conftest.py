"""Fixtures shared by the core's tests."""

from __future__ import annotations

import pytest

from botrace import Tracer
from botrace.testing import InMemorySink

try:
    from browser.harness import Host
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.browser.harness import Host


@pytest.fixture
def sink() -> InMemorySink:
    return InMemorySink()


@pytest.fixture
def tracer(sink: InMemorySink):
    """An enabled tracer with an in-memory sink, no entry points, closed afterwards."""
    t = Tracer({"trace_enable": True}, load_entrypoints=False)
    t.register(sink, name="memory")
    yield t
    t.close()


@pytest.fixture
async def host(tmp_path):
    """The web app over a real tracer, reference host and store (tests/browser/harness.py)."""
    h = await Host(str(tmp_path / "traces.db"), step_s=0).open()
    yield h
    await h.stop()


@pytest.fixture
async def client(host, aiohttp_client):
    """An aiohttp test client of ``host``'s app."""
    return await aiohttp_client(host.app)
