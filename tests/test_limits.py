"""Value safety: truncation, reprs, cycles, depth, big ints, redaction without over-scrubbing.

The redaction rules' table of cases is tests/test_redaction.py; values whose own
code raises are tests/test_hostile_values.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import pathlib
import time
import uuid
from collections import OrderedDict, deque, namedtuple
from types import MappingProxyType

from botrace import Limits, make_safe, span_context
from botrace.limits import REDACTED, is_secret_key
from botrace.store.jsontext import encode_value
from botrace.testing import capture_spans


def test_long_strings_are_cut_with_a_visible_marker():
    safe, cut = make_safe({"text": "a" * 100}, Limits(max_string=10))
    assert safe == {"text": "aaaaaaaaaa…[+90 chars]"}
    assert cut


def test_objects_show_their_type_and_their_bounded_repr_only_when_asked():
    class Thing:
        def __repr__(self):
            return "Thing(" + "x" * 5000 + ")"

    safe, cut = make_safe({"thing": Thing(), "b": b"\x00\xff", "s": {3, 1, 2}}, Limits(max_repr=20))
    assert safe == {"thing": "<Thing>", "b": "b'\\x00\\xff'", "s": [1, 2, 3]}
    assert not cut
    safe, cut = make_safe({"thing": Thing()}, Limits(max_repr=20, repr_objects=True))
    assert safe["thing"].startswith("Thing(xxxx") and safe["thing"].endswith("chars]")
    json.dumps(safe)
    assert cut


def test_a_slow_repr_is_not_called_on_the_hosts_path():
    calls = []

    class Slow:
        def __repr__(self):
            calls.append(1)
            time.sleep(1)
            return "Slow()"

    started = time.perf_counter()
    with capture_spans() as cap, span_context("x") as s:
        s.set_input(client=Slow(), clients=[Slow()])
    assert time.perf_counter() - started < 0.5 and calls == []
    assert cap.find("x").input == {"client": "<Slow>", "clients": ["<Slow>"]}


def test_a_repr_that_raises_is_survived():
    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr for you")

    assert make_safe({"x": Broken()}, Limits()) == ({"x": "<Broken>"}, False)
    assert make_safe({"x": Broken()}, Limits(repr_objects=True)) == ({"x": "[unrecordable: Broken]"}, True)


def test_known_types_show_their_fields_or_their_cheap_repr():
    @dataclasses.dataclass
    class Request:
        city: str
        api_key: str
        blob: bytes = dataclasses.field(default=b"...", repr=False)

    Point = namedtuple("Point", "x y")

    class Color(enum.Enum):
        RED = 1

    values = {
        "request": Request("Paris", "sk-never-shown"), "point": Point(1, 2), "color": Color.RED,
        "error": ValueError("bad city"), "when": datetime.date(2024, 5, 1),
        "price": decimal.Decimal("1.50"), "id": uuid.UUID(int=1), "path": pathlib.PurePosixPath("/tmp/x"),
        "proxy": MappingProxyType({"a": 1}), "ordered": OrderedDict(b=2), "queue": deque([1, 2]),
        "keys": {"k": 1}.keys(), "cls": int,
    }
    assert make_safe(values, Limits())[0] == {
        "request": {"city": "Paris", "api_key": REDACTED}, "point": {"x": 1, "y": 2}, "color": "Color.RED",
        "error": "ValueError('bad city')", "when": "datetime.date(2024, 5, 1)",
        "price": "Decimal('1.50')", "id": "UUID('00000000-0000-0000-0000-000000000001')",
        "path": "PurePosixPath('/tmp/x')", "proxy": {"a": 1}, "ordered": {"b": 2}, "queue": [1, 2],
        "keys": ["k"], "cls": "<class 'int'>",
    }


def test_a_dataclass_cycle_is_cut():
    @dataclasses.dataclass
    class Node:
        name: str
        parent: object = None

    node = Node("a")
    node.parent = node
    assert make_safe(node, Limits()) == ({"name": "a", "parent": "[cycle]"}, True)


def test_ints_beyond_64_bits_are_bounded_like_long_strings():
    huge, big = 10**5000, 2**70
    safe, cut = make_safe({"huge": huge, "big": big, "neg": -big, "u64": 2**64 - 1, "i64": -(2**63),
                           "in_list": [big]}, Limits())
    assert cut
    assert safe == {"huge": "[int ≈ 1.0000e+5000]", "big": "1180591620717411303424",
                    "neg": "-1180591620717411303424", "u64": 2**64 - 1, "i64": -(2**63),
                    "in_list": ["1180591620717411303424"]}
    encode_value(safe)  # what the store writes: an int past 64 bits made it raise
    assert make_safe(2**64, Limits())[1] and make_safe(2**64 - 1, Limits()) == (2**64 - 1, False)


def test_a_huge_int_on_a_span_is_marked_and_storable():
    with capture_spans() as cap, span_context("x") as s:
        s.set_input(n=10**5000)
    span = cap.find("x")
    assert span.input == {"n": "[int ≈ 1.0000e+5000]"} and span.truncated and cap.traces[0].truncated
    encode_value(span.to_dict())


def test_cycles_and_depth_are_cut():
    a: dict = {"name": "a"}
    a["self"] = a
    deep: list = []
    node = deep
    for _ in range(20):
        node.append([])
        node = node[0]
    safe, cut = make_safe({"a": a, "deep": deep}, Limits(max_depth=4))
    assert safe["a"]["self"] == "[cycle]"
    assert "[too deep]" in json.dumps(safe["deep"])
    assert cut


def test_long_containers_are_cut_and_counted():
    safe, cut = make_safe(list(range(10)), Limits(max_items=3))
    assert safe == [0, 1, 2, "[+7 items]"] and cut


def test_nan_and_infinity_become_strings():
    safe, _ = make_safe({"a": float("nan"), "b": float("inf")}, Limits())
    json.dumps(safe, allow_nan=False)


def test_secrets_are_redacted_by_key():
    for key in ("api_key", "apiKey", "OPENAI_API_KEY", "password", "X-Auth-Token", "Authorization",
                "cookie", "client_secret", "access_token", "refresh_token", "secret", "set-cookie",
                "password_used", "used_token"):
        assert is_secret_key(key), key


def test_identifiers_and_token_counts_are_not_redacted():
    for key in ("session_id", "user_id", "umo", "input_tokens", "max_tokens", "tokens",
                "output_tokens", "token_count", "model", "sender", "author", "keyboard", "auth_method"):
        assert not is_secret_key(key), key


def test_secret_looking_values_are_redacted_wherever_they_are():
    safe, _ = make_safe({"header": "Bearer abcdefghijklmnop", "note": "sk-" + "a" * 30,
                         "text": "skiing is fun"}, Limits())
    assert safe == {"header": "Bearer [redacted]", "note": REDACTED, "text": "skiing is fun"}


def test_extra_redact_keys_from_settings():
    with capture_spans(settings={"trace_redact_keys": ["phone"]}) as cap:
        with span_context("x") as s:
            s.set_input(phone_number="123", city="Paris")
    assert cap.find("x").input == {"phone_number": REDACTED, "city": "Paris"}


def test_extra_redact_keys_apply_to_keys_already_known_as_plain_and_nested():
    make_safe({"phone_number": 1, "deep": {"phone_number": 2}}, Limits())  # now cached as plain
    limits = Limits(extra_redact_keys=("phone",))
    safe, _ = make_safe({"phone_number": 1, "deep": {"phone_number": 2}, "list": [{"phone": 3}]}, limits)
    assert safe == {"phone_number": REDACTED, "deep": {"phone_number": REDACTED},
                    "list": [{"phone": REDACTED}]}


def test_span_values_are_made_safe_on_the_way_in():
    with capture_spans(settings={"trace_max_string": 16}) as cap, span_context("x") as s:
        s.set_input({"messages": [{"role": "user", "content": "y" * 100}], "api_key": "k"})
    span = cap.find("x")
    assert span.input["api_key"] == REDACTED
    assert span.input["messages"][0]["content"].endswith("…[+84 chars]")
    assert span.truncated and cap.traces[0].truncated
