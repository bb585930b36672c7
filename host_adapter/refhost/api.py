"""The reference host's plugin API — what a plugin author imports.

It mirrors AstrBot's (``from astrbot.api.star import Star, register`` and
``from astrbot.api.event import filter``)::

    from botrace_host_adapter.refhost.api import Context, MessageEvent, Star, filter, register

    @register("hello", "me", "Says hello", "1.0.0")
    class Hello(Star):
        @filter.command("hello")
        async def hello(self, event: MessageEvent):
            yield event.plain_result(f"Hello, {event.get_sender_name()}!")

        @filter.llm_tool(name="get_time")
        async def get_time(self, event: MessageEvent, zone: str) -> str:
            '''Tell the time in a time zone.

            Args:
                zone(string): an IANA zone name
            '''
            ...

Handlers are async generators (``yield`` results) or coroutines; LLM tools
are coroutines returning text. A plugin's subagents are listed in the class
attribute ``agents`` and their tools carry ``agent="<name>"``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from botrace_host_adapter.refhost.context import Context
from botrace_host_adapter.refhost.event import MessageEvent, MessageEventResult
from botrace_host_adapter.refhost.providers.base import LLMResponse, ProviderRequest
from botrace_host_adapter.refhost.star import Agent, EventType, FunctionTool, Star, mark

__all__ = [
    "Agent",
    "Context",
    "EventType",
    "FunctionTool",
    "LLMResponse",
    "MessageEvent",
    "MessageEventResult",
    "ProviderRequest",
    "Star",
    "filter",
    "register",
]


def register(
    name: str, author: str, desc: str, version: str, display_name: str | None = None
) -> Callable[[type], type]:
    """Class decorator declaring a plugin (AstrBot's ``@register``)."""

    def deco(cls: type) -> type:
        cls.__star_info__ = {"name": name, "author": author, "desc": desc, "version": version,
                             "display_name": display_name}
        return cls

    return deco


class EventMessageType(enum.Enum):
    ALL = "all"


class _Filter:
    """Decorators that turn a Star method into a handler, hook or tool."""

    EventMessageType = EventMessageType

    @staticmethod
    def command(command: str, alias: set[str] | None = None, priority: int = 0) -> Callable:
        """Run on ``/<command> ...`` (wake prefix + command word)."""
        return lambda fn: mark(fn, kind="command", event_type=EventType.AdapterMessageEvent,
                               command=command, alias=sorted(alias or ()), priority=priority)

    @staticmethod
    def regex(pattern: str, priority: int = 0) -> Callable:
        """Run on every message whose text matches ``pattern`` (woken or not)."""
        return lambda fn: mark(fn, kind="regex", event_type=EventType.AdapterMessageEvent,
                               pattern=pattern, priority=priority)

    @staticmethod
    def event_message_type(kind: EventMessageType = EventMessageType.ALL, priority: int = 0) -> Callable:
        """Run on every message."""
        return lambda fn: mark(fn, kind="all", event_type=EventType.AdapterMessageEvent,
                               priority=priority)

    @staticmethod
    def on_llm_request(priority: int = 0) -> Callable:
        """``async def hook(self, event, req: ProviderRequest)`` before the agent's first LLM call."""
        return lambda fn: mark(fn, kind="hook", event_type=EventType.OnLLMRequestEvent,
                               priority=priority)

    @staticmethod
    def on_llm_response(priority: int = 0) -> Callable:
        """``async def hook(self, event, resp: LLMResponse)`` after the agent's final answer."""
        return lambda fn: mark(fn, kind="hook", event_type=EventType.OnLLMResponseEvent,
                               priority=priority)

    @staticmethod
    def on_using_llm_tool(priority: int = 0) -> Callable:
        """``async def hook(self, event, tool: FunctionTool, args: dict)`` before a tool runs."""
        return lambda fn: mark(fn, kind="hook", event_type=EventType.OnUsingLLMToolEvent,
                               priority=priority)

    @staticmethod
    def on_llm_tool_respond(priority: int = 0) -> Callable:
        """``async def hook(self, event, tool, args, result)`` after a tool returned."""
        return lambda fn: mark(fn, kind="hook", event_type=EventType.OnLLMToolRespondEvent,
                               priority=priority)

    @staticmethod
    def llm_tool(name: str | None = None, agent: str | None = None) -> Callable:
        """Offer the method to the LLM as a function tool (description from the docstring)."""
        return lambda fn: mark(fn, kind="llm_tool", name=name, agent=agent)


filter = _Filter()
