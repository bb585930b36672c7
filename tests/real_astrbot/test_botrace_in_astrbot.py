"""botrace inside the real AstrBot: the plugin installed as an operator would, real messages.

Each scenario starts AstrBot from PyPI in a subprocess (``astrbot_runner.py``) with the
botrace plugin installed the AstrBot way — the zip through the plugin manager's "install
from file" (what the dashboard's upload calls), or the folder ``botrace astrbot-plugin``
writes into ``data/plugins/`` — plus the probe plugin (a command, an ``@llm_tool``, an
``on_llm_request`` hook that changes the request and one that stops the event, an
``on_decorating_result`` hook) and the fake model. The tests then read what botrace
stored, with botrace's own store API, and what ``exec`` steps saw inside AstrBot.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from astrbot_envs import AstrBotEnv
from astrbot_runner import PROBE_PLUGIN, free_port, run_scenario
from fake_openai import FakeOpenAI
from test_harness import SUBAGENT, SUBAGENT_PROMPT, rules, weather

from botrace.cli import main as botrace_main
from botrace.store import TraceStore
from botrace_host_adapter.astrbot.package import write_plugin_zip
from botrace_host_adapter.astrbot.plugin import PLUGIN_NAME

pytestmark = [pytest.mark.astrbot, pytest.mark.slow]

PROBE = "astrbot_plugin_probe"
DECORATION = " [probe-decorated]"
SYSTEM_MARKER = "[probe-system-marker]"
CONTEXT_NOTE = "Context from the probe: Paris is in France."
STAGES = ["WakingCheck", "WhitelistCheck", "SessionStatusCheck", "RateLimit",
          "ContentSafetyCheck", "PreProcess", "Process", "ResultDecorate", "Respond"]

# -- code run inside AstrBot (``exec`` steps) --------------------------------------------------

#: the botrace plugin's runtime, its tracer and a few facts about it
STATUS = """
import threading
from astrbot.core.star.star import star_map
md = star_map.get("data.plugins.astrbot_plugin_botrace.main")
rt = getattr(getattr(md, "star_cls", None), "runtime", None)
tracer = getattr(rt, "tracer", None)
store = getattr(rt, "store", None)
result = {
    "loaded": bool(rt is not None and rt.running),
    "enabled": bool(tracer and tracer.enabled),
    "url": getattr(rt, "url", None),
    "db": tracer.settings.trace_db_path if tracer else None,
    "retention_days": tracer.settings.trace_retention_days if tracer else None,
    "log_enable": tracer.settings.trace_log_enable if tracer else None,
    "installed": list(rt.adapter.installed) if rt and rt.adapter else [],
    "unavailable": dict(rt.adapter.unavailable) if rt and rt.adapter else {},
    "writer_pid": getattr(store, "writer_pid", None),
    "threads": sorted(t.name for t in threading.enumerate()),
}
state["last_status"] = result
"""

#: AstrBot's functions botrace wraps, checked to be AstrBot's own again
PRISTINE = """
import importlib, os, socket, sys, threading, logging, inspect
def own(fn):
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    return (code is not None and not hasattr(fn, "__wrapped__")
            and f"{os.sep}astrbot{os.sep}" in code.co_filename)
def mod(name):
    return importlib.import_module(name)
checks = {}
checks["execute"] = own(vars(mod("astrbot.core.pipeline.scheduler").PipelineScheduler)["execute"])
base = mod("astrbot.core.pipeline.stage").Stage
todo, classes = list(base.__subclasses__()), []
while todo:
    c = todo.pop(); todo.extend(c.__subclasses__()); classes.append(c)
checks["stages"] = all(own(vars(c)["process"]) for c in classes if "process" in vars(c))
checks["stage_count"] = sum(1 for c in classes if "process" in vars(c))
cu = mod("astrbot.core.pipeline.context_utils")
copies = [m for m in list(sys.modules.values())
          if getattr(m, "__name__", "").startswith("astrbot") and "call_handler" in vars(m)]
checks["call_handler"] = own(cu.call_handler) and all(vars(m)["call_handler"] is cu.call_handler
                                                      for m in copies)
sh = mod("astrbot.core.star.star_handler")
checks["event_hooks"] = own(vars(sh.StarHandlerRegistry)["get_handlers_by_event_type"])
runner = mod("astrbot.core.agent.runners.tool_loop_agent_runner").ToolLoopAgentRunner
checks["llm"] = own(vars(runner)["_iter_llm_responses"])
checks["llm_generate"] = own(vars(mod("astrbot.core.star.context").Context)["llm_generate"])
checks["tools"] = own(vars(mod("astrbot.core.astr_agent_tool_exec").FunctionToolExecutor)["execute"])
before = state.get("last_status") or {}
pid = before.get("writer_pid")
checks["writer_gone"] = pid is None or not os.path.exists(f"/proc/{pid}") or \\
    open(f"/proc/{pid}/stat").read().split()[2] == "Z"
