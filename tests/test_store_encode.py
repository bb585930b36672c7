"""The store's JSON encoder: orjson when installed, the stdlib otherwise, same values."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json

import pytest

from botrace.store import jsontext as writer

SAMPLES = [
    {"input": {"q": "héllo 🌍", "n": 3, "ok": True, "none": None}, "output": [1, 2.5, "x"]},
    {"meta": {"model": "gpt-4o", "input_tokens": 12, "cached_tokens": 0}},
    {"events": [{"name": "retry", "attributes": {"attempt": 2}}], "error": "boom\n  at x"},
    {2: "int key", None: "none key", True: "bool key"},
    ["a", {"nested": {"deeper": [None, False, 0.1, -7]}}],
    "plain <b>text</b> & \"quotes\" \\ \u2028",
    {"long": "y" * 5_000},
]


@pytest.mark.parametrize("value", SAMPLES)
def test_orjson_and_the_stdlib_write_the_same_values(value, monkeypatch) -> None:
    pytest.importorskip("orjson")
    fast = writer.encode(value)
    monkeypatch.setattr(writer, "_orjson_dumps", None)
    slow = writer.encode(value)
    assert json.loads(fast) == json.loads(slow)
    assert "\\u00e9" not in fast and "\\u00e9" not in slow  # non-ASCII kept as is


@dataclasses.dataclass
class _Point:
    x: int


class _Colour(enum.Enum):
    RED = "red"


class _Key(str):
    pass


@pytest.mark.parametrize("value", [*SAMPLES, {"when": datetime.datetime(2026, 11, 22, 10, 0)},
                                   {"point": _Point(3)}, {_Key("k"): 1}, {"c": _Colour.RED},
                                   {"n": 2**70}, {"f": float("nan")}])
def test_a_spans_values_are_written_as_encode_writes_them(value) -> None:
    # encode_value tries orjson on plain JSON first (str keys, no objects); whatever that
    # refuses must come out as encode() writes it
    assert writer.encode_value(value) == writer.encode(value).encode()


def test_orjson_is_used_when_installed(monkeypatch) -> None:
    pytest.importorskip("orjson")
    calls = []
    real = writer._orjson_dumps

    def spy(value, **kw):
        calls.append(value)
        return real(value, **kw)

    monkeypatch.setattr(writer, "_orjson_dumps", spy)
    assert writer.encode({"a": 1}) == '{"a":1}'
    assert calls == [{"a": 1}]


def test_what_orjson_refuses_goes_to_the_stdlib() -> None:
    wide = 2**80  # wider than 64 bits: orjson refuses it
    assert json.loads(writer.encode({"n": wide})) == {"n": wide}
    assert json.loads(writer.encode({"obj": object})) == {"obj": repr(object)}
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(ValueError):
        writer.encode(cycle)


def _entries() -> list[tuple]:
    """Span entries as the fold makes them: plain values, the values' JSON bytes last."""
    return [("a" * 16, None, "chat <b>", "llm_call", "weather", "gpt-4o", 10, 20, "ok",
             3, 4, 0, 10, 79, 0.25, writer.encode_value(value))
            for value in SAMPLES] + [("b" * 16, "a" * 16, "x", None, None, "x", 1, None,
                                      "running", 0, 0, 0, None, None, 0.0, None)]


def test_a_chunk_embeds_each_spans_values_as_they_were_encoded(monkeypatch) -> None:
    entries = _entries()
    expected = [[*e[:-1], None if e[-1] is None else json.loads(e[-1])] for e in entries]
    fast = writer.encode_chunk(entries)
    assert json.loads(fast) == expected
    monkeypatch.setattr(writer, "_orjson_dumps", None)  # the stdlib's way
    assert json.loads(writer.encode_chunk(entries)) == expected


def test_a_chunk_orjson_refuses_is_written_by_the_stdlib() -> None:
    (entry,) = _entries()[:1]
    wide = (*entry[:9], 2**70, *entry[10:])  # (the fold never makes one: SQLite's 64 bits)
    assert json.loads(writer.encode_chunk([wide]))[0][9] == 2**70
