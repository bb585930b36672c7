"""What the AstrBot adapter writes on a span: AstrBot's objects read into plain values.

Every function here reads attributes defensively (``getattr`` with defaults):
a field renamed in another AstrBot release costs a value on a span, never the
host's message. Nothing here opens or ends spans; :mod:`.adapter` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "hook_kind",
    "hook_state",
    "llm_messages",
    "llm_output",
    "llm_usage",
    "plain_text",
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


def llm_messages(messages: Any) -> list[dict[str, Any]] | None:
    """A request's messages as ``[{"role", "content"}]`` (content as text; the span's limits
    bound it like any value, and mark the trace when they cut)."""
    if not isinstance(messages, list):
        return None
    out = []
    for m in messages:
        if isinstance(m, Mapping):
            role, content = m.get("role"), m.get("content")
        else:
            role, content = getattr(m, "role", None), getattr(m, "content", None)
        entry: dict[str, Any] = {"role": str(role)}
        if content is not None:
            entry["content"] = _content_text(content)
        calls = m.get("tool_calls") if isinstance(m, Mapping) else getattr(m, "tool_calls", None)
        if calls:
            entry["tool_calls"] = len(calls)
        out.append(entry)
    return out


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        text = content
    elif isinstance(content, Iterable):
        # a list of parts: text parts give their text, others their kind
        bits = []
        for part in content:
            t = part.get("text") if isinstance(part, Mapping) else getattr(part, "text", None)
            kind = part.get("type") if isinstance(part, Mapping) else getattr(part, "type", None)
            bits.append(t if isinstance(t, str) else f"[{kind or type(part).__name__}]")
        text = "".join(bits)
    else:
        text = str(content)
    return text  # the span's limits cut it, visibly (trace_max_string)


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
