"""Reading ``span_chunks`` (schema 6): a trace's spans, a writer batch at a time.

Each row holds a JSON array of span entries, each an array in
:data:`botrace.schema.SPAN_FIELDS` order. A span written while running appears again,
finished (or ``interrupted`` by the crash recovery), in a later chunk of its trace;
:func:`latest_spans` keeps each span's latest version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from botrace.schema import SPAN_FIELDS

__all__ = ["decode", "latest_spans"]

# an entry's fields (SPAN_FIELDS order)
(SID, PID, NAME, TYPE, PLUGIN, GKEY, START, END, STATUS, TIN, TOUT, TCACHED, SELF, BUCKET,
 COST, DATA) = range(len(SPAN_FIELDS))

try:  # optional: pip install 'botrace[speed]'
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - exercised by the test that hides orjson
    _loads = json.loads


def decode(text: str) -> list[list]:
    """One chunk's entries."""
    try:
        return _loads(text)
    except ValueError:  # orjson refuses what the stdlib wrote for a non-finite float
        return json.loads(text)


def latest_spans(texts: Iterable[str]) -> list[list]:
    """The spans of a trace's chunks (given oldest first): each span's latest version, in
    the order the spans were first written."""
    latest: dict[Any, list] = {}
    for text in texts:
        for entry in decode(text):
            latest[entry[SID]] = entry
    return list(latest.values())
