"""Run the real AstrBot headless through one scripted scenario; write what happened as JSON.

This file has two sides. Run as a script with an AstrBot environment's python (see
``astrbot_envs.py``), it is the runner::

    .venv-astrbot-py311/bin/python tests/real_astrbot/astrbot_runner.py scenario.json

Imported in the test process, it offers :func:`run_scenario`, which writes the scenario,
starts that script in a subprocess and returns the results; nothing at import time touches
AstrBot (its imports are inside the runner's methods), and the script imports nothing from
the test suite or from botrace.

One process runs one AstrBot core lifecycle: AstrBot keeps its state in module globals
(config, database, plugin registries, the webchat queues), so scenarios never share a
process. The runner does what ``astrbot run`` does (``ASTRBOT_ROOT``, working directory,
``AstrBotCoreLifecycle(log_broker, db_helper)``, ``initialize()``, ``start()`` as a task),
without the dashboard unless asked, then plays the steps and stops the lifecycle cleanly.

The scenario (JSON object):

- ``root`` (required): AstrBot's root folder. ``ASTRBOT_ROOT`` points there before
  astrbot is imported, and it becomes the working directory (as ``astrbot run`` does),
  so ``data/`` (config, database, plugins) lives there. A root may be reused by a later
  scenario: an existing ``data/cmd_config.json`` is kept and the scenario's settings are
  merged over it.
- ``results``: where to write the results (default ``<root>/results.json``).
- ``llm``: ``{"api_base": ".../v1", "model": "fake-model", "api_key": "sk-fake",
  "modalities": ["text", "image", "tool_use"], "timeout": 30}``: one OpenAI-compatible chat
  provider (the ``provider_sources`` + ``provider`` config format), the default one.
- ``streaming`` (false): ``provider_settings.streaming_response`` and the webchat request's
  ``enable_streaming`` flag (webchat's own default is true, so it is always sent).
- ``subagents``: ``[{"name", "system_prompt", "public_description", "tools": [...],
  "provider_id"?}]`` for ``subagent_orchestrator.agents``; ``subagent_main_enable``
  (default: true when subagents are given) makes the main agent a router that sees the
  ``transfer_to_<name>`` tools (4.14.6: instead of the plugins' tools; 4.29.3: beside them).
- ``config``: more ``cmd_config.json`` keys, deep-merged last (e.g. ``{"trace_enable": true}``).
  AstrBot deletes keys it does not know at start-up; results list them in ``config_dropped``.
- ``plugins``: plugin folders to copy into ``data/plugins/`` (the folder name is kept).
- ``dashboard``: ``{"port": N}`` starts AstrBot's own dashboard on 127.0.0.1:N (never
  0.0.0.0); results carry its ``url`` and a valid JWT ``token``.
- ``log_patterns``: regexes; log records matching one are returned whatever their level.
- ``startup_timeout`` (90), ``stop_timeout`` (30): seconds.
- ``steps``: run in order; each may carry ``name``, ``timeout`` (seconds, default 60) and
  ``background: true`` (run it as a task and go on with the next step at once, e.g. to flip
  a setting while a slow message is in flight; the run waits for it before stopping):

  - ``{"op": "message", "text", "user": "tester", "session": "default", "streaming"?}``:
    push a message into the built-in webchat platform's queue, as the dashboard's chat page
    does, and collect the reply from its response queue until the pipeline's end marker;
  - ``{"op": "sleep", "seconds"}``;
  - ``{"op": "join", "steps": [names]}``: wait for background steps (default: all so far);
  - ``{"op": "plugin", "action": "reload" | "turn_off" | "turn_on", "plugin"}`` through
    AstrBot's plugin manager (``plugin`` is the plugin's metadata name; an unknown name fails
    the step), or ``{"op": "plugin", "action": "reload_all"}``;
  - ``{"op": "set_config", "key": "a.b.c", "value", "save": true, "reload": ["pipeline",
    "subagents"]}``: set a key of the default config, save it, optionally rebuild the
    pipeline (stages read their settings at build time) or the subagent handoffs;
  - ``{"op": "trace_settings", "trace_enable"?}``: run the dashboard's
    ``/api/trace/settings`` handler (over HTTP when the dashboard runs, else the handler's
    own code in-process): POST when ``trace_enable`` is given, then GET;
  - ``{"op": "wait_log", "pattern"}``: wait for a log record matching the regex;
  - ``{"op": "exec", "code"}``: run Python (an ``async def`` body with ``lifecycle``,
    ``config``, ``scenario``, ``state`` (a dict kept across steps) in scope); the value of a
    variable named ``result`` (JSON-able) is returned.

The results (JSON object):

- ``ok``: started, every step passed, stopped cleanly; ``fatal``: why the run broke off
  (null if it did not), with ``fatal_traceback``;
- ``astrbot_version``, ``python``, ``pid``, ``root``;
- ``startup_s``, ``startup_cpu_s`` (from importing astrbot to the lifecycle started),
  ``stop_s``, ``stopped_cleanly`` (``stop_error`` if not);
- ``steps``: one per step, in order: ``index``, ``op``, ``name``, ``ok``, ``error``
  (``traceback``), ``started_at`` (epoch seconds), ``wall_s``, ``cpu_s`` (the whole
  process's CPU time over the step, other tasks and threads included), and the op's own
  keys. A message step adds ``text``, ``user``, ``session``, ``streaming``, ``message_id``,
  ``reply`` (its texts joined by newlines; "" when nothing was sent), ``replies`` (each
  text sent: one per non-streamed message, one per finished stream) and ``items`` (the
  raw response-queue items, tool-call and ``agent_stats`` items included). A plugin step
  adds ``activated``; trace_settings adds ``via`` ("http", "LogService" or "LogRoute"),
  ``post`` and ``get`` (the handler's JSON); wait_log adds ``line``; exec adds ``result``;
- ``replies``: the ``reply`` of every message step, in order;
- ``failed_steps``: ``index``, ``op``, ``name``, ``error`` of each failed step;
- ``logs``: log records of WARNING and above (``t``, ``level``, ``logger``, ``msg``,
  ``exc``); ``log_matches``: records matching ``log_patterns``, at any level;
- ``config_dropped``: the dotted keys of ``scenario["config"]`` AstrBot removed at start;
- ``dashboard``: ``url``, ``token`` (a JWT for ``Authorization: Bearer``), ``username``,
  ``static`` (whether its web files are installed), or null.

The process exits 0 when the scenario ran to its end (failed steps are in the results) and
1 when it could not (AstrBot did not start, the runner crashed).

Every log record of INFO and above also goes to ``<root>/astrbot.log``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import re
import shutil
import socket
import sys
import textwrap
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

PROVIDER_SOURCE_ID = "fake_openai"
PROVIDER_ID = "fake_openai_chat"
#: Chain types the webchat response queue carries beside the reply text.
_SIDE_CHAINS = {"tool_call", "tool_call_result", "reasoning", "agent_stats"}
_MAX_LOGS = 1000


# ---------------------------------------------------------------------------------------------
# config


def _deep_merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def _dotted_keys(d: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            keys.extend(_dotted_keys(value, path + "."))
        else:
            keys.append(path)
    return keys


def _has_key(d: dict, dotted: str) -> bool:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def build_config(scenario: dict, existing: dict | None) -> dict:
    """The ``cmd_config.json`` to write: the existing one (if any), our settings, the scenario's.

    Only the keys that matter are written; AstrBot fills in every other key with its default
    when it loads the file (and saves it back).
    """
    llm = scenario.get("llm") or {}
    streaming = bool(scenario.get("streaming", False))
    source = {
        "id": PROVIDER_SOURCE_ID, "provider": "openai", "type": "openai_chat_completion",
        "provider_type": "chat_completion", "enable": True,
        "key": [llm.get("api_key", "sk-fake")], "api_base": llm.get("api_base", ""),
        "timeout": llm.get("timeout", 30), "custom_headers": {},
    }
    provider = {
        "id": PROVIDER_ID, "provider_source_id": PROVIDER_SOURCE_ID, "enable": True,
        "model": llm.get("model", "fake-model"),
        # without "tool_use" AstrBot drops every tool from the request
        "modalities": llm.get("modalities", ["text", "image", "tool_use"]),
        "custom_extra_body": {}, "max_context_tokens": 0,
    }
    ours: dict[str, Any] = {
        "provider_sources": [source],
        "provider": [provider],
        "provider_settings": {"enable": True, "default_provider_id": PROVIDER_ID,
                              "streaming_response": streaming},
        # tests send more than AstrBot's default 30 messages a minute per session
        "platform_settings": {"rate_limit": {"time": 60, "count": 100000, "strategy": "stall"}},
        "dashboard": {"host": "127.0.0.1",
                      "port": int((scenario.get("dashboard") or {}).get("port", 6185))},
    }
    subagents = scenario.get("subagents")
    if subagents is not None:
        ours["subagent_orchestrator"] = {
            "main_enable": bool(scenario.get("subagent_main_enable", bool(subagents))),
            "agents": [{"enabled": True, "public_description": "", "tools": [], **a}
                       for a in subagents],
        }
    config = existing or {}
    _deep_merge(config, ours)
    _deep_merge(config, scenario.get("config") or {})
    return config


# ---------------------------------------------------------------------------------------------
# logs


class _Capture(logging.Handler):
    """Keeps WARNING+ records and pattern matches for the results; writes INFO+ to a file."""

    def __init__(self, path: Path, patterns: list[str]) -> None:
        super().__init__(logging.INFO)
        self.records: list[dict] = []
        self.matches: list[dict] = []
        self.patterns = [re.compile(p) for p in patterns]
        self.waiters: list[tuple[re.Pattern, asyncio.Future, asyncio.AbstractEventLoop]] = []
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        # attached to both the root and the "astrbot" logger: count a record once
        if getattr(record, "_runner_seen", False):
            return
        record._runner_seen = True
        try:
            msg = record.getMessage()
        except Exception:
            msg = str(record.msg)
        entry = {"t": record.created, "level": record.levelname, "logger": record.name,
                 "msg": msg[:4000]}
        if record.exc_info and record.levelno >= logging.WARNING:
            entry["exc"] = "".join(traceback.format_exception(*record.exc_info))[-4000:]
        if record.levelno >= logging.WARNING and len(self.records) < _MAX_LOGS:
            self.records.append(entry)
        if any(p.search(msg) for p in self.patterns) and len(self.matches) < _MAX_LOGS:
            self.matches.append(entry)
        for pattern, fut, loop in list(self.waiters):
            if pattern.search(msg):
                loop.call_soon_threadsafe(lambda f=fut: f.done() or f.set_result(msg))
        try:
            self.file.write(self.format(record) + "\n")
            self.file.flush()
        except Exception:
            pass

    def close(self) -> None:
        self.file.close()
        super().close()


# ---------------------------------------------------------------------------------------------
# the run


class Runner:
    def __init__(self, scenario: dict) -> None:
        self.scenario = scenario
        self.root = Path(scenario["root"]).resolve()
        self.results: dict[str, Any] = {
            "ok": False, "fatal": None, "astrbot_version": None,
            "python": platform.python_version(), "pid": os.getpid(), "root": str(self.root),
            "startup_s": None, "startup_cpu_s": None, "stop_s": None, "stopped_cleanly": False,
            "steps": [], "replies": [], "failed_steps": [], "logs": [], "log_matches": [],
            "config_dropped": [], "dashboard": None,
        }
        self.lifecycle: Any = None
        self.log_broker: Any = None
        self.dashboard: Any = None
        self.state: dict = {}
        self._tasks: list[asyncio.Task] = []
        self._background: dict[str, asyncio.Task] = {}

    # -- setup -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Everything that must happen before astrbot is imported."""
        data = self.root / "data"
        # the folders `astrbot init` makes: AstrBot 4.14.6 fails to load a plugin with a
        # settings schema when data/config is missing
        for folder in ("config", "plugins", "temp"):
            (data / folder).mkdir(parents=True, exist_ok=True)
        os.environ["ASTRBOT_ROOT"] = str(self.root)
        os.environ["ASTRBOT_DISABLE_METRICS"] = "1"  # no usage reports from test runs
        for var in ("DASHBOARD_HOST", "ASTRBOT_DASHBOARD_HOST", "DASHBOARD_PORT",
                    "ASTRBOT_DASHBOARD_PORT"):
            os.environ.pop(var, None)
        if dash := self.scenario.get("dashboard"):
            os.environ["DASHBOARD_HOST"] = "127.0.0.1"
            os.environ["DASHBOARD_PORT"] = str(int(dash["port"]))
        os.chdir(self.root)
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))  # plugins import as data.plugins.<dir>.main

        path = data / "cmd_config.json"
        existing = None
        if path.exists():
            existing = json.loads(path.read_text(encoding="utf-8-sig"))
        path.write_text(json.dumps(build_config(self.scenario, existing), indent=2,
                                   ensure_ascii=False), encoding="utf-8")

        for src in self.scenario.get("plugins") or []:
            src_path = Path(src).resolve()
            dest = data / "plugins" / src_path.name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(src_path, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    async def start(self) -> None:
        from astrbot.core import LogBroker, LogManager, db_helper, logger
        from astrbot.core.config.default import VERSION
        from astrbot.core.core_lifecycle import AstrBotCoreLifecycle

        self.results["astrbot_version"] = VERSION
        for target in (logging.getLogger(), logger):
            target.addHandler(self.capture)
        self.log_broker = LogBroker()
        LogManager.set_queue_handler(logger, self.log_broker)  # as `astrbot run` does

        self.lifecycle = AstrBotCoreLifecycle(self.log_broker, db_helper)
        await self.lifecycle.initialize()
        self._tasks.append(asyncio.create_task(self.lifecycle.start(), name="astrbot-core"))
        if dash := self.scenario.get("dashboard"):
            await self._start_dashboard(int(dash["port"]))
        await asyncio.sleep(0)  # let start() create the event bus and the webchat listener
        loaded = self.lifecycle.astrbot_config
        self.results["config_dropped"] = [
            k for k in _dotted_keys(self.scenario.get("config") or {}) if not _has_key(loaded, k)]

    async def _start_dashboard(self, port: int) -> None:
        import jwt
        from astrbot.dashboard.server import AstrBotDashboard

        config = self.lifecycle.astrbot_config
        config["dashboard"]["host"] = "127.0.0.1"
        config["dashboard"]["port"] = port
        self.dashboard = AstrBotDashboard(self.lifecycle, self.lifecycle.db,
                                          self.lifecycle.dashboard_shutdown_event, None)
        serve = self.dashboard.run()
        if serve is None:
            raise RuntimeError("the dashboard is disabled in the config (dashboard.enable)")
        self._tasks.append(asyncio.create_task(serve, name="astrbot-dashboard"))
        deadline = time.monotonic() + 30
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not listen on 127.0.0.1:{port}") from None
                await asyncio.sleep(0.1)
        username = config["dashboard"].get("username", "astrbot")
        token = jwt.encode({"username": username, "exp": int(time.time()) + 7 * 86400},
                           config["dashboard"]["jwt_secret"], algorithm="HS256")
        static = getattr(self.dashboard, "data_path", None)
        self.results["dashboard"] = {
            "url": f"http://127.0.0.1:{port}", "token": token, "username": username,
            "static": bool(static and (Path(static) / "index.html").is_file()),
        }

    async def stop(self) -> None:
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(self.lifecycle.stop(),
                                   float(self.scenario.get("stop_timeout", 30)))
            self.results["stopped_cleanly"] = True
        except Exception as e:
            self.results["stop_error"] = f"{type(e).__name__}: {e}"
        for task in self._tasks:
            if not task.done():
                try:
                    await asyncio.wait_for(asyncio.shield(task), 5)
                except Exception:
                    task.cancel()
        self.results["stop_s"] = round(time.perf_counter() - t0, 3)

    # -- steps -------------------------------------------------------------------------------

    async def run_steps(self) -> None:
        """Play the steps in order; a ``background`` step runs as a task beside the next ones."""
        for index, step in enumerate(self.scenario.get("steps") or []):
            entry: dict[str, Any] = {"index": index, "op": step.get("op"),
                                     "name": step.get("name"), "ok": False, "error": None}
            self.results["steps"].append(entry)
            if step.get("background"):
                entry["background"] = True
                self._background[entry["name"] or str(index)] = asyncio.create_task(
                    self._run_step(step, entry), name=f"step-{index}")
            else:
                await self._run_step(step, entry)
        if self._background:  # a scenario ends when its background steps have
            await asyncio.gather(*self._background.values(), return_exceptions=True)
        steps = self.results["steps"]
        self.results["replies"] = [s.get("reply") for s in steps if s["op"] == "message"]
        self.results["failed_steps"] = [{k: s[k] for k in ("index", "op", "name", "error")}
                                        for s in steps if not s["ok"]]

    async def _run_step(self, step: dict, entry: dict) -> None:
        op = step.get("op")
        handler = getattr(self, f"step_{op}", None)
        wall, cpu = time.perf_counter(), time.process_time()
        entry["started_at"] = time.time()
        try:
            if handler is None:
                raise ValueError(f"unknown step op {op!r}")
            await asyncio.wait_for(handler(step, entry), float(step.get("timeout", 60)))
            entry["ok"] = entry["error"] is None
        except TimeoutError:
            entry["error"] = f"timed out after {step.get('timeout', 60)}s"
        except Exception as e:
            entry["error"] = f"{type(e).__name__}: {e}"
            entry["traceback"] = traceback.format_exc()[-4000:]
        entry["wall_s"] = round(time.perf_counter() - wall, 4)
        entry["cpu_s"] = round(time.process_time() - cpu, 4)

    async def step_join(self, step: dict, entry: dict) -> None:
        names = step.get("steps") or list(self._background)
        missing = [n for n in names if n not in self._background]
        if missing:
            raise LookupError(f"no background steps named {missing}")
        await asyncio.gather(*(self._background[n] for n in names))

    async def step_message(self, step: dict, entry: dict) -> None:
        """Send like the dashboard's chat page: response queue first, then the request queue."""
        from astrbot.core.platform.sources.webchat.webchat_queue_mgr import webchat_queue_mgr

        user = str(step.get("user", "tester"))
        session = str(step.get("session", "default"))
        streaming = bool(step.get("streaming", self.scenario.get("streaming", False)))
        message_id = str(uuid.uuid4())
        entry.update(text=step["text"], user=user, session=session, message_id=message_id,
                     streaming=streaming, reply=None, replies=[], items=[])
        back = webchat_queue_mgr.get_or_create_back_queue(message_id, session)
        payload = {
            "message": [{"type": "plain", "text": step["text"]}],
            "selected_provider": None, "selected_model": None,
            "enable_streaming": streaming, "message_id": message_id,
        }
        try:
            await webchat_queue_mgr.get_or_create_queue(session).put((user, session, payload))
            replies: list[str] = []
            stream_buf = ""
            while True:
                item = await back.get()
                entry["items"].append(item)
                kind = item.get("type")
                if kind == "end":
                    break
                if kind == "complete":
                    replies.append(item.get("data") or stream_buf)
                    stream_buf = ""
                elif item.get("chain_type") in _SIDE_CHAINS:
                    continue
                elif kind == "plain" and item.get("streaming"):
                    stream_buf += str(item.get("data", ""))
                elif kind in ("plain", "image", "record", "file"):
                    replies.append(str(item.get("data", "")))
            if stream_buf:
                replies.append(stream_buf)
            entry["replies"] = replies
            entry["reply"] = "\n".join(replies)
        finally:
            webchat_queue_mgr.remove_back_queue(message_id)

    async def step_sleep(self, step: dict, entry: dict) -> None:
        await asyncio.sleep(float(step.get("seconds", 0)))

    async def step_plugin(self, step: dict, entry: dict) -> None:
        manager = self.lifecycle.plugin_manager
        action, name = step["action"], step.get("plugin")
        if action == "reload_all":
            result = await manager.reload()
            if isinstance(result, tuple) and result and result[0] is False:
                raise RuntimeError(f"reload failed: {result[1] if len(result) > 1 else result}")
            return
        if self.lifecycle.star_context.get_registered_star(name) is None:
            # AstrBot's reload(<unknown name>) silently reloads every plugin
            raise LookupError(f"no plugin named {name!r}")
        if action == "reload":
            result = await manager.reload(name)
            if isinstance(result, tuple) and result and result[0] is False:
                raise RuntimeError(f"reload failed: {result[1] if len(result) > 1 else result}")
        elif action == "turn_off":
            await manager.turn_off_plugin(name)
        elif action == "turn_on":
            await manager.turn_on_plugin(name)
        else:
            raise ValueError(f"unknown plugin action {action!r}")
        star = self.lifecycle.star_context.get_registered_star(name)
        entry["activated"] = None if star is None else bool(star.activated)

    async def step_set_config(self, step: dict, entry: dict) -> None:
        config = self.lifecycle.astrbot_config
        *parents, last = step["key"].split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = step["value"]
        if step.get("save", True):
            config.save_config()
        for what in step.get("reload") or []:
            if what == "pipeline":
                await self.lifecycle.reload_pipeline_scheduler("default")
            elif what == "subagents":
                await self.lifecycle._init_or_reload_subagent_orchestrator()
            else:
                raise ValueError(f"unknown reload target {what!r}")

    async def step_trace_settings(self, step: dict, entry: dict) -> None:
        """The dashboard's Trace switch: over HTTP if it runs, else its handler in-process."""
        value = step.get("trace_enable")
        if self.results["dashboard"]:
            entry["via"] = "http"
            entry.update(await self._trace_settings_http(value))
            return
        try:  # AstrBot >= 4.2x: FastAPI dashboard, the logic lives in LogService
            from astrbot.dashboard.services.log_service import LogService
        except ImportError:
            LogService = None
        if LogService is not None:
            entry["via"] = "LogService"
            service = LogService(self.log_broker, self.lifecycle.astrbot_config,
                                 core=self.lifecycle)
            if value is not None:
                entry["post"] = {"status": "ok",
                                 "message": service.update_trace_settings({"trace_enable": value})}
            entry["get"] = {"status": "ok", "data": service.get_trace_settings()}
            return
        # AstrBot 4.14: a Quart route class; mount it on a bare app and call it
        from astrbot.dashboard.routes.log import LogRoute
        from astrbot.dashboard.routes.route import RouteContext
        from quart import Quart

        entry["via"] = "LogRoute"
        app = Quart("trace-settings")
        LogRoute(RouteContext(self.lifecycle.astrbot_config, app), self.log_broker)
        client = app.test_client()
        if value is not None:
            resp = await client.post("/api/trace/settings", json={"trace_enable": value})
            entry["post"] = await resp.get_json()
        resp = await client.get("/api/trace/settings")
        entry["get"] = await resp.get_json()

    async def _trace_settings_http(self, value: Any) -> dict:
        import aiohttp

        dash = self.results["dashboard"]
        headers = {"Authorization": f"Bearer {dash['token']}"}
        out: dict[str, Any] = {}
        async with aiohttp.ClientSession(headers=headers) as http:
            if value is not None:
                async with http.post(f"{dash['url']}/api/trace/settings",
                                     json={"trace_enable": value}) as resp:
                    out["post"] = {"http_status": resp.status, **(await resp.json())}
            async with http.get(f"{dash['url']}/api/trace/settings") as resp:
                out["get"] = {"http_status": resp.status, **(await resp.json())}
        return out

    async def step_wait_log(self, step: dict, entry: dict) -> None:
        pattern = re.compile(step["pattern"])
        for rec in self.capture.matches + self.capture.records:
            if pattern.search(rec["msg"]):
                entry["line"] = rec["msg"]
                return
        fut = asyncio.get_running_loop().create_future()
        waiter = (pattern, fut, asyncio.get_running_loop())
        self.capture.waiters.append(waiter)
        try:
            entry["line"] = await fut
        finally:
            self.capture.waiters.remove(waiter)

    async def step_exec(self, step: dict, entry: dict) -> None:
        source = ("async def __step(lifecycle, config, scenario, state):\n"
                  + textwrap.indent(step["code"], "    ")
                  + "\n    return locals().get('result')\n")
        namespace: dict[str, Any] = {}
        exec(compile(source, f"<step {entry['index']}>", "exec"), namespace)
        result = await namespace["__step"](self.lifecycle, self.lifecycle.astrbot_config,
                                           self.scenario, self.state)
        json.dumps(result)  # fail here, not when writing the results
        entry["result"] = result

    # -- main --------------------------------------------------------------------------------

    async def main(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        # records from here on; what AstrBot logs while being imported is only in the
        # process's output (a handler attached earlier would stop AstrBot configuring its own)
        self.capture = _Capture(self.root / "astrbot.log", self.scenario.get("log_patterns") or [])
        started = False
        try:
            self.prepare()
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                await asyncio.wait_for(self.start(), float(self.scenario.get("startup_timeout", 90)))
            except TimeoutError:
                self.results["fatal"] = (f"start-up did not finish within "
                                         f"{self.scenario.get('startup_timeout', 90)}s")
                self.results["fatal_traceback"] = traceback.format_exc()[-6000:]
                return 1
            except Exception as e:
                self.results["fatal"] = f"start-up failed: {type(e).__name__}: {e}"
                self.results["fatal_traceback"] = traceback.format_exc()[-6000:]
                return 1
            started = True
            self.results["startup_s"] = round(time.perf_counter() - wall, 3)
            self.results["startup_cpu_s"] = round(time.process_time() - cpu, 3)
            await self.run_steps()
            return 0
        except Exception as e:
            self.results["fatal"] = f"runner crashed: {type(e).__name__}: {e}"
            self.results["fatal_traceback"] = traceback.format_exc()[-6000:]
            return 1
        finally:
            if started or self.lifecycle is not None:
                try:
                    await self.stop()
                except Exception:
                    traceback.print_exc()
            self.results["logs"] = self.capture.records
            self.results["log_matches"] = self.capture.matches
            self.results["ok"] = (self.results["fatal"] is None and not self.results["failed_steps"]
                                  and self.results["stopped_cleanly"])
            self.write_results()
            _exit_watchdog(0 if self.results["fatal"] is None else 1,
                           float(self.scenario.get("exit_grace", 20)))

    def write_results(self) -> None:
        path = Path(self.scenario.get("results") or self.root / "results.json")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=2, ensure_ascii=False, default=str))
        os.replace(tmp, path)


