"""LLM providers of the reference host."""

from host_adapter.refhost.providers.base import (
    LLMResponse,
    Provider,
    ProviderRequest,
    TokenUsage,
    ToolCall,
)
from host_adapter.refhost.providers.openai_compat import OpenAICompatProvider, ProviderError
from host_adapter.refhost.providers.scripted import ScriptedProvider

__all__ = [
    "LLMResponse",
    "OpenAICompatProvider",
    "Provider",
    "ProviderError",
    "ProviderRequest",
    "ScriptedProvider",
    "TokenUsage",
    "ToolCall",
]