checks["threads"] = sorted(t.name for t in threading.enumerate() if t.name.startswith("botrace"))
url = before.get("url")
port_closed = True
if url:
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with socket.socket() as s:
        port_closed = s.connect_ex(("127.0.0.1", port)) != 0
checks["port_closed"] = port_closed
lg = logging.getLogger("botrace")
checks["log_bridge_gone"] = not lg.handlers and lg.propagate
import botrace
checks["no_tracer"] = botrace.get_tracer() is None
from astrbot.core.star.star import star_map
ctx = star_map["data.plugins.astrbot_plugin_probe.main"].star_cls.context
checks["routes"] = [r[0] for r in getattr(ctx, "registered_web_apis", []) if "botrace" in r[0]]
result = checks
"""

#: botrace's own page, over HTTP from inside AstrBot's process (it binds 127.0.0.1 there)
PAGE_CALL = """
import aiohttp, json
url = state["last_status"]["url"]
async with aiohttp.ClientSession() as s:
    async with s.request({method!r}, url + {path!r}, json={body!r}) as r:
        result = {{"status": r.status, "body": await r.json()}}
saved = json.load(open("data/cmd_config.json", encoding="utf-8-sig"))
result["astrbot_config"] = config["trace_enable"]
result["astrbot_file"] = saved["trace_enable"]
"""

#: the page's trace list, asked again (as the page's refresh would) until it lists ``want``:
#: the store writes in batches (every 0.2 s, committed every 0.5 s), so a message answered
#: a moment ago is on the live stream at once but in the stored list a little later
PAGE_LIST = """
import aiohttp, asyncio, time
url = state["last_status"]["url"]
t0 = time.monotonic()
async with aiohttp.ClientSession() as s:
    while True:
        async with s.get(url + {path!r}) as r:
            result = {{"status": r.status, "body": await r.json()}}
        listed = {{t["outline"] for t in result["body"].get("traces", [])}}
        if r.status != 200 or {want!r} <= listed or time.monotonic() - t0 > 20:
            break
        await asyncio.sleep(0.1)
result["after_s"] = time.monotonic() - t0
"""

#: how long until the tracer follows AstrBot's switch (set by the dashboard's handler before)
FOLLOW = """
import asyncio, time
from astrbot.core.star.star import star_map
tracer = star_map["data.plugins.astrbot_plugin_botrace.main"].star_cls.runtime.tracer
t0 = time.monotonic()
while tracer.enabled != {want} and time.monotonic() - t0 < 5:
    await asyncio.sleep(0.01)
result = {{"enabled": tracer.enabled, "after_s": time.monotonic() - t0}}
"""


def exec_step(name: str, code: str) -> dict:
    return {"op": "exec", "name": name, "code": code}


def page_call(name: str, method: str, path: str, body: object = None) -> dict:
    return exec_step(name, PAGE_CALL.format(method=method, path=path, body=body))


# -- reading what botrace stored ---------------------------------------------------------------

@dataclass
class Stored:
    """Every trace botrace stored, as trees, keyed by the message's text."""

    traces: dict[str, list[dict]]  # outline -> [trace document, ...] (oldest first)

    def one(self, outline: str) -> dict:
        (doc,) = self.traces[outline]
        return doc

    def spans(self, outline: str) -> list[dict]:
        return self.one(outline)["spans"]


def read_store(db: Path) -> Stored:
    async def main() -> Stored:
        store = await TraceStore(db, read_only=True).open()
        try:
            out: dict[str, list[dict]] = {}
            async for doc in store.iter_traces():
                tree = await store.get_trace(doc["trace"]["trace_id"])
                out.setdefault(doc["trace"]["outline"], []).append(tree)
            return Stored(out)
        finally:
            await store.close()

    return asyncio.run(main())


def by_id(spans: list[dict]) -> dict[str, dict]:
    return {s["span_id"]: s for s in spans}


def path_of(span: dict, spans: dict[str, dict]) -> list[str]:
    names = []
    while span["parent_id"]:
        span = spans[span["parent_id"]]
        names.append(span["name"])
    return names[::-1]


def named(spans: list[dict], name: str) -> list[dict]:
    return [s for s in spans if s["name"] == name]


# -- scenarios --------------------------------------------------------------------------------

@dataclass
class Run:
    results: dict
    fake: FakeOpenAI
    root: Path
    stored: Stored

    def step(self, name: str) -> dict:
        return next(s for s in self.results["steps"] if s["name"] == name)

    def served_by(self, *rules: str) -> list:
        """What the model answered under these rules of ``test_harness.rules()``, in order."""
        return [s for s in self.fake.served if s.rule in rules]

    def served(self, text: str) -> list:
        """What the model answered for the message ``text`` (AstrBot appends to a user
        message, so a request belongs to the message its last user text starts with)."""
        by_index = {s.request_index: s for s in self.fake.served}
        return [by_index[r.index] for r in self.fake.requests if r.last_user.startswith(text)]


