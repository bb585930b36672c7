"""The message pipeline: AstrBot's stages, in AstrBot's order, and its onion scheduler.

A stage's ``process(event)`` is either a coroutine or an async generator.
The scheduler runs the stages in order; when a stage is a generator, every
later stage runs at each of its ``yield`` s — so the generator's span covers
them (the "onion"), and ResultDecorate/Respond run once per result that
Process yields. When a generator stage finishes, the stages after it have
already run inside it, so the scheduler is done. A stage that calls
``event.stop_event()`` ends the message there.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from botrace_host_adapter.refhost.event import MessageEvent, MessageEventResult
from botrace_host_adapter.refhost.star import EventType, StarHandlerMetadata

if TYPE_CHECKING:
    from botrace_host_adapter.refhost.host import RefHost

__all__ = ["STAGES_ORDER", "PipelineScheduler"]

log = logging.getLogger("refhost.pipeline")

STAGES_ORDER = (
    "WakingCheck", "WhitelistCheck", "SessionStatusCheck", "RateLimit", "ContentSafetyCheck",
    "PreProcess", "Process", "ResultDecorate", "Respond",
)


class Stage:
    name = "Stage"

    def __init__(self, host: RefHost) -> None:
        self.host = host

    def process(self, event: MessageEvent) -> Any:  # coroutine or async generator
        raise NotImplementedError


class WakingCheck(Stage):
    """Is the bot addressed? Which message handlers apply?"""

    name = "WakingCheck"

    async def process(self, event: MessageEvent) -> None:
        text = event.message_str.strip()
        prefixes = self.host.config["wake_prefix"]
        for prefix in prefixes:
            if prefix and text.startswith(prefix):
                event.is_wake = event.is_command = True
                text = text[len(prefix):].lstrip()
                break
        if "@bot" in text:
            event.is_wake = True
            text = text.replace("@bot", "").strip()
        if event.is_private_chat():
            event.is_wake = True
        event.message_str = text
        handlers = [
            h for h in self.host.stars.handlers(EventType.AdapterMessageEvent)
            if h.matches(text, event.is_command) and (event.is_wake or h.command is None)
        ]
        event.extras["activated_handlers"] = handlers
        if not event.is_wake and not handlers:
            event.stop_event()


class WhitelistCheck(Stage):
    name = "WhitelistCheck"

    async def process(self, event: MessageEvent) -> None:
        allowed = self.host.config["id_whitelist"]
        if allowed and event.umo not in allowed and event.session_id not in allowed:
            event.stop_event()


class SessionStatusCheck(Stage):
    name = "SessionStatusCheck"

    async def process(self, event: MessageEvent) -> None:
        umo = event.umo
        if not self.host.sessions.is_enabled(umo) or umo in self.host.config["disabled_sessions"]:
            event.stop_event()


class RateLimit(Stage):
    """At most ``count`` messages per ``window_s`` per conversation; ``stall`` waits, ``discard`` drops."""

    name = "RateLimit"

    def __init__(self, host: RefHost) -> None:
        super().__init__(host)
        self._seen: dict[str, deque[float]] = {}

    async def process(self, event: MessageEvent) -> None:
        conf = self.host.config["rate_limit"]
        count, window = int(conf["count"]), float(conf["window_s"])
        now = time.monotonic()
        seen = self._seen.setdefault(event.umo, deque())
        while seen and now - seen[0] > window:
            seen.popleft()
        if len(seen) >= count:
            if conf.get("strategy") == "stall":
                await asyncio.sleep(window - (now - seen[0]))
            else:
                event.stop_event()
                return
        seen.append(time.monotonic())


class ContentSafetyCheck(Stage):
    """Blocks messages containing configured words (an async generator, as in AstrBot)."""

    name = "ContentSafetyCheck"

    async def process(self, event: MessageEvent):
        conf = self.host.config["content_safety"]
        lowered = event.message_str.lower()
        if conf.get("enable") and any(w.lower() in lowered for w in conf.get("blocked_words", ())):
            await event.send("Your message was blocked by the content safety check.")
            event.stop_event()
            return
        yield


class PreProcess(Stage):
    name = "PreProcess"

    async def process(self, event: MessageEvent) -> None:
        event.message_str = " ".join(event.message_str.split())
        event.extras["received_at"] = time.time()


class Process(Stage):
    """Plugin handlers first (StarRequest), then the agent (AgentRequest) if still wanted."""

    name = "Process"

    async def process(self, event: MessageEvent):
        host, emit = self.host, self.host.emitter
        handlers: list[StarHandlerMetadata] = event.extras.get("activated_handlers", [])
        if handlers:
            with emit.stage("StarRequest", event):
                for handler in handlers:
                    # aclosing: leaving early ends the handler (and its span) now, not at GC
                    async with contextlib.aclosing(self._call_handler(event, handler)) as results:
                        async for result in results:
                            if result is not None:
                                # A plugin answered: as in AstrBot, the LLM is not asked as well.
                                event.set_result(result)
                                event.extras["handled"] = True
                            yield
                            if event.is_stopped():
                                return
                    if handler.command is not None:
                        event.extras["handled"] = True
        if (event.is_wake and not event.extras.get("handled") and not event.is_stopped()
                and host.sessions.llm_enabled(event.umo) and event.message_str):
            with emit.stage("AgentRequest", event):
                if host.streaming:
                    event.set_result(MessageEventResult(is_llm_result=True,
                                                        stream=host.agent_stream(event)))
                else:
                    try:
                        event.set_result(await host.agent_reply(event))
                    except Exception as exc:
                        # The failing LLM or tool span holds the details; the user gets a reply.
                        log.warning("agent failed for %s: %r", event.umo, exc)
                        event.set_result(event.plain_result(_agent_failed(exc)))
                yield

    async def _call_handler(self, event: MessageEvent, h: StarHandlerMetadata):
        """Run one handler inside its ``plugin_call`` span; a failure becomes a reply, as in AstrBot."""
        emit = self.host.emitter
        span = emit.handler(h.display_name, module_path=h.handler_module_path,
                            event_type=_kind(h))
        try:
            ret = h.handler(event)
            if inspect.isasyncgen(ret):
                async with contextlib.aclosing(emit.iterate(span, ret)) as results:
                    async for result in results:
                        yield result
            else:
                with span:
                    result = await ret
                if result is not None:
                    yield result
        except Exception as exc:
            log.warning("plugin %s handler %s failed: %r", h.plugin_name, h.handler_name, exc)
            yield event.plain_result(
                f"Plugin {h.plugin_name} failed: {type(exc).__name__}: {exc}"
            ).stop_event()


def _agent_failed(exc: Exception) -> str:
    return f"Sorry, the assistant could not answer: {type(exc).__name__}: {exc}"


def _kind(h: StarHandlerMetadata) -> str:
    if h.command is not None:
        return "command"
    return "regex" if h.regex is not None else "all_message"


class ResultDecorate(Stage):
    """Reply prefix and splitting of long replies (an async generator, as in AstrBot)."""

    name = "ResultDecorate"

    async def process(self, event: MessageEvent):
        result = event.get_result()
        if result is not None and result.stream is None and result.chain:
            prefix = self.host.config["reply_prefix"]
            if prefix:
                result.chain.insert(0, prefix)
            limit = int(self.host.config["reply_split_chars"])
            text = result.text
            if limit and len(text) > limit:
                result.chain = [text[i:i + limit] for i in range(0, len(text), limit)]
        yield


class Respond(Stage):
    """Sends the result; a streaming result is consumed here, so the agent runs here too."""

    name = "Respond"

    async def process(self, event: MessageEvent) -> None:
        result = event.get_result()
        if result is None:
            return
        if result.stream is not None:
            parts: list[str] = []
            try:
                async for chunk in result.stream:
                    parts.append(chunk)
            except Exception as exc:
                log.warning("streaming agent failed for %s: %r", event.umo, exc)
                parts.append(("\n" if parts else "") + _agent_failed(exc))
            text = "".join(parts)
            if text:
                await event.send(self.host.config["reply_prefix"] + text)
        else:
            for segment in [result.text] if len(result.chain) <= 1 else result.chain:
                if segment:
                    await event.send(segment)
        event.clear_result()


STAGES = (WakingCheck, WhitelistCheck, SessionStatusCheck, RateLimit, ContentSafetyCheck,
          PreProcess, Process, ResultDecorate, Respond)


class PipelineScheduler:
    """Runs the stages for one event, each inside its ``pipeline_stage`` span."""

    def __init__(self, host: RefHost) -> None:
        self.host = host
        self.stages: list[Stage] = [cls(host) for cls in STAGES]
        assert tuple(s.name for s in self.stages) == STAGES_ORDER

    async def execute(self, event: MessageEvent) -> None:
        await self._process_stages(event, 0)

    async def _process_stages(self, event: MessageEvent, start: int) -> None:
        emit = self.host.emitter
        for i in range(start, len(self.stages)):
            stage = self.stages[i]
            with emit.stage(stage.name, event):
                ret = stage.process(event)
                if inspect.isasyncgen(ret):
                    async for _ in ret:
                        if event.is_stopped():
                            break
                        await self._process_stages(event, i + 1)
                        if event.is_stopped():
                            break
                    await ret.aclose()
                    return
                await ret
            if event.is_stopped():
                return
