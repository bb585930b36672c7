"""botrace for AstrBot: a live span tree of every message, on the Trace page.

Every pipeline stage, plugin handler and event hook (credited to its plugin),
LLM call (model, tokens, time to first token), tool call and subagent handoff
of a message, with timings, inputs, outputs and errors. Switch it with
AstrBot's own Trace switch (``trace_enable``); configure it in the plugin's
settings; open the page at the address the plugin logs at start (by default
http://127.0.0.1:6196/), or from the plugin's detail page in AstrBot releases
that show plugin pages.

This file was written by ``botrace astrbot-plugin``; botrace's code is in
``_vendor/`` next to it, so the plugin needs nothing installed but the
packages in ``requirements.txt``.
"""

import sys
from pathlib import Path

from astrbot.api.star import Context, Star

_VENDOR = str(Path(__file__).resolve().parent / "_vendor")
if _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)

from botrace_host_adapter.astrbot.plugin import BotraceRuntime  # noqa: E402


class BotracePlugin(Star):
    """Starts botrace when AstrBot loads the plugin and removes every trace of it on unload."""

    def __init__(self, context: Context, config=None) -> None:
        super().__init__(context)
        self.runtime = BotraceRuntime(context, config)

    async def initialize(self) -> None:
        await self.runtime.start()

    async def terminate(self) -> None:
        await self.runtime.stop()
