"""Values whose own code raises never raise into plugin code (issue 17, item 6).

Recording a value runs the value's code (``items()``, ``__iter__``, ``__lt__``,
``__repr__``, ...). Whatever that raises is caught where botrace reads the value,
counted, and the value shows as ``[unrecordable: TypeName]``; the plugin's call
runs and returns exactly what it returns untraced. The property tests check
that for every public recording entry point over generated hostile objects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections import namedtuple
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botrace import Limits, make_safe, span_context, span_record
from botrace.store.jsontext import encode_value
from botrace.testing import capture_spans


@pytest.fixture(autouse=True)
def _quiet(caplog):
    caplog.set_level(logging.ERROR, logger="botrace")  # the rate-limited "could not be recorded" warning


# -- the four cases of the issue ------------------------------------------------------

class ItemsRaise(dict):
    def items(self):
        raise RuntimeError("items")


class IterRaises(list):
    def __iter__(self):
        raise RuntimeError("iter")


class IntRaises(int):
    def __int__(self):
        raise RuntimeError("int")


class LtRaises:
    def __lt__(self, other):
        raise ValueError("lt")


ISSUE_CASES = [ItemsRaise(a=1), IterRaises([1, 2]), IntRaises(7), {LtRaises(), LtRaises()}]


@pytest.mark.parametrize("value", ISSUE_CASES, ids=lambda v: type(v).__name__)
def test_hostile_values_never_raise_out_of_the_setters(value):
    with capture_spans() as cap, span_context("x") as s:
        s.set_input(v=value, city="Paris")
        s.set_output({"v": value})
        s.set_meta(v=value)
        s.add_event("e", v=value)
        s.set_usage(input_tokens=value)
    span = cap.find("x")
    assert span.input["city"] == "Paris"  # the value's siblings are kept
    json.dumps(span.to_dict())


def test_unreadable_values_are_marked_and_counted():
    with capture_spans() as cap, span_context("x") as s:
        s.set_input(d=ItemsRaise(a=1), items=[1, IterRaises([2])], fine=IntRaises(7), s={LtRaises(), 1})
    span = cap.find("x")
    assert span.input == {"d": "[unrecordable: ItemsRaise]", "items": [1, "[unrecordable: IterRaises]"],
                          "fine": 7, "s": span.input["s"]}
    assert sorted(map(str, span.input["s"])) == ["1", "<LtRaises>"]  # unorderable: kept, unsorted
    assert span.truncated and cap.traces[0].unrecordable == 2
    assert cap.tracer.health()["faults"]["unrecordable_value"] == 1  # one set_input call


@pytest.mark.parametrize("value", ISSUE_CASES, ids=lambda v: type(v).__name__)
def test_span_record_runs_the_function_and_returns_its_result(value):
    calls = []

    @span_record
    def handler(x):
        calls.append(x)
        return x

    assert handler(value) is value  # untraced
    with capture_spans() as cap:
        assert handler(value) is value  # traced
    assert len(calls) == 2
    assert cap.find("test_span_record_runs_the_function_and_returns_its_result.<locals>.handler").status == "ok"


def test_a_mapping_argument_that_cannot_be_read():
    with capture_spans() as cap, span_context("x") as s:
        s.set_input(ItemsRaise(a=1))
        s.set_output(ItemsRaise(a=1), status=200)
        s.set_meta([1, 2])  # not a mapping at all: kept under "value"
    span = cap.find("x")
    assert span.input == {"value": "[unrecordable: ItemsRaise]"}
    assert span.output == {"value": "[unrecordable: ItemsRaise]", "status": 200}
    assert span.meta == {"value": [1, 2]}


def test_a_key_that_hashes_once_then_raises():
    """What raises around the walk rather than in it is caught by the setters' last line."""
    class Flaky:
        hashed = False

        def __hash__(self):
            if Flaky.hashed:
                raise RuntimeError("hash")
            Flaky.hashed = True
            return 1

    with capture_spans() as cap, span_context("x") as s:
        s.set_input({Flaky(): 1})
    assert cap.find("x").input == {"value": "[unrecordable: dict]"}
    assert cap.traces[0].unrecordable == 1


