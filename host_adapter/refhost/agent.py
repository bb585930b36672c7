"""The agent runner: a tool loop over an LLM provider, with subagent handoffs.

One step = one LLM call; if the model asks for tools, they run (independent
calls concurrently, each in its own task so their spans are siblings), their
results go back into the conversation and the next step starts — until the
model answers in text or ``max_steps`` is reached (then one last call without
tools forces an answer).

A tool named ``transfer_to_<agent>`` is a handoff: the named subagent runs
its own loop with its own tools and instructions, and its answer is the
tool's result. That is how AstrBot 4.x shapes it too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from botrace_host_adapter.refhost.providers.base import LLMResponse, ProviderRequest, ToolCall
from botrace_host_adapter.refhost.star import Agent, EventType, FunctionTool

if TYPE_CHECKING:
    from botrace_host_adapter.refhost.event import MessageEvent
    from botrace_host_adapter.refhost.host import RefHost

__all__ = ["AgentRunner"]

log = logging.getLogger("refhost.agent")


class AgentRunner:
    """Runs one agent (the main one, or a subagent) for one message."""

    def __init__(self, host: RefHost, event: MessageEvent, *, tools: list[FunctionTool],
                 handoffs: list[Agent] = (), max_steps: int = 6, agent_name: str = "main",
                 stream: bool = False) -> None:
        self.host = host
        self.event = event
        self.tools = {t.name: t for t in tools}
        self.handoffs = {a.handoff_tool_name: a for a in handoffs}
        self.max_steps = max_steps
        self.agent_name = agent_name
        self.stream = stream

    def tool_schemas(self) -> list[dict[str, Any]]:
        schemas = [t.schema() for t in self.tools.values()]
        for name, agent in self.handoffs.items():
            schemas.append({"type": "function", "function": {
                "name": name,
                "description": f"Hand the task over to the {agent.name} agent. {agent.description}",
                "parameters": {"type": "object", "required": ["input"], "properties": {
                    "input": {"type": "string", "description": "what the agent should do"}}},
            }})
        return schemas

    async def run(self, req: ProviderRequest) -> LLMResponse:
        """Run to the final answer."""
        final = LLMResponse()
        async for resp in self.iter_run(req):
            if not resp.is_chunk:
                final = resp
        return final

    async def iter_run(self, req: ProviderRequest) -> AsyncIterator[LLMResponse]:
        """Run, yielding text chunks as they stream (if streaming) and then the final response."""
        messages: list[dict[str, Any]] = []
        if req.system_prompt:
            messages.append({"role": "system", "content": req.system_prompt})
        messages.extend(req.contexts)
        messages.append({"role": "user", "content": req.prompt})
        schemas = self.tool_schemas()
        final: LLMResponse | None = None
        for step in range(self.max_steps + 1):
            last = step == self.max_steps
            purpose = "synthesis" if last or step > 0 else ("planning" if schemas else "chat")
            resp: LLMResponse | None = None
            async for resp in self.host.call_llm_stream(
                messages, tools=None if last else schemas or None, purpose=purpose,
                model=req.model, stream=self.stream,
            ):
                if resp.is_chunk:
                    yield resp
            assert resp is not None
            if not resp.tool_calls or last:
                final = resp
                break
            messages.append({"role": "assistant", "content": resp.completion_text or None,
                             "tool_calls": [tc.to_message() for tc in resp.tool_calls]})
            results = await asyncio.gather(*(self._run_tool(tc) for tc in resp.tool_calls))
            for tc, result in zip(resp.tool_calls, results):
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": result})
        assert final is not None
        yield final

    async def _run_tool(self, call: ToolCall) -> str:
        agent = self.handoffs.get(call.name)
        if agent is not None:
            return await self._handoff(agent, call)
        tool = self.tools.get(call.name)
        emit = self.host.emitter
        with emit.tool_call(call.name, module_path=tool.handler_module_path if tool else None,
                            arguments=call.arguments, tool_call_id=call.id) as span:
            if tool is None or tool.handler is None:
                span.set_error(f"unknown tool {call.name!r}")
                return f"error: there is no tool named {call.name}"
            await self.host.call_event_hooks(self.event, EventType.OnUsingLLMToolEvent, tool,
                                              call.arguments)
            try:
                result = await asyncio.wait_for(tool.handler(self.event, **call.arguments),
                                                timeout=self.host.tool_timeout_s)
            except TimeoutError as exc:
                # The model is told, as AstrBot does, and may answer without the tool.
                span.set_error(exc)
                text = f"error: tool {call.name} timed out after {self.host.tool_timeout_s:g}s"
            except Exception as exc:
                span.set_error(exc)
                log.warning("tool %s failed: %r", call.name, exc)
                text = f"error: tool {call.name} failed: {type(exc).__name__}: {exc}"
            else:
                text = result if isinstance(result, str) else json.dumps(result, default=str)
                span.set_output(result=text)
            await self.host.call_event_hooks(self.event, EventType.OnLLMToolRespondEvent, tool,
                                              call.arguments, text)
            return text

    async def _handoff(self, agent: Agent, call: ToolCall) -> str:
        task = str(call.arguments.get("input", ""))
        with self.host.emitter.subagent(agent.name, module_path=agent.module_path, task=task) as span:
            span.set_meta(tool_call_id=call.id, tool_name=call.name)
            sub = AgentRunner(self.host, self.event, tools=self.host.stars.tools(agent.name),
                              max_steps=agent.max_steps, agent_name=agent.name)
            resp = await sub.run(ProviderRequest(prompt=task, system_prompt=agent.instructions))
            span.set_output(text=resp.completion_text)
            return resp.completion_text or "(the agent gave no answer)"
