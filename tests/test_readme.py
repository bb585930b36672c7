"""The README's Python samples are real code: run them, in order, as a reader would."""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from botrace import Tracer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1)
    commands = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].endswith("botrace demo")
    assert commands[1].endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci, ".ci/run must run exactly the README's test command"


def test_readme_python_samples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    blocks = python_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)]
    assert tests
    for fn in tests:
        result = fn()
        if inspect.isawaitable(result):
            asyncio.run(result)

    async def dashboard() -> None:
        tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
        app = await namespace["build_dashboard"](tracer)
        assert any(r.resource and r.resource.canonical.startswith("/trace")
                   for r in app.router.routes())
        store = next(p for p in tracer.pm.get_plugins() if type(p).__name__ == "TraceStore")
        await tracer.aclose()
        await store.close()

    asyncio.run(dashboard())
    assert (tmp_path / "data" / "botrace.db").exists()


def test_botrace_command_lists_core_and_plugin_subcommands():
    out = subprocess.run([sys.executable, "-m", "botrace", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("demo", "serve", "prune", "stats", "export", "hooks"):
        assert command in out, out


@pytest.mark.parametrize("argv", [["hooks"]])
def test_botrace_hooks_command_runs(argv):
    out = subprocess.run([sys.executable, "-m", "botrace", *argv], capture_output=True,
                         text=True, check=True).stdout
    assert "botrace_trace_message: botrace.core" in out
