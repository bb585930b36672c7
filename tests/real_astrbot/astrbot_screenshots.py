"""The docs' screenshot of a real AstrBot trace: AstrBot 4.14.6 with the botrace plugin.

    python tests/real_astrbot/astrbot_screenshots.py [--out docs/screenshots]

Runs the real AstrBot (the test suite's environment) with the botrace plugin, the probe
plugin and the fake model through a short conversation (a tool turn, a handoff to a
subagent, a vetoed request), then opens the database the plugin wrote with ``botrace
serve`` and saves the handoff trace's page as ``astrbot-trace.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from astrbot_envs import py311_env  # noqa: E402
from astrbot_runner import PROBE_PLUGIN, free_port, run_scenario  # noqa: E402
from browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402
from test_harness import SUBAGENT, SUBAGENT_PROMPT, rules  # noqa: E402

from botrace_host_adapter.astrbot.package import REQUIREMENTS, write_plugin  # noqa: E402

HANDOFF = "Ask the weather agent about Tokyo"


def record(root: Path) -> Path:
    env = py311_env()
    req = root / "requirements.txt"
    req.parent.mkdir(parents=True, exist_ok=True)
    req.write_text("\n".join(REQUIREMENTS) + "\n")
    env.install(str(req))
    write_plugin(root / "data" / "plugins")
    conf = root / "data" / "config" / "astrbot_plugin_botrace_config.json"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(json.dumps({"page": {"port": free_port()}}))
    scenario = {
        "plugins": [str(PROBE_PLUGIN)],
        "config": {"trace_enable": True},
        "subagents": [{"name": SUBAGENT, "system_prompt": SUBAGENT_PROMPT,
                       "public_description": "Knows the weather anywhere.",
                       "tools": ["get_weather"]}],
        "subagent_main_enable": False,
        "steps": [
            {"op": "message", "text": "/probe hi", "user": "alice"},
            {"op": "message", "text": "What is the weather in Paris?", "user": "alice"},
            {"op": "message", "text": "please veto this one", "user": "bob"},
            {"op": "set_config", "key": "subagent_orchestrator.main_enable", "value": True},
            {"op": "message", "text": HANDOFF, "user": "alice"},
        ],
    }
    with FakeOpenAI(rules()) as fake:
        run_scenario(env, root, scenario, llm=fake)
    return root / "data" / "plugin_data" / "astrbot_plugin_botrace" / "botrace.db"


def shoot(db: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    botrace = Path(sys.executable).parent / "botrace"
    server = subprocess.Popen([str(botrace), "serve", "--db", str(db), "--port", str(port)],
                              start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}/"
        for _ in range(100):
            try:
                with urllib.request.urlopen(base + "api/v1/traces?limit=20", timeout=2) as r:
                    traces = json.load(r)["traces"]
                break
            except OSError:
                time.sleep(0.1)
        trace_id = next(t["trace_id"] for t in traces if t["outline"] == HANDOFF)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900},
                                    color_scheme="light")
            page.goto(f"{base}traces/{trace_id}")
            page.get_by_text("llm fake-model").first.wait_for()
            page.get_by_text("subagent weather_agent").first.click()
            page.wait_for_timeout(300)
            out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out / "astrbot-trace.png"))
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(HERE.parent.parent / "docs" / "screenshots"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = record(Path(tmp) / "astrbot")
        shoot(db, Path(args.out))
    print(f"wrote {Path(args.out) / 'astrbot-trace.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
