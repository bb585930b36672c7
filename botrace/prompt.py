"""A model request as an ``llm_call`` span records it: the whole prompt, bounded.

A host hands :func:`request_input` what it sends the model (OpenAI-style
messages and tool schemas) and records the result with ``span.set_input``::

    >>> request_input([{"role": "system", "content": "Be brief."},
    ...                {"role": "user", "content": "hi"}],
    ...               tools=[{"type": "function", "function": {"name": "roll_dice"}}])
    {'messages': [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'hi'}], 'tools': ['roll_dice']}

The shape is stable whatever the host: ``messages`` is a list of
``{"role", "content", "tool_calls"?, "tool_call_id"?, "name"?}`` (content as
text; an image part becomes ``[image_url]``; tool calls as
``{"id", "name", "arguments"}``), ``tools`` the names of the tool definitions.

Bounds: each text is cut by the span's limits as any value is (``…[+N chars]``,
``trace_max_string``). The messages are kept within :data:`MAX_CHARS`
characters and :data:`MAX_MESSAGES` entries: the leading system messages and
the newest messages that fit stay, and the ones dropped in between are replaced
by one entry ``{"role": "omitted", "omitted": N, "chars": M}`` (and counted in
``omitted_messages``), so a cut is always visible and the end of the
conversation — what shaped the reply — is always there.

:func:`request_diff` tells what an ``on_llm_request`` hook added to a request,
with an estimate of its tokens (characters / 4, the usual rule of thumb for
English text; no tokenizer is run on the host's path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MAX_CHARS", "MAX_MESSAGES", "estimate_tokens", "normalize_message", "request_diff",
           "request_input", "tool_names"]

#: Characters of message text one ``llm_call`` records at most (before the per-string cut).
MAX_CHARS = 64_000
#: Messages one ``llm_call`` records at most (the span limits' ``max_items`` is 200).
MAX_MESSAGES = 150


def estimate_tokens(chars: int) -> int:
    """Tokens of ``chars`` characters, estimated as characters / 4 (rounded up)."""
    return (max(0, chars) + 3) // 4


def _get(m: Any, key: str) -> Any:
    return m.get(key) if isinstance(m, Mapping) else getattr(m, key, None)


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, Iterable) and not isinstance(content, bytes | bytearray):
        bits = []
        for part in content:
            t = _get(part, "text")
            bits.append(t if isinstance(t, str) else f"[{_get(part, 'type') or type(part).__name__}]")
        return "".join(bits)
    return str(content)


def _tool_call(call: Any) -> dict[str, Any]:
    fn = _get(call, "function")
    name = _get(fn, "name") if fn is not None else _get(call, "name")
    args = _get(fn, "arguments") if fn is not None else _get(call, "arguments")
    return {"id": _get(call, "id"), "name": name, "arguments": args}


def normalize_message(m: Any) -> dict[str, Any]:
    """One message (a dict or an object with ``role``/``content``) in the recorded shape."""
    entry: dict[str, Any] = {"role": str(_get(m, "role") or "unknown")}
    content = _text(_get(m, "content"))
    if content is not None:
        entry["content"] = content
    calls = _get(m, "tool_calls")
    if calls:
        try:
            entry["tool_calls"] = [_tool_call(c) for c in calls]
        except TypeError:
            entry["tool_calls"] = []
    for key in ("tool_call_id", "name"):
        value = _get(m, key)
        if isinstance(value, str) and value:
            entry[key] = value
    return entry


def _size(entry: Mapping[str, Any]) -> int:
    n = len(entry.get("content") or "")
    for call in entry.get("tool_calls") or ():
        n += len(str(call.get("name") or "")) + len(str(call.get("arguments") or ""))
    return n


def tool_names(tools: Any) -> list[str]:
    """Names of tool definitions: OpenAI schemas, objects with ``name``, or plain names."""
    names = []
    for t in tools or ():
        if isinstance(t, str):
            names.append(t)
            continue
        fn = _get(t, "function")
        name = _get(fn, "name") if fn is not None else _get(t, "name")
        if isinstance(name, str):
            names.append(name)
    return names


def request_input(messages: Any, tools: Any = None, *, max_chars: int = MAX_CHARS,
                  max_messages: int = MAX_MESSAGES, **extra: Any) -> dict[str, Any]:
    """The ``input`` of an ``llm_call`` span for a request (see the module's docstring);
    ``extra`` values (``image_count=2``) are added as they are, None left out."""
    # Only the messages kept are normalised: from the newest back, within the budget.
    raw = messages if isinstance(messages, list) else list(messages or ())
    lead: list[dict[str, Any]] = []
    for m in raw:
        if str(_get(m, "role")) != "system":
            break
        lead.append(normalize_message(m))
    budget = max_chars - sum(_size(e) for e in lead)
    slots = max_messages - len(lead) - 1
    tail: list[dict[str, Any]] = []
    keep_from = len(raw)
    while keep_from > len(lead) and slots > 0:
        entry = normalize_message(raw[keep_from - 1])
        size = _size(entry)
        if size > budget and tail:  # the newest message is always kept (its text cut by the limits)
            break
        tail.append(entry)
        budget -= size
        slots -= 1
        keep_from -= 1
    tail.reverse()
    out: dict[str, Any] = {}
    entries = lead
    if keep_from > len(lead):
        dropped = keep_from - len(lead)
        chars = sum(len(c) if isinstance(c := _get(m, "content"), str) else 0
                    for m in raw[len(lead):keep_from])
        entries = [*lead, {"role": "omitted", "omitted": dropped, "chars": chars}]
        out["omitted_messages"] = dropped
    entries += tail
    out["messages"] = entries
    names = tool_names(tools)
    if names:
        out["tools"] = names
    for key, value in extra.items():
        if value is not None:
            out[key] = value
    return out


def request_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a hook added to a request, from two snapshots ``{"prompt", "system_prompt",
    "contexts", "tools", "images"}`` (contexts a list of messages; tools a list of names).

    Returns None when nothing it looks at changed; otherwise ``{"messages_added":
    [messages, bounded as a request's], "messages_removed": N, "system_prompt_chars_added": N,
    "prompt_chars_added": N, "tools_added": [...], "tools_removed": [...], "images_added": N,
    "chars_added": N, "tokens_added_est": N}`` with only the keys that apply (the ``chars``
    and ``tokens`` counts are always there)."""
    diff: dict[str, Any] = {}
    chars = 0
    old_ctx = list(before.get("contexts") or ())
    new_ctx = after.get("contexts") or []
    old_ids = {id(m) for m in old_ctx}
    added = [m for m in new_ctx if id(m) not in old_ids]
    if added:
        shaped = request_input(added)["messages"]
        diff["messages_added"] = shaped
        chars += sum(_size(normalize_message(m)) for m in added)
    removed = len(old_ctx) - (len(new_ctx) - len(added))
    if removed > 0:
        diff["messages_removed"] = removed
    for field in ("system_prompt", "prompt"):
        old, new = before.get(field) or "", after.get(field) or ""
        if old != new:
            delta = len(new) - len(old)
            diff[f"{field}_chars_added"] = delta
            chars += max(0, delta)
    old_tools, new_tools = list(before.get("tools") or ()), list(after.get("tools") or ())
    if old_tools != new_tools:
        plus = [t for t in new_tools if t not in old_tools]
        minus = [t for t in old_tools if t not in new_tools]
        if plus:
            diff["tools_added"] = plus
        if minus:
            diff["tools_removed"] = minus
    images = (after.get("images") or 0) - (before.get("images") or 0)
    if images:
        diff["images_added"] = images
    if not diff:
        return None
    diff["chars_added"] = chars
    diff["tokens_added_est"] = estimate_tokens(chars)
    return diff
