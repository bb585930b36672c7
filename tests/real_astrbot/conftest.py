"""Fixtures for the tests that run the real AstrBot from PyPI (marker ``astrbot``).

AstrBot never enters the test process: it lives in virtual environments of its own
(``astrbot_envs.py``) and runs one scenario per subprocess (``astrbot_runner.py``); the test process hosts
the fake model server (``fake_openai.py``) and reads the results.

- ``astrbot_env``: AstrBot 4.14.6 on Python 3.11 (created on first use, ~1-2 minutes);
- ``astrbot_env_py312``: the newest AstrBot 4.x on Python 3.12, skipped when no Python 3.12
  interpreter exists;
- ``fake_llm``: a started :class:`fake_openai.FakeOpenAI` with no rules;
- ``probe_plugin``: the folder of the probe plugin, for ``scenario["plugins"]``.

Creating an environment prints its progress live (pytest's capture is suspended for it),
because a silent two-minute pause looks like a hang.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from astrbot_envs import AstrBotEnv, find_python, py311_env, py312_env
from astrbot_runner import PROBE_PLUGIN
from fake_openai import FakeOpenAI


@contextlib.contextmanager
def _live_output(request: pytest.FixtureRequest) -> Iterator[None]:
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        yield


@pytest.fixture(scope="session")
def astrbot_env(request: pytest.FixtureRequest) -> AstrBotEnv:
    """``.venv-astrbot-py311/`` with astrbot 4.14.6, created or reused."""
    if find_python("3.11") is None:
        pytest.skip("no Python 3.11 interpreter for the AstrBot 4.14.6 environment")
    with _live_output(request):
        env = py311_env()
    assert env is not None
    return env


@pytest.fixture(scope="session")
def astrbot_env_py312(request: pytest.FixtureRequest) -> AstrBotEnv:
    """``.venv-astrbot-py312/`` with the newest astrbot 4.x, created or reused."""
    if find_python("3.12") is None:
        pytest.skip("no Python 3.12 interpreter (python3.12 on PATH or under "
                    "~/.pyenv/versions/3.12*/bin) for the newest AstrBot 4.x")
    with _live_output(request):
        env = py312_env()
    assert env is not None
    return env


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    """A running fake model server; script it with ``set_rules``."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def probe_plugin() -> Path:
    return PROBE_PLUGIN
