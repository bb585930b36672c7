"""``botrace demo`` end to end, in a subprocess, as an operator runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def run_demo(tmp_path, *args: str, timeout: float = 90,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "botrace", "demo", "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def test_demo_with_n_messages_exits_cleanly_with_n_traces_in_the_store(tmp_path):
    proc = run_demo(tmp_path, "--messages", "40", "--port", "0", "--concurrency", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "botrace demo: open http://127.0.0.1:" in out
    assert "sent 40 messages (0 failed)" in out
    assert "40 traces recorded" in out

    from botrace.store import TraceStore

    async def read_store():
        store = TraceStore(str(tmp_path / "data" / "botrace.db"), read_only=True)
        await store.open()
        try:
            page = await store.list_traces(limit=500)
            kinds = set()
            for summary in page["traces"]:
                doc = await store.get_trace(summary["trace_id"], flat=True)
                kinds.update(s["span_type"] for s in doc["spans"])
            return page, kinds
        finally:
            await store.close()

    page, kinds = asyncio.run(read_store())
    assert page["total"] == 40
    assert all(t["status"] in ("ok", "error") for t in page["traces"])
    assert {"message", "pipeline_stage", "plugin_call", "llm_call", "tool_call",
            "subagent_call", "io_call"} <= kinds
    config = json.loads((tmp_path / "data" / "refhost_config.json").read_text())
    assert config["trace_enable"] is True


def start_demo(tmp_path, *args: str) -> tuple[subprocess.Popen, str]:
    """A demo serving its page; returns the process and the address it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "botrace", "demo", "--data-dir", str(tmp_path / "data"),
         "--port", "0", "--latency-ms", "5", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if "open http://" in line:
            return proc, line.split("open ", 1)[1].strip()
    proc.kill()
    raise AssertionError(proc.stderr.read())


def test_demo_serves_the_page_and_chat_and_stops_cleanly_on_sigint(tmp_path):
    proc, url = start_demo(tmp_path, "--interval", "0.2")
    try:
        req = urllib.request.Request(url + "api/v1/chat", method="POST",
                                     data=json.dumps({"text": "/weather Lima", "user_id": "t",
                                                      "session": "t"}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=20) as resp:
            body = json.loads(resp.read())
        assert body["reply"].startswith("Lima:") and len(body["trace_id"]) == 32
        with urllib.request.urlopen(url, timeout=20) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "traces recorded" in rest


def test_demo_refuses_a_network_address_without_a_token(tmp_path):
    proc = run_demo(tmp_path, "--messages", "1", "--host", "0.0.0.0", "--port", "0",
                    env={"BOTRACE_TOKEN": ""})
    assert proc.returncode != 0
    assert "refusing to serve on 0.0.0.0 without a token" in proc.stderr
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_demo_on_a_network_address_with_a_token_asks_for_it(tmp_path):
    proc, url = start_demo(tmp_path, "--host", "0.0.0.0", "--token", "s3cret-demo",
                           "--interval", "0.5")
    try:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        api = f"http://127.0.0.1:{port}/api/v1/health"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(api, timeout=20)
        assert refused.value.code == 401
        req = urllib.request.Request(api, headers={"Authorization": "Bearer s3cret-demo"})
        with urllib.request.urlopen(req, timeout=20) as resp:
            assert resp.status == 200 and "queue_depth" in json.loads(resp.read())["store"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]


_SECOND_CTRL_C = """
import asyncio, sys
import aiosqlite
import botrace_host_adapter.demo as demo

readers = []

async def shutting_down(args):
    readers.append(await aiosqlite.connect(":memory:"))  # its thread is not a daemon
    raise KeyboardInterrupt  # the second Ctrl-C, in the middle of shutting down

demo.run_demo = shutting_down
sys.exit(demo.main(None))
"""


def test_a_second_ctrl_c_during_shutdown_exits_at_once():
    # without the abort, the interpreter would wait at exit for the open reader thread
    done = subprocess.run([sys.executable, "-c", _SECOND_CTRL_C], capture_output=True,
                          text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 130
    assert "botrace demo: interrupted" in done.stderr
