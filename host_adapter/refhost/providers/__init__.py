"""LLM providers of the reference host."""

from botrace_host_adapter.refhost.providers.base import (
    LLMResponse,
    Provider,
    ProviderRequest,
    TokenUsage,
    ToolCall,
)
from botrace_host_adapter.refhost.providers.openai_compat import OpenAICompatProvider, ProviderError
from botrace_host_adapter.refhost.providers.scripted import ScriptedProvider

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
