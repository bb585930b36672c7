"""The scripted offline provider: deterministic, no network, no API key.

It plays an LLM convincingly enough to exercise a host: it reads the last
user message, picks tools by simple rules (only among the tools the request
offers, so an unloaded plugin's tool is never called), answers from the
tool results once they are in, reports token usage (with a prompt-cache hit
when a conversation's prefix repeats) and simulates latency, including a
time to first token when streaming. Zero latency means no sleeping at all.

Rules map a regex on the user's text to a *plan*: a list of steps, each a
list of tool calls made at once (so independent calls run concurrently). An
argument ``"$url"`` is filled with the first URL found in the previous tool
results, which lets a plan search and then open a page.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from botrace_host_adapter.refhost.providers.base import LLMResponse, Provider, TokenUsage, ToolCall

__all__ = ["DEFAULT_RULES", "Rule", "ScriptedProvider"]

Plan = list[list[tuple[str, dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: re.Pattern[str]
    plan: Callable[[re.Match[str]], Plan]


def _cities(m: re.Match[str]) -> Plan:
    names = [c.strip(" ?.!") for c in re.split(r",| and ", m[1]) if c.strip(" ?.!")]
    return [[("get_weather", {"city": c}) for c in names[:4]]]


def _reminder(m: re.Match[str]) -> Plan:
    unit = m[3].lower()
    minutes = int(m[2]) * (60 if unit.startswith("h") else 1)
    return [[("create_reminder", {"text": m[1].strip(), "in_minutes": minutes})]]


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(re.compile(r"weather (?:in|for|at) (.+)", re.I), _cities),
    Rule(re.compile(r"remind me (?:to )?(.+?) in (\d+) ?(minutes?|mins?|m|hours?|h)\b", re.I),
         _reminder),
    Rule(re.compile(r"\b(?:list|show)(?: my)? reminders\b", re.I),
         lambda m: [[("list_reminders", {})]]),
    Rule(re.compile(r"\b(?:search|look up|research)(?: for)? (.+)", re.I),
         lambda m: [[("transfer_to_search", {"input": m[1].strip(" ?.")})]]),
    # The search subagent's own plan: search, then open the best hit.
    Rule(re.compile(r"^(.+)$", re.S),
         lambda m: [[("web_search", {"query": m[1].strip()[:80]})], [("fetch_page", {"url": "$url"})]]),
    Rule(re.compile(r"\b(?:roll|dice|lucky|flaky)\b", re.I),
         lambda m: [[("roll_dice", {"sides": 6})]]),
)

_URL = re.compile(r"https?://[^\s\"',)]+")


class ScriptedProvider(Provider):
    """Deterministic offline LLM. ``latency_ms`` per call, ``ttft_ms`` before the first chunk."""

    provider_id = "scripted"

    def __init__(
        self,
        model: str = "scripted-1",
        *,
        latency_ms: float = 0.0,
        ttft_ms: float | None = None,
        rules: tuple[Rule, ...] = DEFAULT_RULES,
    ) -> None:
        super().__init__(model)
        self.latency_ms = latency_ms
        self.ttft_ms = latency_ms / 3 if ttft_ms is None else ttft_ms
        self.rules = rules
        self._ids = itertools.count(1)
        self._seen_prefixes: set[str] = set()

    # -- Provider --
    async def text_chat(self, messages, tools=None, model=None) -> LLMResponse:
        resp = self._respond(messages, tools or [], model)
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        return resp

    async def text_chat_stream(self, messages, tools=None, model=None) -> AsyncIterator[LLMResponse]:
        resp = self._respond(messages, tools or [], model)
        if self.ttft_ms:
            await asyncio.sleep(self.ttft_ms / 1000)
        words = re.findall(r"\S+\s*", resp.completion_text)
        per_chunk = max(self.latency_ms - self.ttft_ms, 0) / 1000 / max(len(words), 1)
        for word in words:
            yield LLMResponse(completion_text=word, is_chunk=True, model=resp.model)
            if per_chunk:
                await asyncio.sleep(per_chunk)
        yield resp

    # -- the script --
    def _respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                 model: str | None) -> LLMResponse:
        offered = {t["function"]["name"] for t in tools}
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        text = str(messages[last_user]["content"]) if last_user >= 0 else ""
        after = messages[last_user + 1:]
        step = sum(1 for m in after if m["role"] == "assistant" and m.get("tool_calls"))
        results = [str(m.get("content", "")) for m in after if m["role"] == "tool"]

        calls = self._plan_step(text, offered, step, results)
        if calls:
            out = LLMResponse(tool_calls=calls, finish_reason="tool_calls")
            out_tokens = 12 * len(calls)
        else:
            called = [tc["function"]["name"] for m in after if m["role"] == "assistant"
                      for tc in m.get("tool_calls") or ()]
            out = LLMResponse(completion_text=self._answer(text, results, called),
                              finish_reason="stop")
            out_tokens = _tokens(out.completion_text)
        out.model = model or self.model
        out.usage = self._usage(messages, tools, out_tokens)
        return out

    def _plan_step(self, text: str, offered: set[str], step: int, results: list[str]) -> list[ToolCall]:
        if not offered:
            return []
        plan: Plan = []
        for rule in self.rules:
            m = rule.pattern.search(text)
            if m is None:
                continue
            p = [[c for c in s if c[0] in offered] for s in rule.plan(m)]
            p = [s for s in p if s]
            if p:
                plan = p
                break
        if step >= len(plan):
            return []
        url = next((u for r in reversed(results) for u in _URL.findall(r)), "https://example.org/")
        return [
            ToolCall(id=f"call_{next(self._ids)}", name=name,
                     arguments={k: (url if v == "$url" else v) for k, v in args.items()})
            for name, args in plan[step]
        ]

    @staticmethod
    def _answer(text: str, results: list[str], called: list[str]) -> str:
        if results and called and called[-1].startswith("transfer_to_"):
            return results[-1]  # the subagent's answer is the answer
        if results and called and called[-1] == "fetch_page":
            url, _, page = results[-1].partition(": ")
            return f"According to {url}: {page.strip()[:300]}"
        if results:
            shown = "; ".join(r.strip()[:160] for r in results[-4:])
            return f"Here is what I found: {shown}"
        if not text.strip():
            return "Hello! How can I help?"
        return f"I hear you: {text.strip()[:200]}. Ask me about the weather, reminders or a search."

    def _usage(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], out: int) -> TokenUsage:
        prompt = sum(_tokens(json.dumps(m, ensure_ascii=False)) for m in messages)
        prompt += sum(_tokens(json.dumps(t)) for t in tools)
        # A provider-side prompt cache: the system prompt + first turn seen before is "cached".
        head = json.dumps(messages[:2], sort_keys=True).encode()
        key = hashlib.blake2b(head, digest_size=8).hexdigest()
        cached = 0
        if key in self._seen_prefixes:
            cached = min(prompt, _tokens(head.decode()))
        elif len(self._seen_prefixes) < 50_000:
            self._seen_prefixes.add(key)
        return TokenUsage(input_other=prompt - cached, input_cached=cached, output=out)


def _tokens(text: str) -> int:
    return len(text) // 4 + 1
