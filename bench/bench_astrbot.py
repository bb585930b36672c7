"""Cost of botrace inside the real AstrBot, per message: not installed vs installed-off vs on.

    python bench/bench_astrbot.py                      # 6 rounds of 4 phases, 40 messages each
    python bench/bench_astrbot.py --rounds 10 --messages 60 --python 3.12

One AstrBot process (from the test suite's environment, ``tests/real_astrbot``: astrbot
4.14.6 on Python 3.11, created on first use) with the probe plugin, the botrace plugin
(``botrace astrbot-plugin``) and an OpenAI-compatible fake model on 127.0.0.1 answering at
once (0 ms model latency) handles chat messages through AstrBot's real webchat queue, one
after another, each from a new session (so no conversation history grows between phases);
each message is one agent turn (stages, hooks, one LLM call). The phases:

- ``not installed``: the botrace plugin turned off (AstrBot's plugin manager: every wrapped
  function is AstrBot's own again, no thread, no writer), ``trace_enable`` off;
- ``off``: the plugin on, ``trace_enable`` off;
- ``not installed, on``: the plugin off, ``trace_enable`` on. AstrBot's switch also turns on
  AstrBot's own flat trace (``TraceSpan.record``), whose cost is AstrBot's: this is the
  baseline of ``on``;
- ``on``: the plugin on and tracing into its SQLite store (a writer process).

The four phases alternate within the one process, round after round, in a rotating order,
so a slow minute of this shared machine, and the process's warming up, cost every phase
alike. Measured per message, over the message steps only: AstrBot's process CPU time (all
its threads: botrace's dispatcher and store feeder included), the store writer process's CPU
time (from /proc) and wall time. Printed: per phase the median over rounds, and the ratios
of ``off`` against ``not installed`` and of ``on`` against ``not installed, on``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "real_astrbot"))

from astrbot_envs import py311_env, py312_env  # noqa: E402
from astrbot_runner import PROBE_PLUGIN, free_port, run_scenario  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402

from botrace_host_adapter.astrbot.package import REQUIREMENTS, write_plugin  # noqa: E402
from botrace_host_adapter.astrbot.plugin import PLUGIN_NAME  # noqa: E402

PHASES = ("not installed", "off", "not installed, on", "on")
#: phase -> (botrace plugin on, trace_enable)
SETUP = {"not installed": (False, False), "off": (True, False),
         "not installed, on": (False, True), "on": (True, True)}
BASELINE = {"not installed": "not installed", "off": "not installed",
            "not installed, on": "not installed, on", "on": "not installed, on"}

#: CPU seconds of the botrace store's writer process so far (None when there is none)
WRITER_CPU = """
import os
from astrbot.core.star.star import star_map
md = star_map.get("data.plugins.astrbot_plugin_botrace.main")
rt = getattr(getattr(md, "star_cls", None), "runtime", None)
proc = getattr(getattr(rt, "store", None), "_proc", None) if getattr(rt, "running", False) else None
result = None
if proc is not None:
    fields = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
    result = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
"""

#: wait until botrace (if on) follows trace_enable, then for the writer to finish the last phase
SETTLE = """
import asyncio
from astrbot.core.star.star import star_map
md = star_map.get("data.plugins.astrbot_plugin_botrace.main")
rt = getattr(getattr(md, "star_cls", None), "runtime", None)
for _ in range(200):
    if not getattr(rt, "running", False) or rt.tracer.enabled == {enabled}:
        break
    await asyncio.sleep(0.01)