def _exit_watchdog(code: int, grace: float) -> None:
    """Leave even if a thread AstrBot started (a network fetch, an executor) never ends.

    Started once the results are written: ``asyncio.run``'s own clean-up (cancelling left-over
    tasks, joining the default executor) and the interpreter's shutdown (atexit handlers,
    child processes joined) get ``grace`` seconds, then the process exits anyway.
    """
    def kill() -> None:
        time.sleep(grace)
        sys.stderr.write(f"runner: interpreter shutdown took over {grace}s; forcing exit\n")
        sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=kill, name="exit-watchdog", daemon=True).start()


# ---------------------------------------------------------------------------------------------
# the test side: start this file in an AstrBot environment


RUNNER = Path(__file__).resolve()
#: The probe plugin's folder, for ``scenario["plugins"]`` (see plugins/astrbot_plugin_probe).
PROBE_PLUGIN = RUNNER.parent / "plugins" / "astrbot_plugin_probe"


class ScenarioError(AssertionError):
    """The scenario could not run, or (with ``check``) a step failed. ``results`` may be None."""

    def __init__(self, message: str, results: dict | None = None) -> None:
        super().__init__(message)
        self.results = results


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for ``scenario["dashboard"]["port"]``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail_text(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def run_scenario(env: Any, root: str | os.PathLike, scenario: dict, timeout: float = 180, *,
                 llm: Any = None, check: bool = True) -> dict:
    """Run ``scenario`` in a fresh AstrBot process of ``env``; return its results.

    ``env`` is an ``envs.AstrBotEnv`` (anything with a ``python`` path works); ``root`` is
    the AstrBot root (created if needed; ``scenario.json``, ``results.json``, ``runner.out``
    (the process's output) and ``astrbot.log`` land there too). ``llm`` (a
    ``fake_openai.FakeOpenAI``) fills in ``scenario["llm"]["api_base"]`` when it is not set.

    Raises :class:`ScenarioError` with the tail of the process's output when the process
    fails, times out or writes no results, and, when ``check`` is true, when a step failed.
    """
    import subprocess

    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    scenario = json.loads(json.dumps(scenario))  # a copy, and proof that it is JSON
    scenario["root"] = str(root)
    scenario.setdefault("results", str(root / "results.json"))
    if llm is not None:
        scenario.setdefault("llm", {}).setdefault("api_base", llm.base_url)
    results_path = Path(scenario["results"])
    results_path.unlink(missing_ok=True)
    scenario_path = root / "scenario.json"
    scenario_path.write_text(json.dumps(scenario, indent=2))
    out_path = root / "runner.out"

    env_vars = {k: v for k, v in os.environ.items()
                if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP",
                             "FORCE_COLOR")}
    env_vars["PYTHONUNBUFFERED"] = "1"
    env_vars["NO_COLOR"] = "1"  # plain text in runner.out (AstrBot logs through colorlog)
    with open(out_path, "w") as out:
        proc = subprocess.Popen([str(env.python), str(RUNNER), str(scenario_path)], cwd=root,
                                stdout=out, stderr=subprocess.STDOUT, env=env_vars,
                                start_new_session=True)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise ScenarioError(f"AstrBot scenario timed out after {timeout}s; output tail:\n"
                                f"{_tail_text(out_path)}") from None
    results = None
    if results_path.exists():
        results = json.loads(results_path.read_text())
    if code != 0 or results is None:
        fatal = (results or {}).get("fatal")
        raise ScenarioError(f"AstrBot scenario failed (exit {code}): {fatal or 'no results'}\n"
                            f"{(results or {}).get('fatal_traceback') or ''}\noutput tail:\n"
                            f"{_tail_text(out_path)}", results)
    if check and results["failed_steps"]:
        details = "\n".join(
            f"  step {s['index']} ({s['op']}{' ' + s['name'] if s.get('name') else ''}): {s['error']}"
            for s in results["failed_steps"])
        tracebacks = "\n".join(st.get("traceback", "") for st in results["steps"]
                               if not st["ok"] and st.get("traceback"))
        warnings = "\n".join(f"  {r['level']} {r['logger']}: {r['msg'][:300]}"
                             for r in results["logs"][-20:])
        raise ScenarioError(f"AstrBot scenario steps failed:\n{details}\n{tracebacks}\n"
                            f"last warnings:\n{warnings}", results)
    return results


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: astrbot_runner.py scenario.json", file=sys.stderr)
        return 2
    scenario = json.loads(Path(argv[1]).read_text())
    runner = Runner(scenario)
    code = asyncio.run(runner.main())
    if runner.results.get("fatal"):
        print(f"runner: {runner.results['fatal']}", file=sys.stderr)
    return code


if __name__ == "__main__":
    # Run as a script, this file's folder (tests/real_astrbot) is sys.path[0]; it must not shadow
    # anything AstrBot imports (it holds conftest.py, plugins/, ...).
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.exit(main(sys.argv))