def plugin_config(root: Path, values: dict) -> None:
    """The botrace plugin's settings, as AstrBot's dashboard would have saved them."""
    path = root / "data" / "config" / f"{PLUGIN_NAME}_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values), encoding="utf-8-sig")


def start(env: AstrBotEnv, root: Path, scenario: dict, timeout: float = 240) -> Run:
    with FakeOpenAI(rules()) as fake:
        results = run_scenario(env, root, scenario, llm=fake, timeout=timeout)
    db = root / "data" / "plugin_data" / PLUGIN_NAME / "botrace.db"
    return Run(results, fake, root, read_store(db) if db.exists() else Stored({}))


def lifecycle_scenario(zip_path: Path, page_port: int) -> dict:
    """Install the zip at run time, switch from AstrBot's dashboard and from botrace's page,
    converse (command, tools, veto, handoff, concurrent messages), unload, load, reload."""
    install = (f"await lifecycle.plugin_manager.install_plugin_from_file({str(zip_path)!r})\n"
               "result = True")
    return {
        "plugins": [str(PROBE_PLUGIN)],
        # trace_log_enable is AstrBot's own flat trace log: botrace must not take it as its own
        "config": {"trace_enable": False, "trace_log_enable": True},
        "subagents": [{"name": SUBAGENT, "system_prompt": SUBAGENT_PROMPT,
                       "public_description": "Knows the weather anywhere.",
                       "tools": ["get_weather"]}],
        "subagent_main_enable": False,
        "steps": [
            exec_step("install", install),
            exec_step("status-installed", STATUS),
            {"op": "message", "name": "off-before", "text": "/probe while tracing is off"},
            {"op": "trace_settings", "name": "dashboard-on", "trace_enable": True},
            exec_step("follow-on", FOLLOW.format(want=True)),
            {"op": "message", "name": "probe", "text": "/probe hi"},
            {"op": "message", "name": "paris", "text": "What is the weather in Paris?"},
            {"op": "message", "name": "veto", "text": "please veto this one"},
            {"op": "set_config", "key": "subagent_orchestrator.main_enable", "value": True},
            {"op": "message", "name": "handoff", "text": "Ask the weather agent about Tokyo"},
            {"op": "set_config", "key": "subagent_orchestrator.main_enable", "value": False},
            *({"op": "message", "name": f"c{i}", "text": f"/probe concurrent {i}",
               "user": f"user{i}", "session": f"s{i}", "background": True} for i in range(4)),
            {"op": "join"},
            exec_step("page-traces", PAGE_LIST.format(
                path="api/v1/traces?limit=50",
                want={"/probe hi", "What is the weather in Paris?"})),
            page_call("page-health", "GET", "api/v1/health"),
            page_call("page-off", "PUT", "api/v1/config", {"trace_enable": False}),
            {"op": "trace_settings", "name": "dashboard-sees-off"},
            {"op": "message", "name": "off-page", "text": "/probe while the page switched off"},
            page_call("page-on", "PUT", "api/v1/config", {"trace_enable": True}),
            exec_step("status-loaded", STATUS),
            {"op": "plugin", "name": "turn-off", "action": "turn_off", "plugin": PLUGIN_NAME},
            exec_step("pristine", PRISTINE),
            {"op": "message", "name": "unloaded", "text": "/probe while botrace is unloaded"},
            {"op": "plugin", "name": "turn-on", "action": "turn_on", "plugin": PLUGIN_NAME},
            exec_step("status-on-again", STATUS),
            {"op": "message", "name": "on-again", "text": "/probe after turning botrace on"},
            {"op": "plugin", "name": "reload", "action": "reload", "plugin": PLUGIN_NAME},
            exec_step("status-reloaded", STATUS),
            {"op": "message", "name": "reloaded", "text": "(reloaded) What is the weather in Paris?"},
        ],
    }


