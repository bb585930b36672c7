"""``botrace demo``: the reference host, its example plugins, tracing on, and the web page.

Runs, on a fresh machine with no network and no API key:

1. the reference host (config in ``<data-dir>/refhost_config.json``) with the
   example plugins and the scripted offline provider (or a real
   OpenAI-compatible model with ``--provider openai``);
2. a tracer with the host's settings, the SQLite store
   (``<data-dir>/botrace.db``) when available, and the web page on
   ``http://127.0.0.1:<port>/`` with a chat box talking to the host;
3. a synthetic conversation driver (``--messages N``; forever without it).

Ctrl-C (or SIGTERM) stops the driver, lets running messages finish, flushes
every span to the sinks and closes everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from botrace.hookspecs import hookimpl
from botrace_host_adapter.refhost.driver import ConversationDriver
from botrace_host_adapter.refhost.event import MessageEvent
from botrace_host_adapter.refhost.host import RefHost
from botrace_host_adapter.refhost.providers.openai_compat import OpenAICompatProvider
from botrace_host_adapter.refhost.tracing import connect, disconnect

__all__ = ["add_arguments", "chat_function", "run_demo"]

log = logging.getLogger("botrace.demo")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int, default=None, metavar="N",
                   help="send N synthetic messages, then exit (default: keep sending until Ctrl-C)")
    p.add_argument("--stay", action="store_true",
                   help="with --messages: keep serving the page after the last message")
    p.add_argument("--host", default="127.0.0.1", help="address to serve the page on")
    p.add_argument("--port", type=int, default=8765, help="port of the page (0: any free port)")
    p.add_argument("--token", default=None,
                   help="require this bearer token or a login on the page (needed for a "
                        "non-loopback --host; default: $BOTRACE_TOKEN)")
    p.add_argument("--no-web", action="store_true", help="do not serve the page")
    p.add_argument("--data-dir", default="./data", help="host config, trace database, plugin data")
    p.add_argument("--concurrency", type=int, default=4, help="messages in flight at once")
    p.add_argument("--interval", type=float, default=None, metavar="SECONDS",
                   help="pause between messages (default: 0 with --messages, else 1.5)")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic conversations")
    p.add_argument("--provider", choices=("scripted", "openai"), default="scripted")
    p.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", ""),
                   help="OpenAI-compatible API base URL, e.g. https://api.openai.com/v1")
    p.add_argument("--model", default=None, help="model name (scripted: scripted-1)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (never passed on the command line)")
    p.add_argument("--latency-ms", type=float, default=None,
                   help="scripted provider latency per call (default 250, 0 with --messages)")
    p.add_argument("--stream", action="store_true", help="streaming replies (the agent runs in Respond)")
    p.add_argument("--no-trace", action="store_true", help="start with trace_enable off")


def chat_function(host: RefHost) -> Any:
    """``async (text, user_id, session) -> {"reply", "trace_id"}`` for the page's chat box."""

    async def chat(text: str, user_id: str, session: str) -> dict[str, Any]:
        event = MessageEvent.create(text, user_id=user_id, session_id=session, platform="webchat")
        await host.handle_event(event)
        return {"reply": "\n".join(event.replies), "trace_id": event.extras.get("trace_id")}

    return chat


class _Counter:
    """Counts finished traces (what the demo reports at exit)."""

    def __init__(self) -> None:
        self.traces = 0
        self.errors = 0

    @hookimpl
    def botrace_trace_finished(self, trace: Any) -> None:
        self.traces += 1
        if trace.status == "error":
            self.errors += 1


