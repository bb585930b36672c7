"""The probe: one of each kind of plugin handler, each leaving a mark a test can see.

Written the way an AstrBot plugin author writes a plugin (a ``Star`` subclass found in
``main.py``, handlers registered by ``filter`` decorators); it imports only AstrBot's public
API, so it loads only inside AstrBot.

- ``/probe <text>`` replies ``probe says: <text>``;
- the LLM tool ``get_weather(city)`` returns ``WEATHER_FORMAT.format(city=...)``;
- an ``on_llm_request`` hook appends ``SYSTEM_MARKER`` to the system prompt (the fake model
  server sees it);
- another ``on_llm_request`` hook adds ``CONTEXT_NOTE`` to the history (``req.contexts``)
  when the message asks for the weather in Paris (context injection, as retrieval plugins do);
- another ``on_llm_request`` hook stops the event when the message contains "veto" (so no
  LLM request is made);
- an ``on_decorating_result`` hook appends ``DECORATION`` to the reply's text.

Every handler also appends a JSON line to ``data/plugin_data/astrbot_plugin_probe/hooks.jsonl``
so a test can tell which ran, in which order, and for which message.
"""

from __future__ import annotations

import json
import time

from astrbot.api import logger
from astrbot.api.event import AstrMessageEvent, filter
from astrbot.api.message_components import Plain
from astrbot.api.provider import ProviderRequest
from astrbot.api.star import Context, Star, StarTools

PLUGIN_NAME = "astrbot_plugin_probe"
SYSTEM_MARKER = "[probe-system-marker]"
DECORATION = " [probe-decorated]"
CONTEXT_NOTE = "Context from the probe: Paris is in France."
WEATHER_FORMAT = "Weather in {city}: sunny, 21 C (probe)"


class ProbePlugin(Star):
    def __init__(self, context: Context, config: dict | None = None) -> None:
        super().__init__(context)
        self.events_path = StarTools.get_data_dir(PLUGIN_NAME) / "hooks.jsonl"

    def _mark(self, hook: str, event: AstrMessageEvent | None, **fields) -> None:
        record = {"t": time.time(), "hook": hook, **fields}
        if event is not None:
            record["message"] = event.message_str
            record["session"] = event.unified_msg_origin
        with open(self.events_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    @filter.command("probe")
    async def probe(self, event: AstrMessageEvent):
        """Reply with the text after the command."""
        text = event.message_str.strip()
        text = text.split(None, 1)[1] if len(text.split(None, 1)) > 1 else ""
        self._mark("command", event, text=text)
        yield event.plain_result(f"probe says: {text}")

    @filter.llm_tool(name="get_weather")
    async def get_weather(self, event: AstrMessageEvent, city: str) -> str:
        """Get the current weather of a city.

        Args:
            city(string): the name of the city
        """
        self._mark("get_weather", event, city=city)
        return WEATHER_FORMAT.format(city=city)

    @filter.on_llm_request()
    async def add_system_marker(self, event: AstrMessageEvent, req: ProviderRequest) -> None:
        """Mark the request, so the model server sees that this hook ran."""
        self._mark("on_llm_request", event)
        req.system_prompt = f"{req.system_prompt or ''}\n{SYSTEM_MARKER}"

    @filter.on_llm_request()
    async def inject_context(self, event: AstrMessageEvent, req: ProviderRequest) -> None:
        """Add a note to the history the model sees (only for the weather in Paris)."""
        if "weather in paris" in event.message_str.lower():
            req.contexts.append({"role": "user", "content": CONTEXT_NOTE})

    @filter.on_llm_request()
    async def veto(self, event: AstrMessageEvent, req: ProviderRequest) -> None:
        """Stop the event before the model is asked when the message says "veto"."""
        if "veto" in event.message_str.lower():
            self._mark("veto", event)
            logger.info("probe: vetoed an LLM request")
            event.stop_event()

    @filter.on_decorating_result()
    async def decorate(self, event: AstrMessageEvent) -> None:
        """Append the decoration to the reply's last text segment."""
        result = event.get_result()
        if result is None or not result.chain:
            return
        self._mark("on_decorating_result", event)
        for comp in reversed(result.chain):
            if isinstance(comp, Plain):
                comp.text += DECORATION
                return
        result.chain.append(Plain(DECORATION))

    async def terminate(self) -> None:
        self._mark("terminate", None)
