"""span_record and span_context on every kind of callable."""

from __future__ import annotations

import asyncio
import inspect
import os
import tracemalloc

import pytest

import botrace
from botrace import Status, get_current_span, span_context, span_record
from botrace.testing import capture_spans

# -- the kind of function is preserved ------------------------------------------

@span_record
def plain(a, b=2):
    """Adds."""
    return a + b


@span_record("coro", span_type="io_call")
async def coro(city: str, *, units: str = "c") -> dict:
    return {"city": city, "units": units}


@span_record
def gen(n):
    yield from range(n)
    return "done"


@span_record
async def agen(n):
    for i in range(n):
        yield i


def test_wrappers_keep_name_doc_signature_and_kind():
    assert plain.__name__ == "plain" and plain.__doc__ == "Adds."
    assert str(inspect.signature(plain)) == "(a, b=2)"
    assert inspect.signature(coro) == inspect.signature(coro.__wrapped__)
    assert list(inspect.signature(coro).parameters) == ["city", "units"]
    assert inspect.iscoroutinefunction(coro)
    assert inspect.isgeneratorfunction(gen)
    assert inspect.isasyncgenfunction(agen)
    assert not inspect.iscoroutinefunction(plain)


def test_results_and_exceptions_untouched_with_tracing_off():
    assert plain(1) == 3
    assert list(gen(3)) == [0, 1, 2]
    assert asyncio.run(coro("Paris")) == {"city": "Paris", "units": "c"}

    @span_record
    def boom():
        raise KeyError("k")

    with pytest.raises(KeyError):
        boom()


def _in_botrace(filename: str) -> bool:
    """A file of the botrace package (or a wrapper it generated), wherever the checkout is.

    Not "botrace" in the path: a clone in a folder named botrace has this test file
    under it too, and the test's own allocations would count as botrace's.
    """
    return filename.startswith(_PACKAGE_DIR) or filename.startswith("<botrace wrapper")


_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(botrace.__file__)), "")


def test_tracing_off_allocates_nothing():
    traced = span_record("t")(lambda x: x)
    traced(1)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(1000):
            traced(1)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = [d for d in after.compare_to(before, "lineno")
             if d.size_diff > 0 and any(_in_botrace(frame.filename) for frame in d.traceback)]
    assert grown == []


def test_the_allocation_filter_names_botrace_files_only():
    assert _in_botrace(span_record.__code__.co_filename)
    assert _in_botrace("<botrace wrapper of handler>")
    assert not _in_botrace(__file__)  # (also when the checkout's folder is called botrace)
    assert not _in_botrace(os.path.join(os.sep, "src", "botrace", "tests", "test_record.py"))


def test_sync_function_records_input_output_and_parent():
    with capture_spans() as cap:
        assert plain(1, b=5) == 6
    span = cap.find("plain")
    assert span.input == {"a": 1, "b": 5}
    assert span.output == {"return": 6}
    assert span.parent_id == cap.root.span_id


async def test_coroutine_records_span_type_and_keyword_only_args():
    async with capture_spans() as cap:
        await coro("Oslo", units="f")
    span = cap.find("coro")
    assert span.span_type == "io_call"
    assert span.input == {"city": "Oslo", "units": "f"}


def test_unusual_signatures_forward_arguments_exactly():
    @span_record
    def f(a, /, b, *args, c, d=4, **kw):
        return (a, b, args, c, d, kw)

    @span_record
    def shadow(span, result, exc):  # names the wrapper itself might use
        return (span, result, exc)

    with capture_spans() as cap:
        assert f(1, 2, 3, c=5, e=6) == (1, 2, (3,), 5, 4, {"e": 6})
        assert shadow(1, 2, 3) == (1, 2, 3)
    assert cap.find("test_unusual_signatures_forward_arguments_exactly.<locals>.f").input == {
        "a": 1, "b": 2, "args": [3], "c": 5, "d": 4, "e": 6}
    assert str(inspect.signature(f)) == "(a, /, b, *args, c, d=4, **kw)"


def test_methods_static_and_class_methods():
    class Plugin:
        factor = 3

        @span_record
        def method(self, x):
            return x * self.factor

        @span_record
        @staticmethod
        def static(x):
            return x + 1

        @span_record
        @classmethod
        def klass(cls, x):
            return x * cls.factor

    with capture_spans() as cap:
        p = Plugin()
        assert (p.method(2), Plugin.static(2), Plugin.klass(2)) == (6, 3, 6)
    assert cap.find("test_methods_static_and_class_methods.<locals>.Plugin.method").input == {"x": 2}
    assert len(cap.spans) == 3


def test_record_flags_and_bare_name():
    @span_record("secretive", record_input=False, record_output=False)
    def f(password_like):
        return "result"

    with capture_spans() as cap:
        f("x")
    span = cap.find("secretive")
    assert span.input is None and span.output is None