def _host_config(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": args.provider}
    if args.provider == "scripted":
        latency = args.latency_ms if args.latency_ms is not None else (
            0.0 if args.messages is not None else 250.0)
        provider.update(model=args.model or "scripted-1", latency_ms=latency,
                        ttft_ms=latency / 3)
    else:
        if not args.base_url or not args.model:
            raise SystemExit("botrace demo: --provider openai needs --base-url and --model")
        # The key stays in the environment: it is given to the provider, never written to disk.
        provider.update(base_url=args.base_url, model=args.model)
    return {
        "trace_enable": not args.no_trace,
        "trace_db_path": str(data_dir / "botrace.db"),
        "provider": provider,
        "streaming_response": bool(args.stream),
        "rate_limit": {"count": 1000, "window_s": 60, "strategy": "discard"},
        "agent": {"max_steps": 6, "tool_timeout_s": 2.0, "history_messages": 12,
                  "system_prompt": "You are a helpful assistant in a group chat. "
                                   "Use tools when useful."},
        "example_io_latency_ms": 0 if args.messages is not None else 40,
    }


async def _open_store(path: Path) -> Any:
    try:
        from botrace.store import TraceStore
    except ImportError:
        return None
    store = TraceStore(str(path))
    await store.open()
    return store


async def _serve(args: argparse.Namespace, tracer: Any, store: Any, host: RefHost) -> Any:
    try:
        import botrace_webui as webui
    except ImportError:
        webui = None
    token = _token(args)
    if webui is not None:
        app = webui.create_app(tracer=tracer, store=store, chat=chat_function(host),
                               title="botrace demo", token=token)
        runner = await webui.run_server(app, args.host, args.port)
    else:
        from aiohttp import web

        from botrace_host_adapter.placeholder import create_placeholder_app

        runner = web.AppRunner(create_placeholder_app(chat_function(host)), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port).start()
    for addr in runner.addresses:
        shown = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        print(f"botrace demo: open http://{shown}:{addr[1]}/", flush=True)
    return runner


def _token(args: argparse.Namespace) -> str | None:
    return args.token or os.environ.get("BOTRACE_TOKEN") or None


def _check_bind(args: argparse.Namespace) -> None:
    """Refuse, before anything starts, to serve traces and a chat box to the network
    without a token (the page has a login only when it is given one)."""
    if args.no_web:
        return
    try:
        from botrace_webui.app import check_bind
    except ImportError:  # the placeholder page has no login: a token cannot guard it
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("botrace demo: without webui the page has no login; "
                             "bind 127.0.0.1") from None
        return
    try:
        check_bind(args.host, _token(args))
    except ValueError as exc:
        raise SystemExit(f"botrace demo: {exc}") from None


async def run_demo(args: argparse.Namespace) -> int:
    _check_bind(args)
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = _host_config(args, data_dir)
    provider = None
    if args.provider == "openai":
        provider = OpenAICompatProvider(base_url=args.base_url, model=args.model,
                                        api_key=os.environ.get(args.api_key_env, ""))
    host = RefHost.from_config_file(data_dir / "refhost_config.json", llm_provider=provider,
                                    **conf)
    await host.start()
    store = await _open_store(data_dir / "botrace.db")
    counter = _Counter()
    sinks = [counter] + ([store] if store is not None else [])
    tracer = await connect(host, *sinks)
    print(f"botrace demo: host with {len(host.stars.star_map)} plugins, provider "
          f"{host.provider.provider_id}:{host.provider.get_model()}, tracing "
          f"{'on' if tracer.enabled else 'off'}, data in {data_dir}"
          + ("" if store is not None else " (no trace store available: in-memory only)"),
          flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        # First Ctrl-C: finish the running messages, flush, close. A second one is the
        # default KeyboardInterrupt, for when shutting down waits on something stuck.
        print("botrace demo: stopping (Ctrl-C again to abort)", flush=True)
        stop.set()
        loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)

    runner = None if args.no_web else await _serve(args, tracer, store, host)

    async def watch_config() -> None:
        while True:
            await asyncio.sleep(1.0)
            host.config.reload_if_changed()

    watcher = asyncio.create_task(watch_config())
    interval = args.interval if args.interval is not None else (
        0.0 if args.messages is not None else 1.5)
    driver = ConversationDriver(host, seed=args.seed, concurrency=args.concurrency,
                                interval_s=interval)
    try:
        sent = await driver.run(args.messages, stop)
        print(f"botrace demo: sent {sent} messages ({driver.failed} failed)", flush=True)
        if args.messages is None or args.stay:
            await stop.wait()
    finally:
        watcher.cancel()
        if runner is not None:
            await runner.cleanup()
        await disconnect(host)      # flushes every queued span to the sinks
        if store is not None:
            await store.close()
        await host.stop()
    print(f"botrace demo: {counter.traces} traces recorded ({counter.errors} with errors)"
          + (f" in {data_dir / 'botrace.db'}" if store is not None else ""), flush=True)
    return 0 if driver.failed == 0 else 1


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_demo(args))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        print("botrace demo: interrupted", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # Abort means now: what shutdown left open (a trace store's reader threads, which
        # are not daemons) would otherwise keep the interpreter waiting at exit forever.
        # The store's writer process sees the socket close and stops by itself.
        os._exit(130)
