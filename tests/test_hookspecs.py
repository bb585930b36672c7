"""Every hook is documented and has a test of its own (as Datasette enforces)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from botrace import hookspecs

HOOKS = sorted(name for name, obj in vars(hookspecs).items()
               if name.startswith("botrace_") and inspect.isfunction(obj))
TESTS = Path(__file__).parent


def test_there_are_hooks():
    assert len(HOOKS) >= 15


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc) > 80, f"{hook} needs a docstring saying when it is called and what it may return"
    assert "called" in doc.lower(), f"{hook}: say when it is called"
    assert "return" in doc.lower(), f"{hook}: say what it may return (or that it is ignored)"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test_of_its_own(hook):
    wanted = f"def test_hook_{hook.removeprefix('botrace_')}"
    found = any(re.search(rf"{wanted}\b", path.read_text(encoding="utf-8"))
                for path in TESTS.rglob("test_*.py"))
    assert found, f"no test named {wanted[4:]} for hook {hook}"
