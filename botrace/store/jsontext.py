"""JSON text for the store: span values, trace attributes, histograms.

orjson writes it when installed (the ``speed`` extra): a quarter of the stdlib's time
on a span's values. What orjson refuses, and everything without orjson, goes to the
stdlib's C encoder.
"""

from __future__ import annotations

import json
from itertools import chain
from typing import Any

__all__ = ["encode", "encode_chunk", "encode_hist", "encode_value"]

_json_safe = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr).encode
try:  # the C encoder made once: json.dumps builds one per call (half its cost on small dicts)
    from json.encoder import c_make_encoder, encode_basestring

    _c_encoder = c_make_encoder(None, repr, encode_basestring, None, ":", ",", False, False, True)
except (ImportError, TypeError):  # pragma: no cover - a Python without the C accelerator
    _c_encoder = None

try:  # optional: pip install 'botrace[speed]'
    import orjson

    _ORJSON_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
                       | orjson.OPT_PASSTHROUGH_DATETIME)
    # What the tracer hands over is already plain JSON (``botrace.limits.make_safe``):
    # str keys, no objects. Without OPT_NON_STR_KEYS and a ``default``, orjson writes
    # that in half the time and raises on anything else, which then goes the way
    # encode() goes; the text is the same either way.
    _PLAIN_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    _orjson_dumps = orjson.dumps
    _fragment = getattr(orjson, "Fragment", None)  # JSON bytes embedded as they are (3.10+)
except ImportError:  # pragma: no cover - exercised by the test that hides orjson
    _orjson_dumps = None
    _fragment = None


def encode(value: Any) -> str:
    """Compact JSON (non-ASCII kept, unknown objects as their repr).

    What orjson refuses (an int wider than 64 bits, a lone surrogate, a cycle) goes to
    the stdlib encoder. The two spell a few floats differently (``1e16`` / ``1e+16``);
    the stdlib writes non-finite floats as ``NaN``, orjson as ``null``."""
    if _orjson_dumps is not None:
        try:
            return _orjson_dumps(value, default=repr, option=_ORJSON_OPTIONS).decode()
        except (TypeError, ValueError):  # (orjson.JSONEncodeError is a TypeError)
            pass
    if _c_encoder is not None:
        try:
            return "".join(_c_encoder(value, 0))
        except RecursionError:
            pass  # a cycle: the checking encoder below says so
    return _json_safe(value)


def encode_value(value: Any) -> bytes:
    """:func:`encode` as UTF-8 bytes (what orjson writes: no copy to a str), for a span's
    values, which :func:`encode_chunk` then embeds as they are."""
    if _orjson_dumps is not None:
        try:
            return _orjson_dumps(value, option=_PLAIN_OPTIONS)
        except (TypeError, ValueError):
            pass  # (not plain JSON: encode() takes it)
    return encode(value).encode()


def encode_chunk(entries: list[tuple]) -> str:
    """A JSON array of span entries: plain values, the last one of each :func:`encode_value`
    bytes (or None). The entries hold no dict or list, so the collector untracks them
    while a batch is folded. Raises if an entry cannot be written (the caller then writes
    the entries one by one)."""
    if _orjson_dumps is not None and _fragment is not None:
        try:
            return _orjson_dumps(entries, default=_fragment).decode()
        except (TypeError, ValueError):  # (an int wider than 64 bits, a lone surrogate)
            pass
    return f"[{','.join([_entry_text(e) for e in entries])}]"


def _entry_text(entry: tuple) -> str:
    head = encode(entry[:-1])  # "[...]"
    data = entry[-1]
    return f"{head[:-1]},{'null' if data is None else data.decode()}]"


def encode_hist(hist: dict[int, int]) -> str:
    """A duration histogram as ``[bucket, count, bucket, count, ...]`` (in no particular order)."""
    flat = list(chain.from_iterable(hist.items()))
    if _orjson_dumps is not None:
        return _orjson_dumps(flat).decode()  # (small ints only: orjson takes them all)
    return _encode_ints(flat)


_encode_ints = json.JSONEncoder(separators=(",", ":")).encode
