"""Fixtures shared by the core's tests."""

from __future__ import annotations

import pytest

from botrace import Tracer
from botrace.testing import InMemorySink


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