result = True
"""


def scenario(rounds: int, messages: int) -> tuple[dict, list[tuple[int, str]]]:
    steps: list[dict] = [{"op": "message", "text": "warm up", "session": "warm"}]
    plugin_on, n = True, 0
    phases = []
    for r in range(rounds):
        for phase in PHASES[r % 4:] + PHASES[:r % 4]:
            want_on, enabled = SETUP[phase]
            if want_on != plugin_on:
                steps.append({"op": "plugin", "action": "turn_on" if want_on else "turn_off",
                              "plugin": PLUGIN_NAME})
                plugin_on = want_on
            steps += [
                {"op": "set_config", "key": "trace_enable", "value": enabled},
                {"op": "exec", "code": SETTLE.format(enabled=enabled)},
                {"op": "sleep", "seconds": 0.3},
                {"op": "exec", "name": f"{r}|{phase}|before", "code": WRITER_CPU},
            ]
            for _ in range(messages):
                steps.append({"op": "message", "name": f"{r}|{phase}|m", "text": f"hello {n}",
                              "session": f"s{n}"})
                n += 1
            steps += [{"op": "sleep", "seconds": 0.3},  # the writer writes what is queued
                      {"op": "exec", "name": f"{r}|{phase}|after", "code": WRITER_CPU}]
            phases.append((r, phase))
    return {"plugins": [str(PROBE_PLUGIN)], "steps": steps}, phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--messages", type=int, default=40, help="messages per phase")
    parser.add_argument("--python", choices=("3.11", "3.12"), default="3.11",
                        help="3.11: astrbot 4.14.6; 3.12: the newest astrbot 4.x")
    args = parser.parse_args()
    env = py311_env() if args.python == "3.11" else py312_env()
    if env is None:
        print(f"no Python {args.python} interpreter for the AstrBot environment")
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-astrbot-"))
    req = work / "requirements.txt"
    req.write_text("\n".join(REQUIREMENTS) + "\n")
    env.install(str(req))
    root = work / "astrbot"
    write_plugin(root / "data" / "plugins")
    conf = root / "data" / "config" / f"{PLUGIN_NAME}_config.json"
    conf.parent.mkdir(parents=True)
    conf.write_text(json.dumps({"page": {"port": free_port()}}))
    scen, phases = scenario(args.rounds, args.messages)
    print(f"AstrBot {env.astrbot_version} on Python {env.python_version}: {args.rounds} rounds x "
          f"{len(PHASES)} phases x {args.messages} messages in one process (0 ms model)...",
          flush=True)
    with FakeOpenAI(default_text="hi there") as fake:
        results = run_scenario(env, root, scen, llm=fake,
                               timeout=300 + 0.5 * args.rounds * len(PHASES) * args.messages)
    steps = results["steps"]
    by_name = {s["name"]: s for s in steps if s.get("name")}
    samples: dict[str, list[dict]] = {p: [] for p in PHASES}
    for r, phase in phases:
        msgs = [s for s in steps if s.get("name") == f"{r}|{phase}|m"]
        before = by_name[f"{r}|{phase}|before"]["result"]
        after = by_name[f"{r}|{phase}|after"]["result"]
        writer = after - before if before is not None and after is not None else 0.0
        samples[phase].append({
            "cpu_ms": sum(s["cpu_s"] for s in msgs) / len(msgs) * 1000,
            "writer_ms": writer / len(msgs) * 1000,
            "wall_ms": statistics.median(s["wall_s"] for s in msgs) * 1000})
    for r in range(args.rounds):
        line = "  ".join(f"{p}: {samples[p][r]['cpu_ms']:.1f}+{samples[p][r]['writer_ms']:.1f}"
                         for p in PHASES)
        print(f"round {r + 1}: CPU ms/message (host+writer)  {line}")

    def med(phase: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[phase])

    def ratios(phase: str) -> tuple[float, float, float]:
        """Per round against the same round's baseline (rounds are paired), the medians."""
        pairs = list(zip(samples[phase], samples[BASELINE[phase]], strict=True))
        return (statistics.median(a["cpu_ms"] / b["cpu_ms"] for a, b in pairs),
                statistics.median((a["cpu_ms"] + a["writer_ms"]) / (b["cpu_ms"] + b["writer_ms"])
                                  for a, b in pairs),
                statistics.median(a["wall_ms"] / b["wall_ms"] for a, b in pairs))

    print(f"\n{'':18} {'host CPU':>10} {'+ writer':>10} {'wall':>9}   median of per-round ratios "
          "vs the baseline (host CPU / host+writer CPU / wall)")
    for phase in PHASES:
        cpu, writer, wall = med(phase, "cpu_ms"), med(phase, "writer_ms"), med(phase, "wall_ms")
        host, total, walls = ratios(phase)
        print(f"{phase:18} {cpu:8.2f}ms {cpu + writer:8.2f}ms {wall:7.2f}ms   "
              f"{host:.3f}x / {total:.3f}x / {walls:.3f}x   (vs {BASELINE[phase]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
