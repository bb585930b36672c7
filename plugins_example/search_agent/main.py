"""Search: a subagent with tools of its own.

The main agent does not see ``web_search`` or ``fetch_page``; it sees one
tool, ``transfer_to_search``, and hands the task over. The ``search`` agent
then runs its own tool loop (search, open the best hit, answer), and its LLM
and tool spans nest under the handoff's ``subagent_call`` span.

What it shows a plugin author:

* Declaring a subagent: list it in ``agents`` and give its tools ``agent="search"``.
* ``span_context`` with a ``plugin``-independent name for a step (ranking),
  and ``set_meta`` for numbers worth seeing in the trace.

The "web" is a small offline corpus so the example is deterministic.
"""

from __future__ import annotations

import asyncio
import re

from botrace import span_context
from botrace_host_adapter.refhost.api import Agent, MessageEvent, Star, filter, register

CORPUS = {
    "https://docs.example/botrace": "botrace gives chatbot hosts one hierarchical trace per "
    "message: stages, plugin handlers, LLM calls, tool calls and subagent handoffs.",
    "https://docs.example/astrbot": "AstrBot is a multi-platform chatbot host with plugins "
    "called stars, a pipeline of stages and an agent runner with tools.",
    "https://docs.example/sqlite-wal": "SQLite's write-ahead log lets readers run while one "
    "writer appends; checkpoints move pages back into the database.",
    "https://docs.example/opentelemetry": "OpenTelemetry defines traces, spans and the OTLP "
    "protocol; GenAI semantic conventions name LLM attributes.",
    "https://docs.example/asyncio": "asyncio runs coroutines on an event loop; tasks copy "
    "context variables, so a span can follow the work it started.",
}


def _score(query: str, text: str) -> int:
    words = set(re.findall(r"\w+", query.lower()))
    return sum(1 for w in re.findall(r"\w+", text.lower()) if w in words)


@register("search", "botrace", "A research subagent that searches and reads pages", "2.0.0",
          display_name="Search agent")
class SearchPlugin(Star):
    agents = (Agent(
        name="search",
        description="Finds and reads documents to answer research questions.",
        instructions="You are a research agent. Search first, then open the best page, "
                     "then answer in two sentences with the URL.",
        max_steps=4,
    ),)

    async def initialize(self) -> None:
        self.latency_s = float(self.context.get_config().get("example_io_latency_ms", 0)) / 1000

    @filter.llm_tool(name="web_search", agent="search")
    async def web_search(self, event: MessageEvent, query: str) -> str:
        """Search the web and return the best matching URLs.

        Args:
            query(string): what to search for
        """
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        async with span_context("rank results", span_type="custom") as s:
            ranked = sorted(CORPUS, key=lambda url: -_score(query, url + " " + CORPUS[url]))
            s.set_meta(candidates=len(CORPUS))
        return "\n".join(ranked[:3])

    @filter.llm_tool(name="fetch_page", agent="search")
    async def fetch_page(self, event: MessageEvent, url: str) -> str:
        """Fetch a web page and return its text.

        Args:
            url(string): the page's URL
        """
        async with span_context("GET page", span_type="io_call") as http:
            http.set_input(url=url)
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            text = CORPUS.get(url)
            http.set_output(status=200 if text else 404)
        return f"{url}: {text}" if text else f"{url}: 404 not found"
