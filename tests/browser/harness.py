"""A small host for the web UI's tests: a real Tracer and TraceStore, the sub-app, and a chat.

The chat callable opens spans through the tracer the way a host pipeline would
(stages, a plugin handler, an LLM call, a tool call), pausing between them so a
page can watch the trace grow. Run it on its own to look at the page::

    python tests/browser/harness.py --port 8765 [--seed 200] [--big 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from typing import Any

from aiohttp import web

from botrace import PluginRef, Tracer
from botrace.store import TraceStore
from botrace_webui import create_app, run_server

WEATHER = PluginRef("weather", "Weather", "third_party", "1.2")
CORE = PluginRef("astrbot", "AstrBot core", "builtin", "4.0")


class Host:
    """Tracer + store + web app; ``await host.start()``, then ``host.url``."""

    def __init__(self, db_path: str, *, step_s: float = 0.15, chat: bool = True,
                 token: str | None = None, heartbeat_s: float | None = None) -> None:
        self.db_path = db_path
        self.step_s = step_s
        self.tracer = Tracer({"trace_enable": True, "trace_dispatch_interval_ms": 10},
                             load_entrypoints=False)
        self.store = TraceStore(db_path, self.tracer.settings)
        self.app = create_app(self.tracer, self.store, self.chat if chat else None, token=token)
        if heartbeat_s is not None:
            from botrace_webui import keys

            self.app[keys.HUB].heartbeat_s = heartbeat_s
        self.runner: web.AppRunner | None = None
        self.url = ""
        #: the trace id of every chat message (None when tracing was off)
        self.trace_ids: list[str | None] = []
        #: when set, a message waits here after its first LLM call (a test holds a trace open)
        self.gate: asyncio.Event | None = None

    async def open(self) -> Host:
        """Store and tracer running, no server (for ``aiohttp_client``)."""
        await self.store.open()
        self.tracer.register(self.store)
        await self.tracer.start()
        return self

    async def start(self, port: int = 0, prefix: str = "/trace") -> Host:
        await self.open()
        self.runner = await run_server(self.app, "127.0.0.1", port, prefix=prefix)
        sock_port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{sock_port}{prefix}/"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        await self.tracer.aclose()
        await self.store.close()

    async def chat(self, text: str, user_id: str, session: str) -> str:
        """What a host does with one message, traced."""
        step = self.step_s
        attrs = {"umo": f"demo:FriendMessage:{session}", "user_id": user_id, "sender": user_id,
                 "session_id": session, "outline": text, "platform": "demo", "agent_type": "tool_loop"}
        reply = f"It will be sunny. You said: {text}"
        root = self.tracer.start_trace("message", attrs)
        self.trace_ids.append(root.trace_id if root else None)
        with root:
            root.set_input(text=text)
            with self.tracer.span("WakingCheck", "pipeline_stage", plugin=CORE) as s:
                s.set_meta(stage="WakingCheck")
                await asyncio.sleep(step / 3)
            with self.tracer.span("ProcessStage", "pipeline_stage", plugin=CORE) as stage:
                stage.set_meta(stage="ProcessStage")
                with self.tracer.span("weather.on_message", "plugin_call", plugin=WEATHER) as handler:
                    handler.set_meta(handler_name="on_message", event_type="message")
                    handler.set_input(text=text)
                    await asyncio.sleep(step)
                    with self.tracer.span("llm gpt-4o", "llm_call") as llm:
                        llm.set_meta(model="gpt-4o", provider="openai", purpose="planning")
                        llm.set_input(messages=[{"role": "user", "content": text}])
                        await asyncio.sleep(step)
                        llm.set_usage(input_tokens=120, output_tokens=18)
                        llm.set_output(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
                    if self.gate is not None:
                        await self.gate.wait()
                    try:
                        with self.tracer.span("get_weather", "tool_call", plugin=WEATHER) as tool:
                            tool.set_meta(tool_name="get_weather")
                            tool.set_input(city="Paris")
                            await asyncio.sleep(step)
                            if "fail" in text:
                                raise LookupError("no forecast for Paris today")
                            tool.set_output(forecast="sunny", celsius=21)
                    except LookupError:
                        reply = "Sorry, the weather service failed."
                    with self.tracer.span("llm gpt-4o", "llm_call") as llm:
                        llm.set_meta(model="gpt-4o", provider="openai", purpose="synthesis")
                        await asyncio.sleep(step)
                        llm.set_usage(input_tokens=180, output_tokens=25)
                        llm.set_output(text=reply)
                    handler.set_output(reply=reply)
            with self.tracer.span("RespondStage", "pipeline_stage", plugin=CORE) as s:
                s.set_meta(stage="RespondStage")
                await asyncio.sleep(step / 3)
            root.set_output(reply=reply)
        return reply

    def big_trace(self, n_spans: int, outline: str = "a very long agent run") -> str:
        """A finished trace of ``n_spans`` spans (nested, fan-out), recorded through the tracer."""
        rnd = random.Random(7)
        root = self.tracer.start_trace("message", {"umo": "demo:FriendMessage:big", "user_id": "bench",
                                                   "session_id": "big", "outline": outline})
        made = 1
        with root:
            while made < n_spans:
                with self.tracer.span(f"step {made}", "pipeline_stage", plugin=CORE):
                    made += 1
                    for _ in range(min(8, n_spans - made)):
                        kind = rnd.choice(("llm_call", "tool_call", "io_call", "custom"))
                        with self.tracer.span(f"{kind} #{made}", kind, plugin=WEATHER) as s:
                            s.set_meta(model="gpt-4o") if kind == "llm_call" else None
                            made += 1
                            if made < n_spans and rnd.random() < 0.3:
                                with self.tracer.span(f"inner #{made}", "io_call"):
                                    made += 1
        return root.trace_id


async def wait_for_trace(store: TraceStore, trace_id: str, tracer: Tracer, timeout: float = 10.0) -> None:
    """Until the store can answer for ``trace_id`` as finished."""
    trace_id = getattr(trace_id, "trace_id", trace_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await tracer.aflush()
        await store.flush()
        doc = await store.get_trace(trace_id, flat=True)
        if doc is not None and doc["trace"]["status"] != "running":
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"trace {trace_id} never reached the store")


async def _main(args: Any) -> None:
    path = args.db or os.path.join(tempfile.mkdtemp(), "dev.db")
    host = await Host(path, step_s=args.step).start(args.port)
    for i in range(args.seed):
        await host.chat(f"message {i}: what's the weather in Paris?", f"user{i % 7}", f"s{i % 11}")
    if args.big:
        tid = host.big_trace(args.big)
        print("big trace:", tid)
    print("serving", host.url, "db", path, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await host.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--db")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--big", type=int, default=0)
    p.add_argument("--step", type=float, default=0.15)
    asyncio.run(_main(p.parse_args()))
