"""Cost of botrace inside the real AstrBot, per message: not installed vs installed-off vs on.

    python bench/bench_astrbot.py                      # 5 rounds of 3 runs, 100 messages each
    python bench/bench_astrbot.py --rounds 9 --messages 200 --python 3.12

Each run is a fresh AstrBot process (AstrBot allows one core lifecycle per process) from
the test suite's AstrBot environment (``tests/real_astrbot``: astrbot 4.14.6 on Python
3.11, created on first use), with the probe plugin and an OpenAI-compatible fake model on
127.0.0.1 answering at once (0 ms model latency), handling ``--messages`` chat messages
through AstrBot's real webchat queue, one after another; each message is one agent turn
(stages, hooks, one LLM call). The three configurations:

- ``not installed``: AstrBot without the botrace plugin;
- ``off``: the plugin installed (``botrace astrbot-plugin``), AstrBot's ``trace_enable`` off;
- ``on``: the plugin installed and tracing into its SQLite store (writer process).

Within a round the three runs go in a rotating order, so a slow minute of this shared
machine costs every configuration alike. Measured per message, over the message steps
only (start-up and shutdown excluded): AstrBot's process CPU time, the store writer
process's CPU time (``on``/``off``; read from /proc), and wall time. Printed: the medians
over rounds and the ratios against ``not installed`` of the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "real_astrbot"))

from astrbot_envs import py311_env, py312_env  # noqa: E402
from astrbot_runner import PROBE_PLUGIN, free_port, run_scenario  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402

from botrace_host_adapter.astrbot.package import REQUIREMENTS, write_plugin  # noqa: E402

CONFIGS = ("not installed", "off", "on")

#: CPU seconds of the botrace store's writer process so far (None when there is none)
WRITER_CPU = """
import os
from astrbot.core.star.star import star_map
md = star_map.get("data.plugins.astrbot_plugin_botrace.main")
rt = getattr(getattr(md, "star_cls", None), "runtime", None)
proc = getattr(getattr(rt, "store", None), "_proc", None)
result = None
if proc is not None:
    fields = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
    result = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
"""


def run_once(env, config: str, messages: int, workdir: Path, plugin: Path) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"run-{config.replace(' ', '-')}-", dir=workdir))
    plugins = [str(PROBE_PLUGIN)] + ([] if config == "not installed" else [str(plugin)])
    if config != "not installed":
        conf = root / "data" / "config" / "astrbot_plugin_botrace_config.json"
        conf.parent.mkdir(parents=True)
        conf.write_text(json.dumps({"page": {"port": free_port()}}))
    steps = [{"op": "message", "name": "warm", "text": "warm up"},
             {"op": "exec", "name": "writer-before", "code": WRITER_CPU}]
    steps += [{"op": "message", "name": f"m{i}", "text": f"hello number {i}"}
              for i in range(messages)]
    steps += [{"op": "sleep", "seconds": 0.5},  # the writer writes what the messages left
              {"op": "exec", "name": "writer-after", "code": WRITER_CPU}]
    scenario = {"plugins": plugins, "config": {"trace_enable": config == "on"},
                "steps": steps}
    with FakeOpenAI(default_text="hi there") as fake:
        results = run_scenario(env, root, scenario, llm=fake, timeout=120 + messages)
    msgs = [s for s in results["steps"] if s["op"] == "message" and s["name"] != "warm"]
    by_name = {s["name"]: s for s in results["steps"]}
    before, after = by_name["writer-before"]["result"], by_name["writer-after"]["result"]
    writer = (after - before) if before is not None and after is not None else 0.0
    cpu = sum(s["cpu_s"] for s in msgs)
    return {"cpu_ms": cpu / len(msgs) * 1000, "writer_ms": writer / len(msgs) * 1000,
            "wall_ms": statistics.median(s["wall_s"] for s in msgs) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--python", choices=("3.11", "3.12"), default="3.11",
                        help="3.11: astrbot 4.14.6; 3.12: the newest astrbot 4.x")
    args = parser.parse_args()
    env = py311_env() if args.python == "3.11" else py312_env()
    if env is None:
        print(f"no Python {args.python} interpreter for the AstrBot environment")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="bench-astrbot-"))
    req = workdir / "requirements.txt"
    req.write_text("\n".join(REQUIREMENTS) + "\n")
    env.install(str(req))
    plugin = write_plugin(workdir / "plugin")
    print(f"AstrBot {env.astrbot_version} on Python {env.python_version}, {args.rounds} rounds "
          f"x {len(CONFIGS)} runs x {args.messages} messages (0 ms model)", flush=True)
    samples: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    for r in range(args.rounds):
        order = CONFIGS[r % 3:] + CONFIGS[:r % 3]
        t0 = time.monotonic()
        for config in order:
            samples[config].append(run_once(env, config, args.messages, workdir, plugin))
        line = "  ".join(f"{c}: {samples[c][-1]['cpu_ms']:.2f}+{samples[c][-1]['writer_ms']:.2f}"
                         for c in CONFIGS)
        print(f"round {r + 1}: CPU ms/message (host+writer) {line}  "
              f"({time.monotonic() - t0:.0f} s)", flush=True)

    def med(config: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[config])

    base_cpu, base_wall = med("not installed", "cpu_ms"), med("not installed", "wall_ms")
    print(f"\n{'':14} {'host CPU':>10} {'+ writer':>10} {'wall':>9}   ratios vs not installed "
          "(host CPU / host+writer CPU / wall)")
    for config in CONFIGS:
        cpu, writer, wall = med(config, "cpu_ms"), med(config, "writer_ms"), med(config, "wall_ms")
        print(f"{config:14} {cpu:8.2f}ms {cpu + writer:8.2f}ms {wall:7.2f}ms   "
              f"{cpu / base_cpu:.3f}x / {(cpu + writer) / base_cpu:.3f}x / {wall / base_wall:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
