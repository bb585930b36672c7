"""What the AstrBot adapter writes on a span: AstrBot's objects read into plain values.

Every function here reads attributes defensively (``getattr`` with defaults):
a field renamed in another AstrBot release costs a value on a span, never the
host's message. Nothing here opens or ends spans; :mod:`.adapter` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from botrace.prompt import request_diff, request_input

__all__ = [
    "hook_kind",
    "hook_state",
    "llm_output",
    "llm_usage",
    "plain_text",
    "request_added",
    "request_of",
    "request_snapshot",
    "request_values",
    "state_changes",
    "text_change",
    "tool_result",
]

#: AstrBot's ``EventType`` names as plugin authors write them (``@filter.on_llm_request``).
_HOOK_KINDS = {
    "OnWaitingLLMRequestEvent": "on_waiting_llm_request",
    "OnLLMRequestEvent": "on_llm_request",
    "OnLLMResponseEvent": "on_llm_response",
    "OnDecoratingResultEvent": "on_decorating_result",
    "OnCallingFuncToolEvent": "on_calling_func_tool",
    "OnUsingLLMToolEvent": "on_using_llm_tool",
    "OnLLMToolRespondEvent": "on_llm_tool_respond",
    "OnAfterMessageSentEvent": "after_message_sent",
    "OnPluginErrorEvent": "on_plugin_error",
}

def hook_kind(event_type: Any) -> str:
    """``EventType.OnLLMRequestEvent`` -> ``"on_llm_request"`` (unknown kinds keep their name)."""
    name = getattr(event_type, "name", None) or str(event_type)
    return _HOOK_KINDS.get(name, name)


def plain_text(result: Any) -> str | None:
    """The plain text of a ``MessageEventResult`` / ``MessageChain`` (None if it has none)."""
    if result is None:
        return None
    get = getattr(result, "get_plain_text", None)
    if callable(get):
        try:
            text = get()
        except Exception:
            text = None
        if isinstance(text, str):
            return text
    parts = [getattr(c, "text", None) for c in getattr(result, "chain", None) or ()]
    texts = [p for p in parts if isinstance(p, str)]
    return "".join(texts) if texts else None


def llm_usage(resp: Any) -> dict[str, Any]:
    """Token counts of an ``LLMResponse`` (``TokenUsage``: input_other + input_cached, output)."""
    usage = getattr(resp, "usage", None)
    if usage is None:
        return {}
    cached = _int(getattr(usage, "input_cached", 0))
    other = _int(getattr(usage, "input_other", 0))
    total_input = _int(getattr(usage, "input", other + cached)) or other + cached
    return {"input_tokens": total_input, "output_tokens": _int(getattr(usage, "output", 0)),
            "cached_tokens": cached, "cache_hit": cached > 0}


def llm_output(resp: Any) -> dict[str, Any]:
    """Text, reasoning and tool calls of a final ``LLMResponse``."""
    out: dict[str, Any] = {}
    text = getattr(resp, "completion_text", None)
    if text:
        out["text"] = text
    reasoning = getattr(resp, "reasoning_content", None)
    if reasoning:
        out["reasoning"] = reasoning
    names = list(getattr(resp, "tools_call_name", None) or ())
    if names:
        args = list(getattr(resp, "tools_call_args", None) or ())
        ids = list(getattr(resp, "tools_call_ids", None) or ())
        out["tool_calls"] = [
            {"id": ids[i] if i < len(ids) else None, "name": name,
             "arguments": args[i] if i < len(args) else None}
            for i, name in enumerate(names)]
    return out


def request_values(messages: Any, tools: Any, model: Any = None,
                   image_urls: Any = None) -> dict[str, Any] | None:
    """An ``llm_call``'s input from AstrBot's request: every message the model is sent
    (``run_context.messages``: system prompt, history, injected context, the user's message,
    tool calls and tool results), the tools by name, the model and how many images;
    bounded and marked as :func:`botrace.prompt.request_input` does."""
    if not isinstance(messages, list):
        return None
    images = len(image_urls) if isinstance(image_urls, list | tuple) and image_urls else None
    return request_input(messages, tools, model=model if isinstance(model, str) else None,
                         image_count=images)


def request_of(args: tuple[Any, ...]) -> Any:
    """The ``ProviderRequest`` among a hook's arguments (None if it has none)."""
    for arg in args:
        if hasattr(arg, "system_prompt") and hasattr(arg, "contexts"):
            return arg
    return None