def test_errors_whose_text_raises():
    class BadStr(Exception):
        def __str__(self):
            raise RuntimeError("str")

    class BadClass(Exception):
        @property
        def __class__(self):
            raise RuntimeError("__class__")

    def escaping(span_name, error):
        """What escapes a span_context block that raises ``error`` (by name: pytest itself
        cannot print an exception chain holding a BadClass)."""
        try:
            with span_context(span_name):
                raise error
        except BaseException as escaped:  # the test looks at whatever escaped
            return "the same error" if escaped is error else type(escaped).__name__
        return "nothing"

    with capture_spans() as cap:
        assert escaping("a", BadStr("x")) == "the same error"
        assert escaping("b", BadClass("y")) == "the same error"
        with span_context("c") as c:
            c.set_error(IterRaises([1]))
    assert cap.find("a").error["type"] == "BadStr"
    assert cap.find("a").error["message"] == "[unrecordable: BadStr]"
    assert cap.find("b").error["message"] == "y"
    assert cap.find("c").error["message"] == "[1]"  # str() of a list subclass, not by its __iter__


# -- property tests over generated hostile objects ------------------------------------------

ERRORS = [ValueError, TypeError, RuntimeError, KeyError, AttributeError, IndexError, StopIteration,
          RecursionError, ZeroDivisionError, OSError, UnicodeError, NotImplementedError, LookupError]
# What a hostile class may override, by the base it derives from.
METHODS = {
    object: ["__repr__", "__str__", "__len__", "__iter__", "__eq__", "__lt__", "__getattr__", "__bool__",
             "__index__", "__float__", "__class__"],
    dict: ["items", "keys", "values", "__iter__", "__len__", "__getitem__", "__contains__", "__repr__"],
    list: ["__iter__", "__len__", "__getitem__", "__repr__", "__lt__"],
    tuple: ["__iter__", "__len__", "__getitem__", "__repr__"],
    set: ["__iter__", "__len__", "__repr__"],
    frozenset: ["__iter__", "__len__"],
    int: ["__int__", "__index__", "__repr__", "__str__", "__lt__", "__bool__"],
    float: ["__float__", "__repr__", "__str__"],
    str: ["__str__", "__repr__", "__len__", "__getitem__", "__iter__"],
    bytes: ["__getitem__", "__len__", "__repr__", "__iter__"],
    Exception: ["__str__", "__repr__", "__class__", "args"],
}
SAMPLE = {object: (), dict: ({"a": 1, "api_key": "k"},), list: ([1, "two"],), tuple: ((1, 2),),
          set: ({1, 2},), frozenset: (frozenset({3}),), int: (7,), float: (1.5,), str: ("text",),
          bytes: (b"\x00",), Exception: ("failed",)}


def _raiser(error):
    def method(*args, **kwargs):
        raise error("hostile")
    return method


def _hostile(base, overridden, error):
    namespace = {}
    for name in overridden:
        if name in ("__class__", "args"):
            namespace[name] = property(_raiser(error))
        else:
            namespace[name] = _raiser(error)
    if "__eq__" in overridden:
        namespace["__hash__"] = object.__hash__
    kind = type(f"Hostile{base.__name__.title()}", (base,), namespace)
    return kind(*SAMPLE[base])


@st.composite
def hostile_objects(draw):
    base = draw(st.sampled_from(list(METHODS)))
    overridden = draw(st.lists(st.sampled_from(METHODS[base]), min_size=1, max_size=4, unique=True))
    return _hostile(base, overridden, draw(st.sampled_from(ERRORS)))


@st.composite
def hostile_mapping_abc(draw):
    error = draw(st.sampled_from(ERRORS))

    class Hostile(Mapping):
        __getitem__ = __iter__ = _raiser(error)

        def __len__(self):
            return 1

    return Hostile()


