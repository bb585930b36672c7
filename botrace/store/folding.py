"""Finished spans to what the writer stores: span rows, trace totals, minute statistics.

:meth:`SpanFolder.fold` takes a batch of records (see ``botrace.store.writer``) and
turns every finished span (``"S"``) into

- its entry in its trace's chunk of spans (``botrace.schema.SPAN_FIELDS`` order):
  statistics key, self time, duration bucket and cost worked out; the entries of one
  trace in the batch are encoded as one JSON array, one ``span_chunks`` row;
- its share of its trace's totals (a *part*, one per trace in the batch, see
  :func:`new_totals`), which the writer adds to what earlier batches brought and
  writes into the trace's row when the trace ends;
- its share of the per-minute statistics rollup (``botrace.store.rollup``).

A span still running (``"R"``, added when the batch was taken) becomes a ``running``
entry in its trace's chunk, after that batch's finished spans and before any later
batch's, where its finished version replaces it (``botrace.store.chunks``).

The other records pass through in order. The feeder thread folds every batch before
it pickles it, so this work runs on the host's side, next to the hooks that left a
core mostly idle, while the writer's core does SQLite; the writer folds only what
reaches it from a spill file. The one state kept between batches is the time of the
children each unfinished parent has seen (for its self time); a folder sees the
children of a parent only if they went the same way, so a parent whose children were
spilled while it was not counts their time as its own.
"""

from __future__ import annotations

import math
from typing import Any

from botrace.pricing import PriceTable
from botrace.schema import DUR_BUCKET_BASE
from botrace.store import chunks as E
from botrace.store.jsontext import encode_chunk
from botrace.store.rollup import MINUTE, new_agg

__all__ = ["SpanFolder", "entry_totals", "merge_totals", "new_totals", "span_record",
           "tag_pairs"]

_LOG_BASE = math.log(DUR_BUCKET_BASE)
_MAX_PARENTS = 500_000  # unfinished parents remembered (spans that never end: oldest go)

# A trace's totals, a list (cheap to pickle and to add up):
(SPANS, LLM, TOOL_CALLS, ERRORS, INPUT, OUTPUT, CACHED, COST, TYPES, PLUGINS, MODELS, TOOLS,
 DROPPED) = range(13)


def new_totals() -> list:
    """``[spans, llm_calls, tool_calls, errors, input_tokens, output_tokens, cached_tokens,
    cost_usd, {span_type}, {plugin}, {model}, {tool}, dropped]`` (the sets as dicts: first
    seen first; ``dropped``: spans of the trace the store could not encode, added to the
    trace's ``dropped_spans``)."""
    return [0, 0, 0, 0, 0, 0, 0, 0.0, {}, {}, {}, {}, 0]


def merge_totals(into: list, part: list) -> None:
    into[SPANS] += part[SPANS]
    into[LLM] += part[LLM]
    into[TOOL_CALLS] += part[TOOL_CALLS]
    into[ERRORS] += part[ERRORS]
    into[INPUT] += part[INPUT]
    into[OUTPUT] += part[OUTPUT]
    into[CACHED] += part[CACHED]
    into[COST] += part[COST]
    into[TYPES].update(part[TYPES])
    into[PLUGINS].update(part[PLUGINS])
    into[MODELS].update(part[MODELS])
    into[TOOLS].update(part[TOOLS])
    into[DROPPED] += part[DROPPED]


def entry_totals(entries: list[list]) -> list:
    """A trace's totals (:func:`new_totals`) from its stored span entries (crash recovery
    rebuilds an interrupted trace's row from them)."""
    acc = new_totals()
    for e in entries:
        stype, gkey = e[E.TYPE], e[E.GKEY]
        acc[SPANS] += 1
        acc[INPUT] += e[E.TIN]
        acc[OUTPUT] += e[E.TOUT]
        acc[CACHED] += e[E.TCACHED]
        acc[COST] += e[E.COST]
        if e[E.STATUS] == "error":
            acc[ERRORS] += 1
        if stype == "llm_call":
            acc[LLM] += 1
            if gkey is not None:
                acc[MODELS][gkey] = None
        elif stype == "tool_call":
            acc[TOOL_CALLS] += 1
            if gkey is not None:
                acc[TOOLS][gkey] = None
        if stype is not None:
            acc[TYPES][stype] = None
        if e[E.PLUGIN] is not None:
            acc[PLUGINS][e[E.PLUGIN]] = None
    return acc