@pytest.fixture(scope="module")
def lifecycle(astrbot_env: AstrBotEnv, tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("botrace-lifecycle")
    zip_path = write_plugin_zip(tmp_path_factory.mktemp("zip"))
    astrbot_env.install(str(_requirements(tmp_path_factory)))
    port = free_port()
    plugin_config(root, {"page": {"port": port}, "store": {"retention_days": 3}})
    return start(astrbot_env, root, lifecycle_scenario(zip_path, port))


def _requirements(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin's requirements.txt, as AstrBot would install it (once per environment)."""
    from botrace_host_adapter.astrbot.package import REQUIREMENTS

    path = tmp_path_factory.mktemp("requirements") / "requirements.txt"
    path.write_text("\n".join(REQUIREMENTS) + "\n")
    return path


# -- the plugin's install, settings and page --------------------------------------------------

def test_the_zip_installs_through_astrbots_plugin_manager_and_starts(lifecycle: Run):
    status = lifecycle.step("status-installed")["result"]
    assert status["loaded"] and not status["enabled"]  # AstrBot's trace_enable was false
    plugin_dir = lifecycle.root / "data" / "plugins" / PLUGIN_NAME
    assert (plugin_dir / "main.py").is_file() and (plugin_dir / "_vendor" / "botrace").is_dir()
    assert status["unavailable"] == {}
    assert set(status["installed"]) == {"message", "stages", "handlers", "event_hooks", "llm",
                                        "llm_generate", "tools"}


def test_settings_live_in_the_plugin_config_and_the_store_in_astrbots_data_folder(lifecycle: Run):
    status = lifecycle.step("status-installed")["result"]
    db = Path(status["db"])
    assert db == (lifecycle.root / "data" / "plugin_data" / PLUGIN_NAME / "botrace.db").resolve() \
        or db == lifecycle.root / "data" / "plugin_data" / PLUGIN_NAME / "botrace.db"
    assert status["retention_days"] == 3  # from the plugin's own config, which AstrBot keeps
    assert status["log_enable"] is False  # AstrBot's trace_log_* keys are not botrace's
    saved = json.loads((lifecycle.root / "data" / "config" / f"{PLUGIN_NAME}_config.json")
                       .read_text(encoding="utf-8-sig"))
    assert saved["store"]["retention_days"] == 3 and saved["page"]["port"] > 0
    cmd = json.loads((lifecycle.root / "data" / "cmd_config.json").read_text(encoding="utf-8-sig"))
    assert not [k for k in cmd if k.startswith("trace_") and k not in (
        "trace_enable", "trace_log_enable", "trace_log_path", "trace_log_max_mb")]
    assert not (lifecycle.root / "data" / "botrace.db").exists()


def test_the_page_answers_on_its_loopback_port_with_the_traces(lifecycle: Run):
    status = lifecycle.step("status-installed")["result"]
    assert status["url"].startswith("http://127.0.0.1:")
    page = lifecycle.step("page-traces")["result"]
    assert page["status"] == 200
    outlines = {t["outline"] for t in page["body"]["traces"]}
    health = lifecycle.step("page-health")["result"]["body"]
    assert {"/probe hi", "What is the weather in Paris?"} <= outlines, page
    adapter = next(s for s in health["tracer"]["sinks"] if s["name"] == "astrbot adapter")
    assert adapter["astrbot_version"] == "4.14.6" and adapter["unavailable"] == {}
    assert adapter["state"] == "ok" and health["status"] == "ok"


# -- the switch, both ways ----------------------------------------------------------------------

def test_astrbots_dashboard_switch_is_followed_within_a_second(lifecycle: Run):
    assert lifecycle.step("dashboard-on")["get"]["data"] == {"trace_enable": True}
    follow = lifecycle.step("follow-on")["result"]
    assert follow["enabled"] and follow["after_s"] < 1.0
    assert "/probe while tracing is off" not in lifecycle.stored.traces


def test_botraces_page_switch_writes_astrbots_trace_enable(lifecycle: Run):
    off = lifecycle.step("page-off")["result"]
    assert off["status"] == 200 and off["body"]["trace_enable"] is False
    assert off["astrbot_config"] is False and off["astrbot_file"] is False
    assert lifecycle.step("dashboard-sees-off")["get"]["data"] == {"trace_enable": False}
    assert "/probe while the page switched off" not in lifecycle.stored.traces
    on = lifecycle.step("page-on")["result"]
    assert on["astrbot_config"] is True and on["astrbot_file"] is True


# -- what a trace holds -----------------------------------------------------------------------

def test_stages_are_named_and_nest_as_astrbots_onion(lifecycle: Run):
    spans = lifecycle.stored.spans("/probe hi")
    index = by_id(spans)
    (root,) = [s for s in spans if s["parent_id"] is None]
    top = [s["name"] for s in spans if s["parent_id"] == root["span_id"]]
    assert top[: len(STAGES)] == STAGES  # ResultDecorate and Respond run again after Process
    (handler,) = named(spans, "ProbePlugin.probe")
    assert path_of(handler, index) == ["message", "Process", "StarRequest"]
    # the stages that run at the handler's yield nest inside the generator stages
    respond = next(s for s in named(spans, "Respond") if s["output"].get("reply"))
    assert path_of(respond, index) == ["message", "Process", "StarRequest"]
    assert respond["output"]["reply"] == "probe says: hi" + DECORATION
    assert root["output"]["reply"] == "probe says: hi" + DECORATION
    assert "ABCMeta" not in {s["name"] for s in spans}


def test_handlers_and_hooks_are_credited_to_their_plugins(lifecycle: Run):
    spans = lifecycle.stored.spans("/probe hi")
    (handler,) = named(spans, "ProbePlugin.probe")
    assert handler["plugin"]["name"] == PROBE and handler["plugin"]["plugin_type"] == "third_party"
    assert handler["meta"]["command"] == "probe"
    (decorate,) = named(spans, "on_decorating_result ProbePlugin.decorate")
    assert decorate["plugin"]["name"] == PROBE and decorate["meta"]["changed"] == ["result"]
    assert decorate["output"]["result"] == "probe says: hi" + DECORATION
    builtin = [s for s in spans if s["span_type"] == "plugin_call"
               and s["plugin"] and s["plugin"]["plugin_type"] == "builtin"]
    assert builtin, "AstrBot's own builtin stars show up as builtin plugins"


def test_an_on_llm_request_hook_that_changes_the_request_says_so(lifecycle: Run):
    spans = lifecycle.stored.spans("What is the weather in Paris?")
    (marker,) = named(spans, "on_llm_request ProbePlugin.add_system_marker")
    assert marker["plugin"]["name"] == PROBE
    assert marker["meta"]["changed"] == ["system_prompt"]
    assert marker["output"]["system_prompt"] == {"appended": "\n" + SYSTEM_MARKER,
                                                 "chars_added": len(SYSTEM_MARKER) + 1}
    assert not lifecycle.stored.one("What is the weather in Paris?")["trace"]["truncated"]
    hooks = [s for s in spans if s["meta"].get("event_type") == "on_llm_request"]
    assert all(s["plugin"] for s in hooks)
    assert not [s for s in spans if s["name"].startswith("hooks ")]  # no per-hook-type spans


def _uncut(text: str) -> str:
    """A recorded text without the limits' cut marker (``…[+N chars]``)."""
    return re.sub(r"…\[\+\d+ chars\]$", "", text or "")


def test_llm_spans_record_the_whole_request_the_model_was_sent(lifecycle: Run):
    text = "What is the weather in Paris?"
    llms = [s for s in lifecycle.stored.spans(text) if s["span_type"] == "llm_call"]
    sent = [r for r in lifecycle.fake.requests if r.last_user.startswith(text)]
    assert len(llms) == len(sent) == 2
    for span, req in zip(llms, sent, strict=True):
        recorded = span["input"]["messages"]
        # every message, in order: system prompt, injected context, the user's, tool calls, results
        assert [m["role"] for m in recorded] == [m["role"] for m in req.messages]
        system = recorded[0]["content"]
        assert req.system.startswith(_uncut(system)) and SYSTEM_MARKER in req.system
        if not span["truncated"]:
            assert system == req.system and system.endswith(SYSTEM_MARKER)
        # the probe's on_llm_request hook put this into the history the model saw
        assert {"role": "user", "content": CONTEXT_NOTE} in recorded
        assert sorted(span["input"]["tools"]) == sorted(req.tools)
        assert "omitted_messages" not in span["input"]
    first, second = (s["input"]["messages"] for s in llms)
    assert first[-1] == {"role": "user", "content": sent[0].last_user}
    (call,) = second[-2]["tool_calls"]
    assert call["name"] == "get_weather" and second[-2]["role"] == "assistant"
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == call["id"]
    assert second[-1]["content"] == weather("Paris") == sent[1].tool_results[-1]


def test_on_llm_request_hooks_record_what_they_added_to_the_request(lifecycle: Run):
    spans = lifecycle.stored.spans("What is the weather in Paris?")
    (marker,) = named(spans, "on_llm_request ProbePlugin.add_system_marker")
    added = marker["output"]["request_added"]
    chars = len(SYSTEM_MARKER) + 1
    assert added["system_prompt_chars_added"] == added["chars_added"] == chars
    assert added["tokens_added_est"] == marker["meta"]["tokens_added_est"] == (chars + 3) // 4
    assert "messages_added" not in added
    (inject,) = named(spans, "on_llm_request ProbePlugin.inject_context")
    added = inject["output"]["request_added"]
    assert added["messages_added"] == [{"role": "user", "content": CONTEXT_NOTE}]
    assert added["chars_added"] == len(CONTEXT_NOTE)
    assert inject["meta"]["tokens_added_est"] == (len(CONTEXT_NOTE) + 3) // 4
    (veto,) = named(spans, "on_llm_request ProbePlugin.veto")  # changed nothing: no diff
    assert "request_added" not in (veto["output"] or {})


def test_the_hook_that_vetoed_the_request_is_named(lifecycle: Run):
    spans = lifecycle.stored.spans("please veto this one")
    (veto,) = [s for s in spans if s["meta"].get("stopped_event")]
    assert veto["name"] == "on_llm_request ProbePlugin.veto"
    assert veto["plugin"]["name"] == PROBE
    assert not [s for s in spans if s["span_type"] == "llm_call"]
    assert lifecycle.stored.one("please veto this one")["trace"]["status"] == "ok"
    (root,) = [s for s in spans if s["parent_id"] is None]
    assert root["meta"]["stopped"] is True


def test_llm_calls_carry_model_tokens_and_output_and_end_before_what_follows(lifecycle: Run):
    doc = lifecycle.stored.one("What is the weather in Paris?")
    spans = doc["spans"]
    llms = [s for s in spans if s["span_type"] == "llm_call"]
    served = lifecycle.served("What is the weather in Paris?")
    assert len(llms) == len(served) == 2
    for span, resp in zip(llms, served, strict=True):
        usage = resp.usage
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        assert span["meta"]["model"] == "fake-model"
        assert (span["meta"]["input_tokens"], span["meta"]["output_tokens"],
                span["meta"]["cached_tokens"]) == (usage["prompt_tokens"],
                                                   usage["completion_tokens"], cached)
        assert span["status"] == "ok" and "closed_early" not in span["meta"]
        assert span["input"]["messages"][-1]["role"] in ("user", "tool")
    assert llms[0]["output"]["tool_calls"][0]["name"] == "get_weather"
    assert llms[1]["output"]["text"] == "Forecast: " + weather("Paris")
    (tool,) = [s for s in spans if s["span_type"] == "tool_call"]
    # each LLM span ends before the next span of its agent starts, and inside its parent
    index = by_id(spans)
    assert llms[0]["end_ns"] <= tool["start_ns"] and tool["end_ns"] <= llms[1]["start_ns"]
    for span in llms:
        parent = index[span["parent_id"]]
        assert parent["start_ns"] <= span["start_ns"] and span["end_ns"] <= parent["end_ns"]
    trace = doc["trace"]
    assert trace["input_tokens"] == sum(r.usage["prompt_tokens"] for r in served)
    assert trace["output_tokens"] == sum(r.usage["completion_tokens"] for r in served)


def test_tool_calls_carry_owner_arguments_call_id_and_result(lifecycle: Run):
    spans = lifecycle.stored.spans("What is the weather in Paris?")
    (tool,) = [s for s in spans if s["span_type"] == "tool_call"]
    served = lifecycle.served("What is the weather in Paris?")
    assert tool["name"] == "get_weather"
    assert tool["plugin"]["name"] == PROBE
    assert tool["input"] == {"city": "Paris"}
    assert tool["meta"]["tool_call_id"] == served[0].tool_calls[0]["id"]
    assert tool["output"]["result"] == weather("Paris")
    assert path_of(tool, by_id(spans))[-1] == "InternalAgent"


def test_the_handoff_holds_the_subagents_own_calls(lifecycle: Run):
    spans = lifecycle.stored.spans("Ask the weather agent about Tokyo")
    index = by_id(spans)
    (sub,) = [s for s in spans if s["span_type"] == "subagent_call"]
    assert sub["meta"]["agent_name"] == SUBAGENT
    assert sub["input"]["task"] == "What is the weather in Tokyo?"
    assert sub["output"]["result"] == "Subagent: " + weather("Tokyo")
    inside = [s for s in spans if s["parent_id"] == sub["span_id"]]
    assert [s["span_type"] for s in inside] == ["llm_call", "tool_call", "llm_call"]
    assert inside[1]["plugin"]["name"] == PROBE and inside[1]["input"] == {"city": "Tokyo"}
    outside = [s for s in spans if s["span_type"] == "llm_call" and sub["span_id"] not in
               {p["span_id"] for p in _ancestors(s, index)}]
    assert len(outside) == 2
    served = lifecycle.served_by("handoff", "sub-tool", "sub-answer", "handoff-answer")
    trace = lifecycle.stored.one("Ask the weather agent about Tokyo")["trace"]
    assert trace["llm_calls"] == 4 and trace["tool_calls"] == 1  # the handoff is no tool_call
    assert trace["input_tokens"] == sum(r.usage["prompt_tokens"] for r in served)


def _ancestors(span: dict, index: dict[str, dict]) -> list[dict]:
    out = []
    while span["parent_id"]:
        span = index[span["parent_id"]]
        out.append(span)
    return out


def test_concurrent_messages_get_their_own_traces(lifecycle: Run):
    for i in range(4):
        doc = lifecycle.stored.one(f"/probe concurrent {i}")
        assert doc["trace"]["user_id"] == f"user{i}"
        assert {s["trace_id"] for s in doc["spans"]} == {doc["trace"]["trace_id"]}
        (handler,) = named(doc["spans"], "ProbePlugin.probe")
        assert handler["plugin"]["name"] == PROBE


def test_no_span_is_left_running_and_roots_carry_astrbots_own_trace_id(lifecycle: Run):
    for docs in lifecycle.stored.traces.values():
        for doc in docs:
            assert doc["trace"]["status"] in ("ok", "error")
            assert {s["status"] for s in doc["spans"]} <= {"ok", "error"}
            assert doc["trace"]["attributes"]["astrbot_span_id"]
            assert doc["trace"]["umo"].startswith("webchat:")


# -- unload, load, reload ---------------------------------------------------------------------

def test_unloading_leaves_no_patch_thread_process_port_or_route(lifecycle: Run):
    before = lifecycle.step("status-loaded")["result"]
    assert before["writer_pid"] and any(t.startswith("botrace") for t in before["threads"])
    checks = lifecycle.step("pristine")["result"]
    assert checks["stage_count"] >= 9
    assert {k: v for k, v in checks.items() if v is not True and k not in (
        "threads", "routes", "stage_count")} == {}
    assert checks["threads"] == [] and checks["routes"] == []
    assert lifecycle.step("unloaded")["reply"] == "probe says: while botrace is unloaded" + DECORATION
    assert "/probe while botrace is unloaded" not in lifecycle.stored.traces


def test_turning_on_and_reloading_traces_again_without_double_wrapping(lifecycle: Run):
    for step in ("status-on-again", "status-reloaded"):
        status = lifecycle.step(step)["result"]
        assert status["loaded"] and status["enabled"] and status["unavailable"] == {}
    for outline in ("/probe after turning botrace on", "(reloaded) What is the weather in Paris?"):
        spans = lifecycle.stored.spans(outline)
        root = next(s for s in spans if s["parent_id"] is None)
        top = [s["name"] for s in spans if s["parent_id"] == root["span_id"]]
        assert top[: len(STAGES)] == STAGES
        for s in spans:  # a wrapper wrapped twice would nest a stage in itself
            if s["parent_id"]:
                assert by_id(spans)[s["parent_id"]]["name"] != s["name"] or \
                    s["span_type"] != "pipeline_stage"
    reloaded = lifecycle.stored.spans("(reloaded) What is the weather in Paris?")
    assert len([s for s in reloaded if s["span_type"] == "llm_call"]) == 2


# -- streaming, with the plugin folder written by the command ------------------------------------

@pytest.fixture(scope="module")
def streamed(astrbot_env: AstrBotEnv, tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("botrace-stream")
    assert botrace_main(["astrbot-plugin", "--out", str(root / "data" / "plugins")]) == 0
    astrbot_env.install(str(_requirements(tmp_path_factory)))
    plugin_config(root, {"page": {"port": free_port()}})
    scenario = {
        "plugins": [str(PROBE_PLUGIN)],
        "streaming": True,
        "config": {"trace_enable": True},
        "steps": [{"op": "message", "name": "paris", "text": "What is the weather in Paris?"}],
    }
    return start(astrbot_env, root, scenario)


def test_streaming_llm_calls_have_time_to_first_token_and_run_inside_respond(streamed: Run):
    spans = streamed.stored.spans("What is the weather in Paris?")
    index = by_id(spans)
    llms = [s for s in spans if s["span_type"] == "llm_call"]
    assert len(llms) == 2 and all(s["meta"]["stream"] for s in llms)
    final = llms[-1]
    assert 0 < final["meta"]["ttft_ms"] <= (final["end_ns"] - final["start_ns"]) / 1e6
    assert final["output"]["text"] == "Forecast: " + weather("Paris")
    assert "Respond" in path_of(final, index)  # in streaming mode the agent runs in Respond
    served = streamed.served("What is the weather in Paris?")
    assert [s["meta"]["output_tokens"] for s in llms] == [
        r.usage["completion_tokens"] for r in served]


# -- a bad setting, and an AstrBot missing a function botrace wraps ----------------------------

SABOTAGE = """
from astrbot.core.star.context import Context
state["llm_generate"] = Context.__dict__["llm_generate"]
del Context.llm_generate
result = True
"""

RESTORE = """
from astrbot.core.star.context import Context
Context.llm_generate = state["llm_generate"]
result = True
"""

FIX_CONFIG = """
import json
path = "data/config/astrbot_plugin_botrace_config.json"
conf = json.load(open(path, encoding="utf-8-sig"))
conf["store"]["retention_days"] = 5
json.dump(conf, open(path, "w", encoding="utf-8-sig"))
result = True
"""


@pytest.fixture(scope="module")
def degraded(astrbot_env: AstrBotEnv, tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("botrace-degraded")
    assert botrace_main(["astrbot-plugin", "--out", str(root / "data" / "plugins")]) == 0
    astrbot_env.install(str(_requirements(tmp_path_factory)))
    plugin_config(root, {"page": {"port": free_port()}, "store": {"retention_days": "soon"}})
    scenario = {
        "plugins": [str(PROBE_PLUGIN)],
        "config": {"trace_enable": True},
        "steps": [
            exec_step("status-bad", STATUS),
            {"op": "message", "name": "bad", "text": "/probe with a bad botrace setting"},
            exec_step("fix", FIX_CONFIG),
            exec_step("sabotage", SABOTAGE),
            {"op": "plugin", "name": "reload", "action": "reload", "plugin": PLUGIN_NAME},
            exec_step("status-degraded", STATUS),
            {"op": "message", "name": "paris", "text": "What is the weather in Paris?"},
            page_call("health", "GET", "api/v1/health"),
            exec_step("restore", RESTORE),
        ],
    }
    return start(astrbot_env, root, scenario)


def test_a_bad_setting_stops_botrace_with_its_name_and_astrbot_keeps_answering(degraded: Run):
    assert not degraded.step("status-bad")["result"]["loaded"]
    logs = " ".join(r["msg"] for r in degraded.results["logs"])
    assert "botrace plugin setting store.retention_days: expected an integer >= 0, got 'soon'" in logs
    assert degraded.step("bad")["reply"] == "probe says: with a bad botrace setting" + DECORATION
    assert "/probe with a bad botrace setting" not in degraded.stored.traces


def test_a_missing_astrbot_function_costs_its_spans_only_and_shows_in_health(degraded: Run):
    status = degraded.step("status-degraded")["result"]
    assert status["loaded"] and status["retention_days"] == 5
    assert list(status["unavailable"]) == ["llm_generate"]
    health = degraded.step("health")["result"]["body"]
    adapter = next(s for s in health["tracer"]["sinks"] if s["name"] == "astrbot adapter")
    assert list(adapter["unavailable"]) == ["llm_call (Context.llm_generate)"]
    assert adapter["state"] == "degraded" and health["status"] == "degraded"
    assert degraded.step("paris")["reply"] == "Forecast: " + weather("Paris") + DECORATION
    spans = degraded.stored.spans("What is the weather in Paris?")
    assert len([s for s in spans if s["span_type"] == "llm_call"]) == 2
    logs = " ".join(r["msg"] for r in degraded.results["logs"])
    assert "cannot trace llm_call (Context.llm_generate)" in logs


# -- the newest AstrBot 4.x (Python 3.12) ---------------------------------------------------------

@pytest.fixture(scope="module")
def newest(astrbot_env_py312: AstrBotEnv, tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("botrace-newest")
    assert botrace_main(["astrbot-plugin", "--out", str(root / "data" / "plugins")]) == 0
    astrbot_env_py312.install(str(_requirements(tmp_path_factory)))
    plugin_config(root, {"page": {"port": free_port()}})
    scenario = {
        "plugins": [str(PROBE_PLUGIN)],
        "config": {"trace_enable": True},
        "subagents": [{"name": SUBAGENT, "system_prompt": SUBAGENT_PROMPT,
                       "public_description": "Knows the weather anywhere.",
                       "tools": ["get_weather"]}],
        "steps": [
            exec_step("status", STATUS),
            {"op": "message", "name": "probe", "text": "/probe hi"},
            {"op": "message", "name": "veto", "text": "please veto this one"},
            {"op": "message", "name": "handoff", "text": "Ask the weather agent about Tokyo"},
            {"op": "trace_settings", "name": "dashboard-off", "trace_enable": False},
            exec_step("follow-off", FOLLOW.format(want=False)),
            exec_step("status-loaded", STATUS),
            {"op": "plugin", "name": "turn-off", "action": "turn_off", "plugin": PLUGIN_NAME},
            exec_step("pristine", PRISTINE),
        ],
    }
    return start(astrbot_env_py312, root, scenario)


def test_the_newest_astrbot_is_traced_whole(newest: Run):
    status = newest.step("status")["result"]
    assert status["loaded"] and status["unavailable"] == {}
    spans = newest.stored.spans("/probe hi")
    assert named(spans, "ProbePlugin.probe")[0]["plugin"]["name"] == PROBE
    assert {s["name"] for s in spans} >= set(STAGES)
    veto = newest.stored.spans("please veto this one")
    assert [s["name"] for s in veto if s["meta"].get("stopped_event")] == [
        "on_llm_request ProbePlugin.veto"]
    handoff = newest.stored.spans("Ask the weather agent about Tokyo")
    (sub,) = [s for s in handoff if s["span_type"] == "subagent_call"]
    inside = [s["span_type"] for s in handoff if s["parent_id"] == sub["span_id"]]
    assert inside == ["llm_call", "tool_call", "llm_call"]
    served = newest.served_by("handoff", "sub-tool", "sub-answer", "handoff-answer")
    llms = [s for s in handoff if s["span_type"] == "llm_call"]
    assert sorted(s["meta"]["input_tokens"] for s in llms) == sorted(
        r.usage["prompt_tokens"] for r in served)


def test_the_newest_astrbot_switch_and_unload(newest: Run):
    follow = newest.step("follow-off")["result"]
    assert not follow["enabled"] and follow["after_s"] < 1.0
    checks = newest.step("pristine")["result"]
    assert {k: v for k, v in checks.items() if v is not True and k not in (
        "threads", "routes", "stage_count")} == {}
    assert checks["threads"] == [] and checks["routes"] == []