def test_generator_span_covers_whole_iteration_and_does_not_leak():
    with capture_spans() as cap:
        outside = []
        for _item in gen(3):
            outside.append(get_current_span())
    span = cap.find("gen")
    assert all(s is cap.root for s in outside)
    assert span.output == {"items": 3, "result": "done"}
    assert span.status == Status.OK


async def test_async_generator_iterated_fully():
    async with capture_spans() as cap:
        items = [i async for i in agen(4)]
    assert items == [0, 1, 2, 3]
    assert cap.find("agen").output == {"items": 4}


async def test_async_generator_span_does_not_leak_into_caller_between_yields():
    @span_record
    async def handler():
        async with span_context("inside before yield"):
            pass
        yield "first"
        async with span_context("inside after yield"):
            pass
        yield "second"

    async with capture_spans() as cap:
        seen = []
        async for _ in handler():
            seen.append(get_current_span())
            async with span_context("consumer work"):
                pass
    handler_span = cap.find("test_async_generator_span_does_not_leak_into_caller_between_yields.<locals>.handler")
    assert all(s is cap.root for s in seen)
    assert cap.find("inside before yield").parent_id == handler_span.span_id
    assert cap.find("inside after yield").parent_id == handler_span.span_id
    assert all(s.parent_id == cap.root.span_id for s in cap.find_all("consumer work"))


async def test_span_opened_across_a_yield_stays_current_inside_the_generator():
    @span_record
    async def handler():
        async with span_context("held"):
            yield 1
            async with span_context("after resume"):
                pass
            yield 2

    async with capture_spans() as cap:
        async for _ in handler():
            assert get_current_span() is cap.root
    assert cap.find("after resume").parent_id == cap.find("held").span_id


async def test_async_generator_closed_early_ends_ok_and_closes_inner():
    closed = []

    @span_record
    async def stream():
        try:
            for i in range(100):
                yield i
        finally:
            closed.append(get_current_span().name)

    async with capture_spans() as cap:
        g = stream()
        async for i in g:
            if i == 2:
                break
        await g.aclose()  # what `async with contextlib.aclosing(...)` does for you
    span = cap.find("test_async_generator_closed_early_ends_ok_and_closes_inner.<locals>.stream")
    assert span.status == Status.OK
    assert span.meta == {"closed_early": True}
    assert closed == [span.name]  # the generator's cleanup ran inside its own span


async def test_async_generator_abandoned_after_break_is_closed_by_the_loop():
    @span_record("abandoned")
    async def stream():
        for i in range(100):
            yield i

    async with capture_spans() as cap:
        async for i in stream():
            if i == 1:
                break
        for _ in range(5):  # asyncio's async-generator finaliser schedules aclose()
            await asyncio.sleep(0)
    assert cap.find("abandoned").meta == {"closed_early": True}


async def test_async_generator_athrow_reaches_the_generator_and_is_recorded():
    @span_record
    async def handler():
        try:
            yield 1
        except ValueError:
            yield "recovered"

    async with capture_spans() as cap:
        g = handler()
        assert await g.asend(None) == 1
        assert await g.athrow(ValueError("x")) == "recovered"
        with pytest.raises(StopAsyncIteration):
            await g.asend(None)
    assert cap.find("test_async_generator_athrow_reaches_the_generator_and_is_recorded.<locals>.handler").status == Status.OK


async def test_async_generator_error_is_recorded_and_reraised():
    @span_record("failing")
    async def handler():
        yield 1
        raise RuntimeError("plugin bug")

    async with capture_spans() as cap:
        with pytest.raises(RuntimeError, match="plugin bug"):
            async for _ in handler():
                pass
    assert cap.find("failing").error["type"] == "RuntimeError"


def test_generator_send_and_throw_are_forwarded():
    @span_record
    def echo():
        received = yield "ready"
        try:
            yield f"got {received}"
        except KeyError:
            yield "caught"

    with capture_spans():
        g = echo()
        assert next(g) == "ready"
        assert g.send("x") == "got x"
        assert g.throw(KeyError("k")) == "caught"
        g.close()


async def test_cancellation_is_recorded_as_cancelled_not_error():
    @span_record("slow")
    async def slow():
        await asyncio.sleep(10)

    async with capture_spans() as cap:
        task = asyncio.create_task(slow())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    span = cap.find("slow")
    assert span.status == Status.CANCELLED
    assert span.error is None
    assert cap.traces[0].to_dict()["status"] == "ok"


async def test_exception_in_coroutine_reraised_unchanged():
    err = ConnectionError("down")

    @span_record
    async def fetch():
        raise err

    async with capture_spans() as cap:
        with pytest.raises(ConnectionError) as caught:
            await fetch()
    assert caught.value is err
    assert cap.spans[0].status == Status.ERROR


def test_plugin_override_by_name():
    @span_record("x", plugin="weather")
    def f():
        return 1

    with capture_spans() as cap:
        f()
    assert cap.find("x").plugin.name == "weather"


def test_span_record_rejects_bad_arguments():
    with pytest.raises(TypeError):
        span_record(42)
    with pytest.raises(TypeError):
        span_record("x", span_type="")
