"""An OpenAI-compatible chat-completions provider over aiohttp.

Works with any server speaking ``POST {base_url}/chat/completions``
(OpenAI, DeepSeek, vLLM, Ollama's ``/v1``, LM Studio, ...)::

    provider = OpenAICompatProvider(base_url="https://api.openai.com/v1",
                                    api_key=os.environ["OPENAI_API_KEY"], model="gpt-4o-mini")

Streaming asks for ``stream_options.include_usage`` so token usage arrives in
the last chunk; tool-call deltas are assembled by their ``index``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from botrace_host_adapter.refhost.providers.base import LLMResponse, Provider, TokenUsage, ToolCall

__all__ = ["OpenAICompatProvider", "ProviderError"]


class ProviderError(RuntimeError):
    """The model server answered with an error status or an unreadable body."""


class OpenAICompatProvider(Provider):
    provider_id = "openai"

    def __init__(self, *, base_url: str, model: str, api_key: str = "",
                 timeout_s: float = 120.0, extra_body: dict[str, Any] | None = None) -> None:
        super().__init__(model)
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._extra = dict(extra_body or {})
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Content-Type": "application/json"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            self._session = aiohttp.ClientSession(headers=headers, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _body(self, messages, tools, model, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model or self.model, "messages": messages, **self._extra}
        if tools:
            body["tools"] = tools
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def text_chat(self, messages, tools=None, model=None) -> LLMResponse:
        url = f"{self.base_url}/chat/completions"
        async with self._http().post(url, json=self._body(messages, tools, model, False)) as resp:
            data = await _json_or_raise(resp)
        try:
            choice = data["choices"][0]
            msg = choice["message"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ProviderError(f"unexpected response body: {str(data)[:200]}") from exc
        calls = [
            ToolCall(id=tc.get("id") or f"call_{i}", name=tc["function"]["name"],
                     arguments=_parse_args(tc["function"].get("arguments")))
            for i, tc in enumerate(msg.get("tool_calls") or [])
        ]
        return LLMResponse(completion_text=msg.get("content") or "", tool_calls=calls,
                           usage=_usage(data.get("usage")), finish_reason=choice.get("finish_reason"),
                           model=data.get("model") or model or self.model)

    async def text_chat_stream(self, messages, tools=None, model=None) -> AsyncIterator[LLMResponse]:
        url = f"{self.base_url}/chat/completions"
        text: list[str] = []
        parts: dict[int, dict[str, Any]] = {}
        usage: TokenUsage | None = None
        finish: str | None = None
        served_model = model or self.model
        async with self._http().post(url, json=self._body(messages, tools, model, True)) as resp:
            if resp.status >= 400:
                await _json_or_raise(resp)
            async for raw in resp.content:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    chunk = json.loads(payload)
                except ValueError as exc:
                    raise ProviderError(f"unreadable stream chunk: {payload[:200]}") from exc
                served_model = chunk.get("model") or served_model
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"])
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        text.append(delta["content"])
                        yield LLMResponse(completion_text=delta["content"], is_chunk=True,
                                          model=served_model)
                    for tc in delta.get("tool_calls") or ():
                        part = parts.setdefault(tc.get("index", 0), {"id": "", "name": "", "args": ""})
                        part["id"] = tc.get("id") or part["id"]
                        fn = tc.get("function") or {}
                        part["name"] += fn.get("name") or ""
                        part["args"] += fn.get("arguments") or ""
                    finish = choice.get("finish_reason") or finish
        calls = [ToolCall(id=p["id"] or f"call_{i}", name=p["name"], arguments=_parse_args(p["args"]))
                 for i, p in sorted(parts.items())]
        yield LLMResponse(completion_text="".join(text), tool_calls=calls, usage=usage,
                          finish_reason=finish, model=served_model)


async def _json_or_raise(resp: aiohttp.ClientResponse) -> Any:
    body = await resp.text()
    if resp.status >= 400:
        raise ProviderError(f"HTTP {resp.status} from {resp.url.path}: {body[:300]}")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ProviderError(f"response is not JSON: {body[:200]}") from exc


def _parse_args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_value": value}


def _usage(data: dict[str, Any] | None) -> TokenUsage | None:
    if not data:
        return None
    prompt = int(data.get("prompt_tokens") or 0)
    cached = int(((data.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
    return TokenUsage(input_other=prompt - cached, input_cached=cached,
                      output=int(data.get("completion_tokens") or 0))
