"""Context propagation: tasks, gather, threads, executors, concurrency without cross-talk."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading

import botrace
from botrace import get_current_span, span_context, span_record
from botrace.testing import capture_spans


async def test_fifty_concurrent_tasks_get_separate_subtrees():
    async def worker(n: int) -> None:
        async with span_context(f"worker{n}"):
            for step in range(3):
                await asyncio.sleep(random.random() / 1000)
                async with span_context(f"w{n}.step{step}"):
                    await asyncio.sleep(random.random() / 1000)
                    async with span_context(f"w{n}.step{step}.io", "io_call"):
                        await asyncio.sleep(0)

    async with capture_spans() as cap:
        await asyncio.gather(*(worker(n) for n in range(50)))

    by_id = {s.span_id: s for s in cap.spans}
    for span in cap.spans:
        if span.name.startswith("worker"):
            assert span.parent_id == cap.root.span_id
            continue
        parent = by_id[span.parent_id]
        n = span.name.split(".")[0][1:]
        if span.name.endswith(".io"):
            assert parent.name == span.name[: -len(".io")]
        else:
            assert parent.name == f"worker{n}"
    assert len(cap.spans) == 50 * 7


async def test_two_concurrent_subagents_calling_the_same_tool_get_their_own_tool_spans():
    @span_record("search_tool", span_type="tool_call")
    async def search(query: str) -> str:
        await asyncio.sleep(random.random() / 500)
        return query.upper()

    async def subagent(name: str) -> None:
        async with span_context(f"subagent {name}", "subagent_call"):
            for i in range(5):
                await search(f"{name}-{i}")

    async with capture_spans() as cap:
        await asyncio.gather(subagent("a"), subagent("b"))

    agents = {s.span_id: s.name for s in cap.find_all(span_type="subagent_call")}
    tools = cap.find_all("search_tool")
    assert len(tools) == 10
    for tool in tools:
        owner = agents[tool.parent_id]
        assert tool.input["query"].startswith(owner.split()[-1] + "-")


async def test_create_task_inherits_the_current_span():
    async with capture_spans() as cap:
        async with span_context("parent") as parent:
            task = asyncio.create_task(_child("in task"))
        await task
    assert cap.find("in task").parent_id == parent.span_id


async def _child(name: str) -> None:
    async with span_context(name):
        await asyncio.sleep(0)


async def test_to_thread_carries_the_span():
    def blocking() -> str:
        with span_context("in thread", "io_call") as s:
            return s.span_id

    async with capture_spans() as cap, span_context("caller") as caller:
        await asyncio.to_thread(blocking)
    assert cap.find("in thread").parent_id == caller.span_id


async def test_run_in_executor_helper_carries_the_span():
    def blocking() -> int:
        with span_context("in executor"):
            return threading.get_ident()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        async with capture_spans() as cap, span_context("caller") as caller:
            await botrace.run_in_executor(pool, blocking)
    assert cap.find("in executor").parent_id == caller.span_id


def test_wrap_context_carries_the_span_into_a_plain_thread():
    def work() -> None:
        with span_context("in plain thread"):
            pass

    with capture_spans() as cap, span_context("caller") as caller:
        thread = threading.Thread(target=botrace.wrap_context(work))
        thread.start()
        thread.join()
    assert cap.find("in plain thread").parent_id == caller.span_id


def test_plain_thread_without_helper_is_outside_the_trace():
    seen = []
    with capture_spans():
        thread = threading.Thread(target=lambda: seen.append(get_current_span()))
        thread.start()
        thread.join()
    assert seen == [None]


async def test_current_span_is_restored_after_each_block():
    async with capture_spans() as cap:
        assert get_current_span() is cap.root
        async with span_context("a") as a:
            assert get_current_span() is a
            with span_context("b") as b:
                assert get_current_span() is b
            assert get_current_span() is a
        assert get_current_span() is cap.root
    assert get_current_span() is None