def request_snapshot(req: Any, tool_names: Callable[[Any], list[str] | None]) -> dict[str, Any]:
    """What a hook may add to a ``ProviderRequest``; the history as a shallow copy (the
    messages themselves are not copied)."""
    contexts = getattr(req, "contexts", None)
    images = getattr(req, "image_urls", None)
    return {"prompt": getattr(req, "prompt", None), "system_prompt": getattr(req, "system_prompt", None),
            "contexts": list(contexts) if isinstance(contexts, list) else [],
            "tools": tool_names(getattr(req, "func_tool", None)) or [],
            "images": len(images) if isinstance(images, list) else 0}


def request_added(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a hook added to the request (:func:`botrace.prompt.request_diff`)."""
    return request_diff(before, after)


def tool_result(result: Any) -> tuple[str | None, bool]:
    """The text of an MCP ``CallToolResult`` and whether it reports an error."""
    if result is None:
        return None, False
    is_error = bool(getattr(result, "isError", False))
    texts = []
    for part in getattr(result, "content", None) or ():
        text = getattr(part, "text", None)
        if isinstance(text, str):
            texts.append(text)
        else:
            resource = getattr(part, "resource", None)
            inner = getattr(resource, "text", None)
            texts.append(inner if isinstance(inner, str) else f"[{type(part).__name__}]")
    return "\n".join(texts) if texts else None, is_error


# -- what an event hook changed -------------------------------------------------------

#: Fields of AstrBot's ``ProviderRequest`` an ``on_llm_request`` hook may change.
_REQUEST_FIELDS = ("prompt", "system_prompt", "contexts", "image_urls", "func_tool", "model")


def hook_state(event: Any, args: tuple[Any, ...]) -> dict[str, Any]:
    """A cheap fingerprint of what a hook can change: the event's result, its stop flag, and
    the fields of its arguments (a ``ProviderRequest``, an ``LLMResponse``, tool args).

    Strings are kept as they are (compared by value); lists by identity and length, so a
    long conversation is never copied.
    """
    state: dict[str, Any] = {"stopped": _stopped(event)}
    get_result = getattr(event, "get_result", None)
    if callable(get_result):
        try:
            result = get_result()
        except Exception:
            result = None
        # by what a user would see: stopping the event swaps in an empty result, no change
        state["result"] = (plain_text(result) or "", len(getattr(result, "chain", None) or ()))
    for i, arg in enumerate(args):
        if hasattr(arg, "system_prompt") or hasattr(arg, "func_tool"):  # ProviderRequest
            for name in _REQUEST_FIELDS:
                state[name] = _fingerprint(getattr(arg, name, None))
        elif hasattr(arg, "completion_text"):  # LLMResponse
            state["completion_text"] = _fingerprint(getattr(arg, "completion_text", None))
        elif isinstance(arg, dict):
            state[f"arg{i}"] = (id(arg), len(arg), tuple(arg))
    return state


def text_change(old: Any, new: Any) -> dict[str, Any]:
    """How a hook changed a text (a system prompt, a prompt): what it appended or prepended,
    or the new text when it rewrote it; with the number of characters it added."""
    old = old if isinstance(old, str) else ""
    new = new if isinstance(new, str) else ""
    if old and new.startswith(old):
        return {"appended": new[len(old):], "chars_added": len(new) - len(old)}
    if old and new.endswith(old):
        return {"prepended": new[: len(new) - len(old)], "chars_added": len(new) - len(old)}
    return {"replaced_with": new, "chars_added": len(new) - len(old)}


def state_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Names of the fingerprinted fields that differ (``stopped`` is reported apart)."""
    return [k for k, v in after.items() if k != "stopped" and before.get(k) != v]


def _fingerprint(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    names = getattr(value, "names", None)  # a ToolSet
    if callable(names):
        try:
            return ("tools", tuple(names()))
        except Exception:
            pass
    try:
        return (id(value), len(value))
    except TypeError:
        return id(value)


def _stopped(event: Any) -> bool:
    fn = getattr(event, "is_stopped", None)
    try:
        return bool(fn()) if callable(fn) else False
    except Exception:
        return False


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
