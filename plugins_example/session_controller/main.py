"""Session controller: a builtin-style plugin (it ships with the host).

Builtin plugins are attributed as ``builtin`` (a gear on the web page) and
third-party ones as ``third_party`` (a puzzle piece); the host decides which
is which when it loads them, exactly as AstrBot does for its
``builtin_stars``.

What it shows a plugin author:

* Commands that change per-session state (``/mute``, ``/unmute``, ``/reset``, ``/status``).
* An ``on_llm_request`` hook that edits the request before the LLM sees it, and
  an ``on_llm_response`` hook that keeps per-conversation token counts.
* A handler on every message (``event_message_type(ALL)``) that yields nothing:
  it still appears in the trace, so its cost is visible.
* A ``regex`` handler that answers by itself (so the LLM is not asked), and an
  ``on_using_llm_tool`` hook that counts tool use per conversation.
"""

from __future__ import annotations

from collections import Counter

from botrace_host_adapter.refhost.api import (
    FunctionTool,
    LLMResponse,
    MessageEvent,
    ProviderRequest,
    Star,
    filter,
    register,
)


@register("session_controller", "host", "Per-session switches and bookkeeping", "4.14.6",
          display_name="Session controller")
class SessionController(Star):
    async def initialize(self) -> None:
        self.seen: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()
        self.tool_uses: Counter[str] = Counter()

    @filter.event_message_type(filter.EventMessageType.ALL, priority=10)
    async def count_messages(self, event: MessageEvent):
        """Counts messages per conversation (for /status)."""
        self.seen[event.umo] += 1
        if False:  # an async generator handler that yields no result
            yield

    @filter.regex(r"(?i)^(?:thanks|thank you)\b")
    async def thanks(self, event: MessageEvent):
        """Answers thanks without bothering the LLM."""
        yield event.plain_result(f"You're welcome, {event.get_sender_name()}!")

    @filter.command("mute")
    async def mute(self, event: MessageEvent):
        """/mute — stop LLM replies in this conversation (commands keep working)."""
        self.context.sessions.set_llm_enabled(event.umo, False)
        yield event.plain_result("LLM replies are off for this conversation. /unmute to resume.")

    @filter.command("unmute")
    async def unmute(self, event: MessageEvent):
        """/unmute — resume LLM replies."""
        self.context.sessions.set_llm_enabled(event.umo, True)
        yield event.plain_result("LLM replies are on again.")

    @filter.command("reset", alias={"new"})
    async def reset(self, event: MessageEvent):
        """/reset — forget this conversation's history."""
        dropped = self.context.conversations.reset(event.umo)
        yield event.plain_result(f"Conversation reset ({dropped} messages forgotten).")

    @filter.command("status")
    async def status(self, event: MessageEvent):
        """/status — what the host knows about this conversation."""
        llm = "on" if self.context.sessions.llm_enabled(event.umo) else "off"
        history = len(self.context.conversations.history(event.umo))
        yield event.plain_result(
            f"{event.umo}: {self.seen[event.umo]} messages seen, LLM {llm}, "
            f"{history} messages of history, {self.tool_uses[event.umo]} tool calls, "
            f"{self.tokens[event.umo]} output tokens.")

    @filter.on_llm_request()
    async def add_session_note(self, event: MessageEvent, req: ProviderRequest) -> None:
        """Tell the model who it is talking to."""
        req.system_prompt += f"\nYou are talking with {event.get_sender_name()} ({event.umo})."

    @filter.on_llm_response()
    async def count_tokens(self, event: MessageEvent, resp: LLMResponse) -> None:
        """Keep the conversation's output token count (shown by /status)."""
        if resp.usage is not None:
            self.tokens[event.umo] += resp.usage.output

    @filter.on_using_llm_tool()
    async def count_tool_use(self, event: MessageEvent, tool: FunctionTool, args: dict) -> None:
        """Count the tools the LLM calls in each conversation (shown by /status)."""
        self.tool_uses[event.umo] += 1
