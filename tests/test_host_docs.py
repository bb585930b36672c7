"""The Python examples in docs/HOST.md run as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "HOST.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_host_md_has_the_examples():
    assert len(blocks()) == 2


async def test_connecting_another_host_example_runs(tmp_path):
    ns: dict = {}
    exec(compile(blocks()[1], "HOST.md", "exec"), ns)
    await ns["main"](str(tmp_path))


async def test_plugin_example_loads_and_traces_in_the_reference_host(tmp_path, monkeypatch):
    pkg = tmp_path / "docplugs" / "hello"
    pkg.mkdir(parents=True)
    (tmp_path / "docplugs" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text(blocks()[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    from botrace_host_adapter.refhost.testing import TracedHost, running_host

    try:
        async with running_host(tmp_path, plugins={"docplugs.hello.main": False}) as th:
            event, trace = await th.send("/hello", user="Ann")
    finally:
        for name in [n for n in sys.modules if n.startswith("docplugs")]:
            del sys.modules[name]
    assert event.replies == ["Hello, Ann!"]
    handler = TracedHost.one(trace, name="Hello.hello")
    assert handler.plugin.name == "hello"
    lookup = TracedHost.one(trace, name="plugin.hello.lookup")
    assert lookup.parent_id == handler.span_id and lookup.plugin.name == "hello"
    assert TracedHost.one(trace, name="GET greetings").parent_id == lookup.span_id