@st.composite
def hostile_records(draw):
    error = draw(st.sampled_from(ERRORS))
    if draw(st.booleans()):
        @dataclasses.dataclass
        class Record:
            x: int = 1

        Record.x = property(_raiser(error))  # reading the field raises
        return object.__new__(Record)
    pair = namedtuple("Pair", "a b")
    return type("HostilePair", (pair,), {"__iter__": _raiser(error)})(1, 2)


hostile = st.one_of(hostile_objects(), hostile_mapping_abc(), hostile_records())
# Hostile objects alone and inside plain containers, as values and (hashable ones) as keys.
values = st.recursive(
    st.one_of(hostile, st.integers(), st.text(max_size=20), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _recorded(cap):
    """Every finished span is JSON and the store can write it."""
    for span in cap.sink.finished_spans:
        data = span.to_dict()
        json.dumps(data)
        encode_value(data)


@PROPERTY
@given(values)
def test_make_safe_always_returns_json(value):
    safe, _ = make_safe(value, Limits())
    json.dumps(safe)
    safe, _ = make_safe(value, Limits(repr_objects=True, max_depth=3, max_items=2))
    json.dumps(safe)


@PROPERTY
@given(values)
def test_every_span_setter_survives_hostile_values(value):
    with capture_spans() as cap, span_context("x") as s:
        s.set_input(v=value)
        s.set_input(value)
        s.set_output(v=value)
        s.set_output(value, more=value)
        s.set_meta(v=value)
        s.set_meta(value)
        s.set_usage(input_tokens=value, output_tokens=value, cached_tokens=value, extra=value)
        s.add_event(value, v=value)
        s.add_event("e", **{"a": value})
        s.set_error(value)
        with span_context("llm", "llm_call") as llm:
            llm.set_meta(input_tokens=value)
    _recorded(cap)


@PROPERTY
@given(values)
def test_span_context_records_an_exception_carrying_hostile_values(value):
    error = RuntimeError(value)
    with capture_spans() as cap:
        with pytest.raises(RuntimeError) as caught, span_context("x"):
            raise error
        async def run():
            with pytest.raises(RuntimeError) as caught_async:
                async with span_context("y"):
                    raise error
            return caught_async.value is error  # (asyncio.run's own task repr would read a hostile result)
        assert asyncio.run(run())
    assert caught.value is error
    assert cap.find("x").status == "error"
    _recorded(cap)


@PROPERTY
@given(values, st.booleans(), st.booleans())
def test_span_record_returns_exactly_what_the_function_returns(value, record_input, record_output):
    options = {"record_input": record_input, "record_output": record_output}

    @span_record("sync", **options)
    def sync(x, *rest, key=None, **more):
        return x

    @span_record("coro", **options)
    async def coro(x, *, key=None):
        return x

    @span_record("gen", **options)
    def gen(x):
        yield x
        yield x
        return x

    @span_record("agen", **options)
    async def agen(x):
        yield x

    @span_record("fails", **options)
    def fails(x):
        raise KeyError(x)

    def call_all():
        assert sync(value, value, key=value, other=value) is value
        async def await_coro():
            return await coro(value, key=value) is value  # (asyncio.run reprs its result on some paths)
        assert asyncio.run(await_coro())
        items = []
        result = yield_all(gen(value), items)
        assert result is value and all(item is value for item in items) and len(items) == 2

        async def drain():
            return [item is value async for item in agen(value)] == [True]
        assert asyncio.run(drain())
        with pytest.raises(KeyError) as caught:
            fails(value)
        assert caught.value.args[0] is value

    call_all()  # untraced
    with capture_spans() as cap:
        call_all()  # traced: the same results, every function ran
    assert sorted(cap.names()) == ["agen", "coro", "fails", "gen", "sync"]
    _recorded(cap)


def yield_all(generator, items):
    """Iterate by hand: the items and the generator's return value."""
    while True:
        try:
            items.append(next(generator))
        except StopIteration as stop:
            return stop.value
