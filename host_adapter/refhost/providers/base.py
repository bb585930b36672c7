"""What every LLM provider of the reference host speaks: requests, responses, usage.

Messages are OpenAI chat-completions dicts (``role``, ``content``,
``tool_calls``, ``tool_call_id``) so that the OpenAI-compatible provider
passes them through unchanged and the scripted one reads the same shape.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LLMResponse", "Provider", "ProviderRequest", "TokenUsage", "ToolCall"]


@dataclass(slots=True)
class TokenUsage:
    """Token counts of one call (AstrBot's ``TokenUsage`` fields)."""

    input_other: int = 0
    input_cached: int = 0
    output: int = 0

    @property
    def input(self) -> int:
        return self.input_other + self.input_cached

    @property
    def total(self) -> int:
        return self.input + self.output


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_message(self) -> dict[str, Any]:
        import json

        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments)}}


@dataclass(slots=True)
class LLMResponse:
    role: str = "assistant"
    completion_text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: TokenUsage | None = None
    finish_reason: str | None = None
    model: str = ""
    #: A streaming delta (text in ``completion_text``), not the final response.
    is_chunk: bool = False


@dataclass(slots=True)
class ProviderRequest:
    """What the agent is about to ask; ``on_llm_request`` hooks may edit it."""

    prompt: str
    system_prompt: str = ""
    contexts: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    session_id: str = ""


class Provider(abc.ABC):
    """A chat model. Implementations must be safe to call concurrently."""

    provider_id: str = "provider"

    def __init__(self, model: str) -> None:
        self.model = model

    def get_model(self) -> str:
        return self.model

    @abc.abstractmethod
    async def text_chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
        model: str | None = None,
    ) -> LLMResponse:
        """One completion."""

    @abc.abstractmethod
    def text_chat_stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
        model: str | None = None,
    ) -> AsyncIterator[LLMResponse]:
        """Chunks (``is_chunk=True``) then one final response carrying tool calls and usage."""

    async def close(self) -> None:  # noqa: B027 - optional for providers without resources
        """Release network resources."""