def tag_pairs(acc: list) -> list[tuple[str, Any]]:
    """The ``(kind, value)`` tags of a trace with totals ``acc``: what the list filters by."""
    return ([("span_type", v) for v in acc[TYPES]] + [("plugin", v) for v in acc[PLUGINS]]
            + [("model", v) for v in acc[MODELS]] + [("tool", v) for v in acc[TOOLS]])


def span_record(span: Any) -> tuple:
    """A finished span as an ``"S"`` record (``botrace.store.writer``), for a spill file.

    The live queue holds the span object itself, which no longer changes once it has
    ended: the hook then allocates nothing, so the host's garbage collector is not
    driven by a tuple per span. :meth:`SpanFolder.fold` reads both forms alike."""
    trace = span.trace
    plugin = span.plugin
    return ("S", trace.trace_id, trace.start_ns, span.span_id, span.parent_id, span.name,
            span.span_type, None if plugin is None else plugin.name, span.start_ns,
            span.end_ns, span.status, span.error, span.input, span.output, span.meta,
            span.events, span.truncated)


def _tok(value: Any) -> int:
    """A token count as given, if it is one (SQLite holds 64-bit integers)."""
    return value if type(value) is int and 0 < value < 1 << 63 else 0


class SpanFolder:
    """Folds batches of records; one per side that folds (the feeder, the writer)."""

    def __init__(self, prices: PriceTable, encode: Any) -> None:
        self.prices = prices
        self.encode = encode
        self.child_ns: dict[str, int] = {}  # parent span id -> its finished children's ns

    def fold(self, records: list[tuple]) -> tuple[list, list, dict, dict, int, Any]:
        """``(others, chunks, parts, minutes, lost, error)``: the records that are not
        finished spans, in order; one ``(trace_start_ns, trace_id, json_text, spans)`` row of
        ``span_chunks`` per trace; trace id -> part; minute key -> aggregate; how many spans
        were dropped because a value would not encode (or a queued object was not a span),
        and the last such error."""
        others: list[tuple] = []
        slots: dict[str, tuple] = {}  # trace id -> (part, entries, trace start)
        minutes: dict[tuple, list] = {}
        child_ns = self.child_ns
        prices = self.prices
        encode = self.encode
        log = math.log
        lb = _LOG_BASE
        minute = MINUTE
        lost = 0
        error = None
        lo = hi = 0  # the minute [lo, hi) of the last span (a span's minute is one compare)
        for rec in records:
            if type(rec) is tuple:
                if rec[0] != "S":
                    if rec[0] == "R":  # still running: an entry its finished one replaces
                        _, tid, tstart, sid, pid, name, stype, plugin, start = rec
                        slot = slots.get(tid)
                        if slot is None:
                            slot = slots[tid] = (new_totals(), [], tstart)
                        gkey = (name if stype not in ("llm_call", "tool_call", "plugin_call")
                                else plugin if stype == "plugin_call" else None)
                        slot[1].append((sid, pid, name, stype, plugin, gkey, start, None,
                                        "running", 0, 0, 0, None, None, 0.0, None))
                    else:
                        others.append(rec)
                    continue
                (_, tid, tstart, sid, pid, name, stype, plugin, start, end, status, err, inp,
                 out, meta, events, trunc) = rec
            else:  # a finished span, as the hooks queued it (read as span_record reads it)
                try:
                    trace = rec.trace
                    tid = trace.trace_id
                    tstart = trace.start_ns
                    sid = rec.span_id
                    pid = rec.parent_id
                    name = rec.name
                    stype = rec.span_type
                    plugin = rec.plugin
                    if plugin is not None:
                        plugin = plugin.name
                    start = rec.start_ns
                    end = rec.end_ns
                    status = rec.status
                    err = rec.error
                    inp = rec.input
                    out = rec.output
                    meta = rec.meta
                    events = rec.events
                    trunc = rec.truncated
                except Exception as exc:  # not a span (a host's own object): count it, go on
                    lost += 1
                    error = exc
                    continue
            data = {}
            if inp:
                data["input"] = inp
            if out:
                data["output"] = out
            if meta:
                data["meta"] = meta
            if events:
                data["events"] = events
            if err:
                data["error"] = err
            if trunc:
                data["truncated"] = True
            slot = slots.get(tid)
            if slot is None:
                slot = slots[tid] = (new_totals(), [], tstart)
            part = slot[0]
            try:
                text = encode(data) if data else None
            except Exception as exc:  # a value JSON cannot hold: count it (on its trace too)
                lost += 1
                part[DROPPED] += 1
                error = exc
                continue
            tin = tout = tc = 0
            cost = 0.0
            if stype == "llm_call":
                gkey = None
                if meta:
                    gkey = meta.get("model")
                    tin = _tok(meta.get("input_tokens"))
                    tout = _tok(meta.get("output_tokens"))
                    tc = _tok(meta.get("cached_tokens"))
                part[LLM] += 1
                if gkey is not None:
                    gkey = str(gkey)
                    part[MODELS][gkey] = None
                if prices:
                    cost = prices.cost(gkey, tin, tout, tc)
            elif stype == "tool_call":
                gkey = meta.get("tool_name") if meta else None
                gkey = name if gkey is None else str(gkey)
                part[TOOL_CALLS] += 1
                part[TOOLS][gkey] = None
            elif stype == "plugin_call":
                gkey = plugin
            else:
                gkey = name
            ch = child_ns.pop(sid, 0)
            if end is None:
                dur = self_ns = bucket = None
            else:
                dur = end - start
                self_ns = dur - ch if dur > ch else 0
                if pid is not None:
                    child_ns[pid] = child_ns.get(pid, 0) + dur
                bucket = int(log(dur) / lb) + 1 if dur >= 1 else 0
            part[SPANS] += 1
            if tin or tout or tc:
                part[INPUT] += tin
                part[OUTPUT] += tout
                part[CACHED] += tc
                part[COST] += cost
            if status == "error":
                part[ERRORS] += 1
            part[TYPES][stype] = None
            if plugin is not None:
                part[PLUGINS][plugin] = None
            slot[1].append((sid, pid, name, stype, plugin, gkey, start, end, status, tin, tout,
                            tc, self_ns, bucket, cost, text))
            if dur is not None:
                if not lo <= start < hi:
                    lo = start - start % minute
                    hi = lo + minute
                key = (lo, stype or "", gkey or "", name or "", plugin or "", status)
                agg = minutes.get(key)
                if agg is None:
                    agg = minutes[key] = new_agg(tstart)
                agg[0] += 1
                agg[1] += dur
                agg[2] += self_ns
                if dur > agg[3]:
                    agg[3] = dur
                if tin or tout or tc:
                    agg[4] += tin
                    agg[5] += tout
                    agg[6] += tc
                    agg[7] += cost
                if tstart < agg[8]:
                    agg[8] = tstart
                hist = agg[9]
                hist[bucket] = hist.get(bucket, 0) + 1
        if len(child_ns) > _MAX_PARENTS:  # parents that never end: forget the oldest
            for old in list(child_ns)[:_MAX_PARENTS // 10]:
                del child_ns[old]
        chunks = []
        parts = {}
        for tid, (part, entries, tstart) in slots.items():
            parts[tid] = part
            n = len(entries)
            if not n:  # every span of it in this batch was dropped (counted in its part)
                continue
            try:
                text = encode_chunk(entries)
            except Exception:  # a name JSON cannot hold: leave out that span only
                text, bad, error = _encode_each(entries)
                lost += bad  # (its trace's totals and the statistics still count it)
                part[DROPPED] += bad
                n -= bad
                if not text:
                    continue
            chunks.append((tstart, tid, text, n))
        return others, chunks, parts, minutes, lost, error


def _encode_each(entries: list[tuple]) -> tuple[str | None, int, Any]:
    """A chunk's JSON entry by entry: ``(text or None, entries left out, last error)``."""
    texts = []
    error = None
    for entry in entries:
        try:
            texts.append(encode_chunk([entry])[1:-1])
        except Exception as exc:
            error = exc
    bad = len(entries) - len(texts)
    return (f"[{','.join(texts)}]" if texts else None), bad, error
