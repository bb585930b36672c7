"""Read queries over the store: trace lists, one trace as a tree, statistics, sessions, users.

Every function takes an aiosqlite read connection (``row_factory = sqlite3.Row``)
and returns plain JSON-ready dicts (docs/QUERY_API.md). Parameters may come
straight from a query string: they are validated here and a bad one raises
:class:`QueryError`. Every value reaches SQLite as a bound parameter; the only
text ever put into SQL is chosen from the constant tables in this module.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from operator import itemgetter
from typing import Any

from botrace.schema import GRAINS, bucket_value_ns
from botrace.store import chunks as E
from botrace.store.chunks import decode, latest_spans
from botrace.tree import build_tree

__all__ = ["QueryError", "get_trace", "list_traces", "resolve_plugin", "sessions", "spend",
           "stats", "trace_points", "users"]

MAX_LIMIT = 500
#: with combined or scanning filters, ``total`` counts at most this many matches: past
#: 1,000 (20 pages) the figure tells an operator only "narrow it down", and counting
#: further walks every match (5,000 took a combined filter to ~20 ms on 1M spans)
TOTAL_CAP = 1_000
#: below this many matches a duration filter is answered from the duration index
RARE = 2_000
STATUSES = frozenset({"ok", "error", "cancelled", "running", "interrupted"})
SPAN_TYPES = frozenset({"message", "pipeline_stage", "plugin_call", "llm_call", "tool_call",
                        "subagent_call", "io_call", "custom"})
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_MAX_TEXT = 512


class QueryError(ValueError):
    """A query parameter is malformed; the web layer answers 400 with ``message``."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        self.message = message
        super().__init__(f"{param}: {message}")

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "param": self.param}


# ---------------------------------------------------------------------------- parameters

def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


#: SQLite's INTEGER: a bound past it is an error naming the parameter, not an OverflowError
_INT64_MAX = 2**63 - 1


def _int_param(name: str, value: Any, minimum: int = 0, maximum: int | None = None) -> int | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise QueryError(name, "must be an integer")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise QueryError(name, f"must be an integer, got {value[:40]!r}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise QueryError(name, "must be an integer")
    maximum = _INT64_MAX if maximum is None else min(maximum, _INT64_MAX)
    if value < minimum or value > maximum:
        raise QueryError(name, f"must be between {minimum} and {maximum}, got {value}")
    return value


def _float_param(name: str, value: Any, maximum: float = math.inf) -> float | None:
    if _blank(value):
        return None
    try:
        out = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise QueryError(name, f"must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(out) or out < 0:
        raise QueryError(name, "must be a finite number >= 0")
    if out > maximum:
        raise QueryError(name, f"must be at most {maximum:.0f}, got {out:g}")
    return out


def _text_param(name: str, value: Any) -> str | None:
    if _blank(value):
        return None
    if not isinstance(value, str | int):
        raise QueryError(name, "must be a string")
    value = str(value).strip()
    if len(value) > _MAX_TEXT:
        raise QueryError(name, f"longer than {_MAX_TEXT} characters")
    return value


def _choice_param(name: str, value: Any, choices: frozenset[str]) -> str | None:
    text = _text_param(name, value)
    if text is not None and text not in choices:
        raise QueryError(name, f"must be one of {', '.join(sorted(choices))}; got {text[:40]!r}")
    return text


def _limit(value: Any) -> int:
    out = _int_param("limit", value, 1, MAX_LIMIT)
    return 50 if out is None else out


def _check_keys(filters: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in filters:
        if key not in allowed:
            raise QueryError(str(key), f"unknown filter; allowed: {', '.join(sorted(allowed))}")


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: Any, types: tuple[type, ...]) -> list[Any] | None:
    if _blank(cursor):
        return None
    try:
        text = str(cursor).strip()
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise QueryError("cursor", "malformed cursor; pass next_cursor back unchanged") from None
    if (not isinstance(values, list) or len(values) != len(types)
            or not all(isinstance(v, t) and not isinstance(v, bool)
                       for v, t in zip(values, types, strict=True))
            or any(isinstance(v, int) and not -_INT64_MAX - 1 <= v <= _INT64_MAX for v in values)):
        raise QueryError("cursor", "malformed cursor; pass next_cursor back unchanged")
    return values


# ---------------------------------------------------------------------------- traces

TRACE_FILTERS = frozenset({"since_ns", "until_ns", "user_id", "session_id", "umo", "plugin",
                           "status", "span_type", "model", "tool", "min_duration_ms", "q"})
_TAG_FILTERS = ("plugin", "span_type", "model", "tool")
_TRACE_SELECT = (
    "SELECT t.trace_id, t.name, t.start_ns, t.end_ns, t.duration_ns, t.status, t.umo, t.sender, "
    "t.user_id, t.session_id, t.outline, t.agent_type, t.platform, t.attributes, "
    "t.input_tokens, t.output_tokens, t.cached_tokens, t.span_count, t.llm_calls, t.tool_calls, "
    "t.error_count, t.plugins, t.models, t.dropped_spans, t.truncated, t.cost_usd FROM traces t"
)


def _window(since_ns: Any, until_ns: Any) -> tuple[int | None, int | None]:
    """A validated ``[since_ns, until_ns)``: each bound optional, until not before since."""
    since = _int_param("since_ns", since_ns)
    until = _int_param("until_ns", until_ns)
    if since is not None and until is not None and until < since:
        raise QueryError("until_ns", "must not be before since_ns")
    return since, until


def parse_trace_filters(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validated, typed trace filters (``None`` values dropped)."""
    filters = filters or {}
    _check_keys(filters, TRACE_FILTERS)
    since, until = _window(filters.get("since_ns"), filters.get("until_ns"))
    out: dict[str, Any] = {
        "since_ns": since,
        "until_ns": until,
        "status": _choice_param("status", filters.get("status"), STATUSES),
        "span_type": _choice_param("span_type", filters.get("span_type"), SPAN_TYPES),
        "min_duration_ms": _float_param("min_duration_ms", filters.get("min_duration_ms"),
                                        maximum=_INT64_MAX / 1_000_000),
    }
    for key in ("user_id", "session_id", "umo", "plugin", "model", "tool", "q"):
        out[key] = _text_param(key, filters.get(key))
    return {k: v for k, v in out.items() if v is not None}


# a tag's number (trace_tags is keyed by it), looked up once per query
_TAG_NUMBER = "(SELECT tag FROM tag_values WHERE kind = ? AND value = ?)"


def _trace_where(f: Mapping[str, Any], driver: str | None = None,
                 ts: str = "t.start_ns") -> tuple[list[str], list[Any]]:
    """Conditions for the trace filters; ``driver`` is a tag kind answered by the
    driving ``trace_tags g`` rows instead of an EXISTS; ``ts`` the start column used."""
    # (ts is one of two constant column names)
    where, params = _time_range(f.get("since_ns"), f.get("until_ns"), ts)
    for key in ("user_id", "session_id", "umo", "status"):
        if key in f:
            where.append(f"t.{key} = ?")  # key from the constant tuple above
            params.append(f[key])
    if "min_duration_ms" in f:
        where.append("t.duration_ns >= ?")
        params.append(int(f["min_duration_ms"] * 1_000_000))
    if "q" in f:
        where.append("t.outline LIKE ? ESCAPE '\\'")
        params.append("%" + _like_escape(f["q"]) + "%")
    for kind in _TAG_FILTERS:
        if kind in f:
            if kind == driver:
                where.append(f"g.tag = {_TAG_NUMBER}")
            else:
                where.append(f"EXISTS (SELECT 1 FROM trace_tags x WHERE x.tag = {_TAG_NUMBER} "
                             "AND x.start_ns = t.start_ns AND x.trace_id = t.trace_id)")
            params += [kind, f[kind]]
    return where, params


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _loads(text: Any, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def trace_summary(row: Any) -> dict[str, Any]:
    return {
        "trace_id": row["trace_id"], "name": row["name"], "start_ns": row["start_ns"],
        "end_ns": row["end_ns"], "duration_ns": row["duration_ns"], "status": row["status"],
        "umo": row["umo"], "sender": row["sender"], "user_id": row["user_id"],
        "session_id": row["session_id"], "outline": row["outline"],
        "agent_type": row["agent_type"], "platform": row["platform"],
        "attributes": _loads(row["attributes"], {}),
        "input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"],
        "cached_tokens": row["cached_tokens"], "span_count": row["span_count"],
        "llm_calls": row["llm_calls"], "tool_calls": row["tool_calls"],
        "error_count": row["error_count"], "plugins": _loads(row["plugins"], []),
        "models": _loads(row["models"], []), "dropped_spans": row["dropped_spans"],
        "truncated": bool(row["truncated"]), "cost_usd": row["cost_usd"],
    }


#: list orders besides the default (newest first): the sort key's SQL and its type in a
#: cursor; "-" in front sorts largest first. Ties keep newest first (start_ns, trace_id).
#: A running trace has no duration yet and sorts as the shortest.
SORT_KEYS: dict[str, tuple[str, type]] = {
    "time": ("t.start_ns", int),
    "duration": ("COALESCE(t.duration_ns, -1)", int),
    "tokens": ("(t.input_tokens + t.output_tokens)", int),
    "cost": ("t.cost_usd", float),
}
SORTS = frozenset({*SORT_KEYS, *(f"-{k}" for k in SORT_KEYS)})


def parse_sort(value: Any) -> str | None:
    """``None`` (newest first, the default) or a validated sort: ``duration``,
    ``-duration``, ``tokens``, ``-tokens``, ``cost``, ``-cost``, ``time``, ``-time``."""
    sort = _choice_param("sort", value, SORTS)
    return None if sort == "-time" else sort


def _sort_cursor(sort: str, cursor: Any) -> list[Any] | None:
    """A sorted list's cursor: [sort, key (as text: a float cost keeps its exact repr),
    start_ns, trace_id]; one from another sort (or the default order) is refused."""
    after = decode_cursor(cursor, (str, str, int, str))
    if after is None:
        return None
    if after[0] != sort:
        raise QueryError("cursor", f"this cursor belongs to another sort; got sort={sort!r}")
    kind = SORT_KEYS[sort.lstrip("-")][1]
    try:
        key = kind(after[1])
    except ValueError:
        raise QueryError("cursor", "malformed cursor; pass next_cursor back unchanged") from None
    if (isinstance(key, float) and not math.isfinite(key)) or \
            (isinstance(key, int) and not -_INT64_MAX - 1 <= key <= _INT64_MAX):
        raise QueryError("cursor", "malformed cursor; pass next_cursor back unchanged")
    after[1] = key
    return after


def _walk(f: dict[str, Any]) -> tuple[str | None, str, str, str]:
    """How a list walks the traces matching ``f``: ``(driver, source, start column, id
    column)``. Without a tag filter, newest first along the (start_ns, trace_id) index;
    with a plugin/model/tool/span-type filter, that tag's index entries newest first, each
    joined to its trace, so a page costs ~limit lookups whether the tag is common or rare
    (CROSS JOIN keeps SQLite from reordering the loop)."""
    driver = next((k for k in _TAG_FILTERS if k in f), None)
    if driver is None:
        return None, "traces t", "t.start_ns", "t.trace_id"
    return (driver, "trace_tags g CROSS JOIN traces t "
            "ON t.start_ns = g.start_ns AND t.trace_id = g.trace_id", "g.start_ns", "g.trace_id")


async def list_traces(conn: Any, filters: Mapping[str, Any] | None = None, limit: Any = 50,
                      cursor: Any = None, sort: Any = None) -> dict[str, Any]:
    f = parse_trace_filters(filters)
    sort = parse_sort(sort)
    if "plugin" in f:
        f["plugin"] = await resolve_plugin(conn, f["plugin"])
    limit = _limit(limit)
    after = decode_cursor(cursor, (int, str)) if sort is None else _sort_cursor(sort, cursor)
    driver, source, ts, tid = _walk(f)
    where, params = _trace_where(f, driver, ts)
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    only_tag = driver is not None and set(f) <= {driver, "since_ns", "until_ns"}
    count_source = "trace_tags g" if only_tag else source  # the tag index alone answers
    narrowing = set(f) - {"since_ns", "until_ns"}
    capped = False
    if only_tag or (len(narrowing) <= 1 and "q" not in narrowing):
        # one indexed condition: an exact count is an index range count
        async with conn.execute(f"SELECT count(*) FROM {count_source}{cond}", params) as cur:
            total = (await cur.fetchone())[0]
    else:
        # combined or scanning filters: count exactly up to TOTAL_CAP, then say "more"
        async with conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {count_source}{cond} LIMIT ?)",
                [*params, TOTAL_CAP + 1]) as cur:
            total = (await cur.fetchone())[0]
        if total > TOTAL_CAP:
            total, capped = TOTAL_CAP, True
    page_where, page_params = list(where), list(params)
    key_sql = SORT_KEYS[sort.lstrip("-")][0] if sort else None
    if after is not None and sort is None:
        page_where.append(f"({ts} < ? OR ({ts} = ? AND {tid} < ?))")
        page_params += [after[0], after[0], after[1]]
    elif after is not None:
        # past the last row: further along the key, or an equal key and older (ties
        # are newest first whichever way the key runs)
        beyond = "<" if sort.startswith("-") else ">"
        page_where.append(f"({key_sql} {beyond} ? OR ({key_sql} = ? AND "
                          f"({ts} < ? OR ({ts} = ? AND {tid} < ?))))")
        page_params += [after[1], after[1], after[2], after[2], after[3]]
    cond = (" WHERE " + " AND ".join(page_where)) if page_where else ""
    if driver is None and sort is None and "min_duration_ms" in f and total < RARE:
        # few traces that slow: walk the duration index and sort them, rather than the
        # time order skipping nearly every trace (the planner cannot tell the two apart)
        source = "traces t INDEXED BY traces_duration"
    select = _TRACE_SELECT.replace(" FROM traces t", f" FROM {source}")
    order = f"{ts} DESC, {tid} DESC"
    if sort is not None:
        # (key_sql from the constant SORT_KEYS) every matching trace is read and the
        # top of the order kept: the filters bound the cost, not an index
        order = f"{key_sql} {'DESC' if sort.startswith('-') else 'ASC'}, {order}"
    sql = f"{select}{cond} ORDER BY {order} LIMIT ?"
    async with conn.execute(sql, [*page_params, limit + 1]) as cur:
        rows = await cur.fetchall()
    more = len(rows) > limit
    traces = [trace_summary(r) for r in rows[:limit]]
    next_cursor = None
    if more and traces:
        last = traces[-1]
        if sort is None:
            next_cursor = encode_cursor(last["start_ns"], last["trace_id"])
        else:
            next_cursor = encode_cursor(sort, repr(_sort_value(sort, last)), last["start_ns"],
                                        last["trace_id"])
    return {"traces": traces, "next_cursor": next_cursor, "total": total,
            "total_capped": capped}


#: at most this many points in a latency scatter (the newest matching traces)
MAX_POINTS = 2_000


async def trace_points(conn: Any, filters: Mapping[str, Any] | None = None,
                       limit: Any = 500) -> dict[str, Any]:
    """The newest ``limit`` finished traces matching the list's filters, as points for a
    latency scatter: ``{points: [{trace_id, start_ns, duration_ns, status}], more}``,
    newest first. Walks what a list page walks (the same indexes), without summaries."""
    f = parse_trace_filters(filters)
    if "plugin" in f:
        f["plugin"] = await resolve_plugin(conn, f["plugin"])
    limit = _int_param("limit", limit, 1, MAX_POINTS) or 500
    driver, source, ts, tid = _walk(f)
    where, params = _trace_where(f, driver, ts)
    where.append("t.duration_ns IS NOT NULL")
    sql = (f"SELECT t.trace_id, t.start_ns, t.duration_ns, t.status FROM {source} "
           f"WHERE {' AND '.join(where)} ORDER BY {ts} DESC, {tid} DESC LIMIT ?")
    async with conn.execute(sql, [*params, limit + 1]) as cur:
        rows = await cur.fetchall()
    points = [{"trace_id": r["trace_id"], "start_ns": r["start_ns"],
               "duration_ns": r["duration_ns"], "status": r["status"]} for r in rows[:limit]]
    return {"points": points, "more": len(rows) > limit}


def _sort_value(sort: str, t: Mapping[str, Any]) -> int | float:
    """The sort key of a trace summary, as SORT_KEYS computes it in SQL."""
    key = sort.lstrip("-")
    if key == "time":
        return t["start_ns"]
    if key == "duration":
        return -1 if t["duration_ns"] is None else t["duration_ns"]
    if key == "tokens":
        return t["input_tokens"] + t["output_tokens"]
    return float(t["cost_usd"])


_START = itemgetter(E.START)
_CHUNKS_OF_TRACE = ("SELECT spans FROM span_chunks WHERE trace_start_ns = ? AND trace_id = ? "
                    "ORDER BY rowid")


def span_dict(tid: str, e: list, plugins: Mapping[str, dict]) -> dict[str, Any]:
    """A stored span entry (``botrace.schema.SPAN_FIELDS``) as the API serves it."""
    data = e[E.DATA] or {}
    start, end = e[E.START], e[E.END]
    name = e[E.PLUGIN]
    return {
        "trace_id": tid, "span_id": e[E.SID], "parent_id": e[E.PID],
        "name": e[E.NAME], "span_type": e[E.TYPE], "start_ns": start,
        "end_ns": end, "duration_ns": None if end is None else end - start,
        "self_ns": e[E.SELF], "status": e[E.STATUS], "error": data.get("error"),
        "input": data.get("input") or {}, "output": data.get("output") or {},
        "meta": data.get("meta") or {}, "events": data.get("events") or [],
        "plugin": None if name is None else plugins.get(name) or {
            "name": name, "display_name": name, "plugin_type": "third_party", "version": ""},
        "truncated": bool(data.get("truncated", False)), "cost_usd": e[E.COST],
    }


async def get_trace(conn: Any, trace_id: Any, *, flat: bool = False,
                    tree_only: bool = False) -> dict[str, Any] | None:
    tid = _text_param("trace_id", trace_id)
    tid = tid.lower() if tid else tid
    if tid is None or not _HEX32.match(tid):
        raise QueryError("trace_id", "must be 32 hexadecimal characters")
    async with conn.execute(f"{_TRACE_SELECT} WHERE t.trace_id = ?", (tid,)) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    async with conn.execute(_CHUNKS_OF_TRACE, (row["start_ns"], tid)) as cur:
        entries = latest_spans(r[0] for r in await cur.fetchall())
    entries.sort(key=_START)  # (stable: spans that start together keep their order)
    names = sorted({e[E.PLUGIN] for e in entries if e[E.PLUGIN] is not None})
    plugins: dict[str, dict] = {}
    if names:
        marks = ",".join("?" * len(names))  # placeholders only; the names are bound
        async with conn.execute(
                "SELECT name, display_name, plugin_type, version FROM plugins "
                f"WHERE name IN ({marks})", names) as cur:
            for p in await cur.fetchall():
                plugins[p["name"]] = {"name": p["name"], "display_name": p["display_name"],
                                      "plugin_type": p["plugin_type"], "version": p["version"]}
    spans = [span_dict(tid, e, plugins) for e in entries]
    out: dict[str, Any] = {"trace": trace_summary(row)}
    if flat:
        out["spans"] = spans
        return out
    tree = build_tree(spans)
    if not tree_only:
        out["spans"] = spans
    out["tree"] = tree
    return out


def _time_range(since_ns: int | None, until_ns: int | None,
                col: str = "start_ns") -> tuple[list[str], list[Any]]:
    """WHERE clauses and bound values for ``since_ns <= col < until_ns`` (either open;
    ``col`` is always a constant column name)."""
    where: list[str] = []
    params: list[Any] = []
    if since_ns is not None:
        where.append(f"{col} >= ?")
        params.append(since_ns)
    if until_ns is not None:
        where.append(f"{col} < ?")
        params.append(until_ns)
    return where, params


async def iter_traces(conn: Any, since_ns: int | None, until_ns: int | None,
                      batch: int = 200) -> AsyncIterator[dict[str, Any]]:
    """Stored traces (summary + flat spans) in a time range, oldest first."""
    after: tuple[int, str] | None = None
    while True:
        where, params = _time_range(since_ns, until_ns)
        if after is not None:
            where.append("(start_ns > ? OR (start_ns = ? AND trace_id > ?))")
            params += [after[0], after[0], after[1]]
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        async with conn.execute(
            f"SELECT trace_id, start_ns FROM traces{cond} ORDER BY start_ns, trace_id LIMIT ?",
            [*params, batch],
        ) as cur:
            ids = [(r[0], r[1]) for r in await cur.fetchall()]
        for tid, _ in ids:
            doc = await get_trace(conn, tid, flat=True)
            if doc is not None:
                yield doc
        if len(ids) < batch:
            return
        after = (ids[-1][1], ids[-1][0])


async def count_traces(conn: Any, since_ns: int | None, until_ns: int | None) -> int:
    where, params = _time_range(since_ns, until_ns)
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    async with conn.execute(f"SELECT count(*) FROM traces{cond}", params) as cur:
        return (await cur.fetchone())[0]


# ---------------------------------------------------------------------------- plugins

async def _plugin_table(conn: Any) -> dict[str, dict[str, Any]]:
    """The plugins the store has seen: name -> {name, display_name, plugin_type, version}."""
    async with conn.execute("SELECT name, display_name, plugin_type, version FROM plugins") as cur:
        return {r[0]: {"name": r[0], "display_name": r[1] or r[0], "plugin_type": r[2],
                       "version": r[3] or ""} for r in await cur.fetchall()}


async def resolve_plugin(conn: Any, value: str) -> str:
    """A plugin filter's value as the internal name the spans carry: the name itself, else
    a name or display name equal to it ignoring case ("Search agent" -> "search"); a value
    that names no known plugin is kept as given (it then matches nothing)."""
    plugins = await _plugin_table(conn)
    if value in plugins:
        return value
    low = value.casefold()
    for field in ("name", "display_name"):
        for name, p in sorted(plugins.items()):
            if str(p[field]).casefold() == low:
                return name
    return value


# ---------------------------------------------------------------------------- statistics

# group_by -> (span_type it covers or None for all, the key column of stats_rollup / spans)
STAT_GROUPS: dict[str, tuple[str | None, str]] = {
    "stage": ("pipeline_stage", "gkey"),
    "plugin": (None, "plugin"),  # every span attributed to a plugin (see _plugin_stats)
    "tool": ("tool_call", "gkey"),
    "model": ("llm_call", "gkey"),
    "span_type": (None, "span_type"),
    "name": (None, "name"),
}
STAT_FILTERS = frozenset({"plugin", "user_id", "session_id", "status"})
# the rollup's grains, coarsest first (ns): day, hour, minute
_GRAINS = GRAINS
_MINUTE = GRAINS[-1]
_ROLLUP_SELECT = (
    "SELECT {col} AS k, status, n, dur_ns, self_ns, max_ns, input_tokens, output_tokens, "
    "cached_tokens, cost_usd, hist FROM stats_rollup WHERE grain = ?"
)
# the span entry field a group_by key column is (botrace.schema.SPAN_FIELDS)
_ENTRY_COL = {"gkey": E.GKEY, "span_type": E.TYPE, "name": E.NAME, "plugin": E.PLUGIN}


def _cover(lo: int | None, hi: int | None, grains: tuple[int, ...]
           ) -> list[tuple[int | None, int | None, int | None]]:
    """Split ``[lo, hi)`` (None: open) into ``(grain, a, b)`` pieces made of whole rollup
    buckets, coarsest first, plus ``(None, a, b)`` part-minute pieces at the edges that
    only the spans themselves can answer."""
    if lo is not None and hi is not None and lo >= hi:
        return []
    if not grains:
        return [(None, lo, hi)]
    g = grains[0]
    a = None if lo is None else -(-lo // g) * g
    b = None if hi is None else hi // g * g
    if a is not None and b is not None and a >= b:
        return _cover(lo, hi, grains[1:])
    out: list[tuple[int | None, int | None, int | None]] = [(g, a, b)]
    if a is not None and lo < a:
        out += _cover(lo, a, grains[1:])
    if b is not None and b < hi:
        out += _cover(b, hi, grains[1:])
    return out


async def stats(conn: Any, group_by: Any = "stage", since_ns: Any = None, until_ns: Any = None,
                filters: Mapping[str, Any] | None = None, *,
                percentiles: bool = True) -> dict[str, Any]:
    """Statistics per group over span start times in ``[since_ns, until_ns)``.

    Whole minutes / hours / days of the window come from ``stats_rollup`` (a few rows per
    bucket), the part-minutes at its edges from the spans of that minute; so the answer
    is exact whatever the window, and its cost grows with the number of buckets, not of
    spans. A ``user_id`` / ``session_id`` filter reads the spans of those traces.
    ``percentiles=False`` leaves out a plugin's top-level percentiles (group ``plugin``:
    then no span is read besides the window's part-minute edges)."""
    group = _text_param("group_by", group_by) or "stage"
    if group not in STAT_GROUPS:
        raise QueryError("group_by", f"must be one of {', '.join(STAT_GROUPS)}; got {group[:40]!r}")
    since, until = _window(since_ns, until_ns)
    filters = filters or {}
    _check_keys(filters, STAT_FILTERS)
    span_type, column = STAT_GROUPS[group]
    where: list[str] = []
    params: list[Any] = []
    if span_type is not None:
        where.append("span_type = ?")
        params.append(span_type)
    plugin = _text_param("plugin", filters.get("plugin"))
    if plugin is not None:
        plugin = await resolve_plugin(conn, plugin)
        where.append("plugin = ?")
        params.append(plugin)
    status = _choice_param("status", filters.get("status"), STATUSES)
    if status is not None:
        where.append("status = ?")
        params.append(status)
    match = (_ENTRY_COL[column], span_type, plugin, status)
    by_trace = [(key, v) for key in ("user_id", "session_id")
                if (v := _text_param(key, filters.get(key))) is not None]
    if group == "plugin":
        return await _plugin_stats(conn, since, until, plugin, status, by_trace, percentiles)
    groups: dict[str, dict[str, Any]] = {}
    if by_trace:
        # the spans of the matching traces (traces index -> their span_chunks rows)
        cond = " AND ".join(f"t.{key} = ?" for key, _ in by_trace)  # keys: a constant tuple
        cond_params: list[Any] = [v for _, v in by_trace]
        if until is not None:  # (no span starts before its trace)
            cond += " AND t.start_ns < ?"
            cond_params.append(until)
        async with conn.execute(
                "SELECT c.spans FROM traces t CROSS JOIN span_chunks c ON c.trace_start_ns = "
                f"t.start_ns AND c.trace_id = t.trace_id WHERE {cond}", cond_params) as cur:
            texts = [r[0] for r in await cur.fetchall()]
        await asyncio.to_thread(_add_entries, groups, texts, match, since, until)
    else:
        extra = "".join(f" AND {c}" for c in where)
        for grain, a, b in _cover(since, until, _GRAINS):
            if grain is not None:
                bucket_range, range_params = _time_range(a, b, "t0")
                sql = (_ROLLUP_SELECT.format(col=column) + extra
                       + "".join(f" AND {c}" for c in bucket_range))
                await _add_rollup(conn, groups, sql, [grain, *params, *range_params])
            else:
                await _add_edge(conn, groups, match, a, b)
    out = []
    for key, g in groups.items():
        if key == "":  # a span without this key (e.g. an llm_call without a model)
            continue
        hist = sorted(g.pop("_hist").items())
        n = g["count"]
        mx = g.pop("_max")
        dur = g.pop("_dur")
        self_ns = g.pop("_self")
        if not n:
            continue
        g["error_rate"] = round(g["errors"] / n, 6)
        for name, p_ in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            g[name] = round(min(_percentile(hist, n, p_), mx) / 1e6, 4)
        g["avg_ms"] = round(dur / n / 1e6, 4)
        g["max_ms"] = round(mx / 1e6, 4)
        g["total_ms"] = round(dur / 1e6, 4)
        g["self_ms"] = round(self_ns / 1e6, 4)
        g["cost_usd"] = round(g["cost_usd"], 8)
        out.append(g)
    out.sort(key=lambda g: g["total_ms"], reverse=True)
    return {"group_by": group, "since_ns": since, "until_ns": until, "groups": out}


def _group(groups: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    g = groups.get(key)
    if g is None:
        g = groups[key] = {"key": key, "count": 0, "errors": 0, "_dur": 0, "_self": 0,
                           "_max": 0, "input_tokens": 0, "output_tokens": 0,
                           "cached_tokens": 0, "cost_usd": 0.0, "_hist": {}}
    return g


def _add(groups: dict[str, dict[str, Any]], key: str, status: str, n: int, dur: int,
         self_ns: int, mx: int, tin: int, tout: int, tc: int, cost: float,
         buckets: Any) -> None:
    """Add a rollup or raw row to its group; ``buckets``: its (bucket, count) pairs."""
    g = _group(groups, key)
    g["count"] += n
    if status == "error":
        g["errors"] += n
    g["_dur"] += dur or 0
    g["_self"] += self_ns or 0
    if (mx or 0) > g["_max"]:
        g["_max"] = mx
    g["input_tokens"] += tin or 0
    g["output_tokens"] += tout or 0
    g["cached_tokens"] += tc or 0
    g["cost_usd"] += cost or 0.0
    hist = g["_hist"]
    for bucket, count in buckets:
        hist[bucket] = hist.get(bucket, 0) + count


async def _add_rollup(conn: Any, groups: dict[str, dict[str, Any]], sql: str,
                      params: list[Any]) -> None:
    async with conn.execute(sql, params) as cur:
        rows = await cur.fetchall()
    for r in rows:
        *sums, hist_text = tuple(r)
        flat = json.loads(hist_text)  # [bucket, count, bucket, count, ...]
        _add(groups, *sums, zip(flat[::2], flat[1::2]))


def _add_entries(groups: dict[str, dict[str, Any]], texts: Iterable[str], match: tuple,
                 since: int | None, until: int | None) -> None:
    """The finished spans of some span chunks that start in ``[since, until)`` and match
    ``(key field, span type, plugin, status)`` (None: any), summed per key, status and
    duration bucket, then added to their groups. (A finished span is stored once.)"""
    col, span_type, plugin, status = match
    sums: dict[tuple, list] = {}
    for text in texts:
        for e in decode(text):
            end = e[E.END]
            if end is None:
                continue
            start = e[E.START]
            if (since is not None and start < since) or (until is not None and start >= until):
                continue
            if ((span_type is not None and e[E.TYPE] != span_type)
                    or (plugin is not None and e[E.PLUGIN] != plugin)
                    or (status is not None and e[E.STATUS] != status)):
                continue
            key = (e[col] or "", e[E.STATUS], e[E.BUCKET] or 0)
            dur = end - start
            v = sums.get(key)
            if v is None:
                sums[key] = [1, dur, e[E.SELF] or 0, dur, e[E.TIN], e[E.TOUT], e[E.TCACHED],
                             e[E.COST]]
                continue
            v[0] += 1
            v[1] += dur
            v[2] += e[E.SELF] or 0
            if dur > v[3]:
                v[3] = dur
            v[4] += e[E.TIN]
            v[5] += e[E.TOUT]
            v[6] += e[E.TCACHED]
            v[7] += e[E.COST]
    for (k, st, bucket), (n, dur, self_ns, mx, tin, tout, tc, cost) in sums.items():
        _add(groups, k, st, n, dur, self_ns, mx, tin, tout, tc, cost, ((bucket, n),))


async def _add_edge(conn: Any, groups: dict[str, dict[str, Any]], match: tuple,
                    a: int, b: int) -> None:
    """Spans starting in ``[a, b)``, part of one minute: the minute's rollup rows say the
    earliest trace start among them, so their chunks are one span_chunks_trace range."""
    minute = a - a % _MINUTE
    async with conn.execute("SELECT min(min_trace_start_ns) FROM stats_rollup "
                            "WHERE grain = ? AND t0 = ?", (_MINUTE, minute)) as cur:
        lowest = (await cur.fetchone())[0]
    if lowest is None:  # no finished span started in that minute
        return
    async with conn.execute("SELECT spans FROM span_chunks WHERE trace_start_ns >= ? "
                            "AND trace_start_ns < ?", (lowest, b)) as cur:
        texts = [r[0] for r in await cur.fetchall()]
    # (decoded off the event loop: at thousands of traces a second a minute holds millions)
    await asyncio.to_thread(_add_entries, groups, texts, match, a, b)


# ---------------------------------------------------------------------------- per plugin

#: a plugin's percentiles are of its top-level spans, read from the spans of at most this
#: many traces of the window, newest first (the rollup does not know a span's parent)
PLUGIN_SAMPLE_TRACES = 1_000
_PLUGIN_ROLLUP = ("SELECT plugin, span_type, status, n, dur_ns, self_ns, max_ns, input_tokens, "
                  "output_tokens, cached_tokens, cost_usd FROM stats_rollup "
                  "WHERE grain = ? AND plugin != ''")


async def _plugin_stats(conn: Any, since: int | None, until: int | None, plugin: str | None,
                        status: str | None, by_trace: list[tuple[str, str]],
                        percentiles: bool = True) -> dict[str, Any]:
    """Per plugin, every span attributed to it (plugin_call, its tools, LLM calls, IO,
    subagent and custom spans): count, errors, total and self time, tokens and cost, from
    the rollup (exact), with a breakdown by span type; p50/p95/p99 of its *top-level* spans
    (whose parent is not a span of the same plugin: what a caller waited for), from the
    spans of the newest :data:`PLUGIN_SAMPLE_TRACES` traces of the window."""
    per_type: dict[tuple[str, str], dict[str, Any]] = {}
    top: dict[str, list] = {}  # plugin -> [count, errors, dur_ns, max_ns, {bucket: count}]
    match = (plugin, status)
    if by_trace:
        cond = " AND ".join(f"t.{key} = ?" for key, _ in by_trace)  # keys: a constant tuple
        cond_params: list[Any] = [v for _, v in by_trace]
        if until is not None:
            cond += " AND t.start_ns < ?"
            cond_params.append(until)
        async with conn.execute(
                "SELECT c.spans FROM traces t CROSS JOIN span_chunks c ON c.trace_start_ns = "
                f"t.start_ns AND c.trace_id = t.trace_id WHERE {cond} "
                "ORDER BY c.trace_start_ns, c.trace_id, c.rowid", cond_params) as cur:
            texts = [r[0] for r in await cur.fetchall()]
        sample = {"traces": None, "capped": False}
        await asyncio.to_thread(_plugin_entries, per_type, top, texts, match, since, until, True)
    else:
        extra, params = "", []
        if plugin is not None:
            extra += " AND plugin = ?"
            params.append(plugin)
        if status is not None:
            extra += " AND status = ?"
            params.append(status)
        for grain, a, b in _cover(since, until, _GRAINS):
            if grain is not None:
                bucket_range, range_params = _time_range(a, b, "t0")
                sql = _PLUGIN_ROLLUP + extra + "".join(f" AND {c}" for c in bucket_range)
                async with conn.execute(sql, [grain, *params, *range_params]) as cur:
                    for r in await cur.fetchall():
                        _add(per_type, (r[0], r[1]), *r[2:], ())
            else:
                texts = await _edge_texts(conn, a, b)
                await asyncio.to_thread(_plugin_entries, per_type, {}, texts, match, a, b, False)
        if percentiles:
            texts, sample = await _sample_texts(conn, since, until)
            await asyncio.to_thread(_plugin_entries, {}, top, texts, match, since, until, True)
        else:
            sample = {"traces": 0, "capped": True}
    described = await _plugin_table(conn)
    plugins: dict[str, dict[str, Any]] = {}
    for (name, stype), g in per_type.items():
        if not g["count"]:
            continue
        info = described.get(name) or {"name": name, "display_name": name,
                                        "plugin_type": "third_party", "version": ""}
        out = plugins.get(name)
        if out is None:
            out = plugins[name] = {
                "key": name, "display_name": info["display_name"],
                "plugin_type": info["plugin_type"], "version": info["version"], "count": 0,
                "errors": 0, "_dur": 0, "_self": 0, "_max": 0, "input_tokens": 0,
                "output_tokens": 0, "cached_tokens": 0, "cost_usd": 0.0, "by_type": []}
        for k in ("count", "errors", "_dur", "_self", "input_tokens", "output_tokens",
                  "cached_tokens", "cost_usd"):
            out[k] += g[k]
        out["_max"] = max(out["_max"], g["_max"])
        out["by_type"].append({
            "span_type": stype, "count": g["count"], "errors": g["errors"],
            "total_ms": round(g["_dur"] / 1e6, 4), "self_ms": round(g["_self"] / 1e6, 4),
            "max_ms": round(g["_max"] / 1e6, 4), "input_tokens": g["input_tokens"],
            "output_tokens": g["output_tokens"], "cached_tokens": g["cached_tokens"],
            "cost_usd": round(g["cost_usd"], 8)})
    groups = []
    for name, out in plugins.items():
        n = out["count"]
        dur, self_ns, mx = out.pop("_dur"), out.pop("_self"), out.pop("_max")
        out["error_rate"] = round(out["errors"] / n, 6)
        out["avg_ms"] = round(dur / n / 1e6, 4)
        out["max_ms"] = round(mx / 1e6, 4)
        out["total_ms"] = round(dur / 1e6, 4)
        out["self_ms"] = round(self_ns / 1e6, 4)
        out["cost_usd"] = round(out["cost_usd"], 8)
        out["by_type"].sort(key=lambda t: (-t["total_ms"], t["span_type"]))
        tn, terr, tdur, tmax, thist = top.get(name) or (0, 0, 0, 0, {})
        out["top_count"] = tn
        out["top_errors"] = terr
        hist = sorted(thist.items())
        for key, p_ in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            out[key] = round(min(_percentile(hist, tn, p_), tmax) / 1e6, 4) if tn else None
        out["top_avg_ms"] = round(tdur / tn / 1e6, 4) if tn else None
        out["top_max_ms"] = round(tmax / 1e6, 4) if tn else None
        groups.append(out)
    groups.sort(key=lambda g: (-g["self_ms"], g["key"]))
    return {"group_by": "plugin", "since_ns": since, "until_ns": until, "groups": groups,
            "percentiles_from": sample}


async def _edge_texts(conn: Any, a: int, b: int) -> list[str]:
    """The span chunks that may hold spans starting in ``[a, b)``, part of one minute."""
    minute = a - a % _MINUTE
    async with conn.execute("SELECT min(min_trace_start_ns) FROM stats_rollup "
                            "WHERE grain = ? AND t0 = ?", (_MINUTE, minute)) as cur:
        lowest = (await cur.fetchone())[0]
    if lowest is None:
        return []
    async with conn.execute("SELECT spans FROM span_chunks WHERE trace_start_ns >= ? "
                            "AND trace_start_ns < ?", (lowest, b)) as cur:
        return [r[0] for r in await cur.fetchall()]


async def _sample_texts(conn: Any, since: int | None, until: int | None
                        ) -> tuple[list[str], dict[str, Any]]:
    """The span chunks of the newest :data:`PLUGIN_SAMPLE_TRACES` traces started in the
    window (one index range), trace by trace in write order; and ``{traces, capped}``."""
    where, params = _time_range(since, until)
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    async with conn.execute(f"SELECT start_ns FROM traces{cond} ORDER BY start_ns DESC "
                            "LIMIT 1 OFFSET ?", [*params, PLUGIN_SAMPLE_TRACES]) as cur:
        row = await cur.fetchone()
    capped = row is not None
    lo = since if row is None else row[0] + 1  # (past the first trace left out)
    where, params = _time_range(lo, until)
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    async with conn.execute(f"SELECT count(*) FROM traces{cond}", params) as cur:
        traces = (await cur.fetchone())[0]
    where, params = _time_range(lo, until, "trace_start_ns")
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    async with conn.execute(f"SELECT spans FROM span_chunks{cond} "
                            "ORDER BY trace_start_ns, trace_id, rowid", params) as cur:
        texts = [r[0] for r in await cur.fetchall()]
    return texts, {"traces": traces, "capped": capped}


def _plugin_entries(per_type: dict, top: dict, texts: Iterable[str], match: tuple,
                    since: int | None, until: int | None, latest: bool) -> None:
    """Add the finished spans of ``texts`` that start in ``[since, until)`` and match
    ``(plugin, status)`` to ``per_type`` (plugin, span type) and, for top-level spans, to
    ``top``. ``latest``: the texts are whole traces in write order, so a span's latest
    version and its parent's plugin are known."""
    plugin, status = match
    entries = latest_spans(texts) if latest else [e for t in texts for e in decode(t)]
    owner = {e[E.SID]: e[E.PLUGIN] for e in entries} if latest else {}
    sums: dict[tuple, list] = {}
    for e in entries:
        end, name = e[E.END], e[E.PLUGIN]
        if end is None or name is None:
            continue
        start = e[E.START]
        if (since is not None and start < since) or (until is not None and start >= until):
            continue
        if (plugin is not None and name != plugin) or (status is not None
                                                       and e[E.STATUS] != status):
            continue
        dur = end - start
        key = (name, e[E.TYPE] or "", e[E.STATUS])
        v = sums.get(key)
        if v is None:
            v = sums[key] = [0, 0, 0, 0, 0, 0, 0, 0.0]
        v[0] += 1
        v[1] += dur
        v[2] += e[E.SELF] or 0
        v[3] = max(v[3], dur)
        v[4] += e[E.TIN]
        v[5] += e[E.TOUT]
        v[6] += e[E.TCACHED]
        v[7] += e[E.COST]
        if latest and owner.get(e[E.PID]) != name:
            t = top.get(name)
            if t is None:
                t = top[name] = [0, 0, 0, 0, {}]
            t[0] += 1
            t[1] += e[E.STATUS] == "error"
            t[2] += dur
            t[3] = max(t[3], dur)
            bucket = e[E.BUCKET] or 0
            t[4][bucket] = t[4].get(bucket, 0) + 1
    for (name, stype, st), (n, dur, self_ns, mx, tin, tout, tc, cost) in sums.items():
        _add(per_type, (name, stype), st, n, dur, self_ns, mx, tin, tout, tc, cost, ())


def _percentile(hist: list[tuple[int, int]], n: int, p: float) -> float:
    if not n:
        return 0.0
    rank = max(1, math.ceil(p * n))
    seen = 0
    for bucket, count in hist:
        seen += count
        if seen >= rank:
            return bucket_value_ns(bucket)
    return bucket_value_ns(hist[-1][0])


# ---------------------------------------------------------------------------- sessions / users

SESSION_FILTERS = frozenset({"since_ns", "until_ns", "user_id", "umo"})
USER_FILTERS = frozenset({"since_ns", "until_ns", "user_id", "umo"})
_AGG = ("min(t.start_ns) AS first_ns, max(t.start_ns) AS last_ns, count(*) AS trace_count, "
        "sum(t.status = 'error') AS error_count, sum(t.input_tokens) AS input_tokens, "
        "sum(t.output_tokens) AS output_tokens, sum(t.cached_tokens) AS cached_tokens, "
        "sum(t.cost_usd) AS cost_usd, coalesce(sum(t.duration_ns), 0) AS total_duration_ns")


def _group_where(filters: Mapping[str, Any] | None, allowed: frozenset[str]
                 ) -> tuple[list[str], list[Any]]:
    filters = filters or {}
    _check_keys(filters, allowed)
    where, params = _time_range(_int_param("since_ns", filters.get("since_ns")),
                                _int_param("until_ns", filters.get("until_ns")), "t.start_ns")
    for key in ("user_id", "umo"):
        value = _text_param(key, filters.get(key)) if key in allowed else None
        if value is not None:
            where.append(f"t.{key} = ?")
            params.append(value)
    return where, params


async def _grouped(conn: Any, key_sql: str, extra: str, where: list[str], params: list[Any],
                   limit: Any, cursor: Any) -> tuple[list[Any], str | None, int]:
    limit = _limit(limit)
    after = decode_cursor(cursor, (int, str))
    where = [*where, f"{key_sql} IS NOT NULL"]
    cond = " WHERE " + " AND ".join(where)
    async with conn.execute(f"SELECT count(DISTINCT {key_sql}) FROM traces t{cond}", params) as cur:
        total = (await cur.fetchone())[0]
    having, hparams = "", []
    if after is not None:
        having = " HAVING (max(t.start_ns) < ? OR (max(t.start_ns) = ? AND k < ?))"
        hparams = [after[0], after[0], after[1]]
    sql = (f"SELECT {key_sql} AS k, {extra}, {_AGG} FROM traces t{cond} GROUP BY k{having} "
           "ORDER BY last_ns DESC, k DESC LIMIT ?")
    async with conn.execute(sql, [*params, *hparams, limit + 1]) as cur:
        rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["last_ns"], rows[-1]["k"]) if more and rows else None
    return rows, next_cursor, total


def _totals(r: Any) -> dict[str, Any]:
    return {
        "first_ns": r["first_ns"], "last_ns": r["last_ns"], "trace_count": r["trace_count"],
        "error_count": r["error_count"] or 0, "input_tokens": r["input_tokens"] or 0,
        "output_tokens": r["output_tokens"] or 0, "cached_tokens": r["cached_tokens"] or 0,
        "cost_usd": round(r["cost_usd"] or 0.0, 8), "total_duration_ns": r["total_duration_ns"],
    }


async def sessions(conn: Any, filters: Mapping[str, Any] | None = None, limit: Any = 50,
                   cursor: Any = None) -> dict[str, Any]:
    where, params = _group_where(filters, SESSION_FILTERS)
    rows, next_cursor, total = await _grouped(
        conn, "coalesce(t.session_id, t.umo)",
        "max(t.umo) AS umo, group_concat(DISTINCT t.user_id) AS user_ids",
        where, params, limit, cursor)
    out = []
    for r in rows:
        users = sorted(set((r["user_ids"] or "").split(","))) if r["user_ids"] else []
        out.append({"session_id": r["k"], "umo": r["umo"], "user_ids": users, **_totals(r)})
    return {"sessions": out, "next_cursor": next_cursor, "total": total}


async def users(conn: Any, filters: Mapping[str, Any] | None = None, limit: Any = 50,
                cursor: Any = None) -> dict[str, Any]:
    where, params = _group_where(filters, USER_FILTERS)
    rows, next_cursor, total = await _grouped(
        conn, "t.user_id",
        "max(t.sender) AS sender, count(DISTINCT coalesce(t.session_id, t.umo)) AS session_count",
        where, params, limit, cursor)
    out = [{"user_id": r["k"], "sender": r["sender"], "session_count": r["session_count"],
            **_totals(r)} for r in rows]
    return {"users": out, "next_cursor": next_cursor, "total": total}




# ---------------------------------------------------------------------------- spend

#: what spend groups by -> the traces' key expression (a constant put into SQL)
SPEND_BY = {"user": "t.user_id", "session": "coalesce(t.session_id, t.umo)"}
SPEND_MAX_LIMIT = 100
#: a group's tokens per plugin are read from the spans of at most this many traces
#: (the newest of the groups listed, in the window)
SPEND_SHARE_TRACES = 5_000


async def spend(conn: Any, by: Any = "user", since_ns: Any = None, until_ns: Any = None,
                limit: Any = 20) -> dict[str, Any]:
    """Tokens and cost per user or per conversation (session id, else umo) of the traces
    started in ``[since_ns, until_ns)``, the top spenders first (cost, then tokens), each
    with its LLM tokens and cost per plugin (the plugin an ``llm_call`` span is attributed
    to; ``""``: the host's own calls) and the tokens each plugin's hooks added to LLM
    requests (``context_tokens_est``: the hooks' ``tokens_added_est``, characters / 4)."""
    key = _text_param("by", by) or "user"
    if key not in SPEND_BY:
        raise QueryError("by", f"must be one of {', '.join(SPEND_BY)}; got {key[:40]!r}")
    since, until = _window(since_ns, until_ns)
    n = _int_param("limit", limit, 1, SPEND_MAX_LIMIT)
    n = 20 if n is None else n
    key_sql = SPEND_BY[key]
    where, params = _time_range(since, until, "t.start_ns")
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    async with conn.execute(
            "SELECT count(*), coalesce(sum(t.input_tokens), 0), coalesce(sum(t.output_tokens), 0), "
            "coalesce(sum(t.cached_tokens), 0), coalesce(sum(t.cost_usd), 0), "
            f"count(DISTINCT {key_sql}) FROM traces t{cond}", params) as cur:
        tc, tin, tout, tcached, tcost, groups_total = await cur.fetchone()
    extra = ("max(t.sender) AS label" if key == "user"
             else "max(t.umo) AS label, group_concat(DISTINCT t.user_id) AS user_ids")
    gcond = " WHERE " + " AND ".join([*where, f"{key_sql} IS NOT NULL"])
    sql = (f"SELECT {key_sql} AS k, {extra}, count(*) AS traces, max(t.start_ns) AS last_ns, "
           "sum(t.input_tokens) AS tin, sum(t.output_tokens) AS tout, "
           "sum(t.cached_tokens) AS tc, sum(t.cost_usd) AS cost "
           f"FROM traces t{gcond} GROUP BY k "
           "ORDER BY cost DESC, tin + tout DESC, k LIMIT ?")
    async with conn.execute(sql, [*params, n]) as cur:
        rows = await cur.fetchall()
    out = []
    for r in rows:
        item: dict[str, Any] = {"key": r["k"], "trace_count": r["traces"],
                                "last_ns": r["last_ns"], "input_tokens": r["tin"] or 0,
                                "output_tokens": r["tout"] or 0, "cached_tokens": r["tc"] or 0,
                                "cost_usd": round(r["cost"] or 0.0, 8),
                                "cost_share": round((r["cost"] or 0.0) / tcost, 6) if tcost else 0.0,
                                "token_share": round(((r["tin"] or 0) + (r["tout"] or 0))
                                                     / (tin + tout), 6) if tin + tout else 0.0}
        if key == "user":
            item["sender"] = r["label"]
        else:
            item["umo"] = r["label"]
            item["user_ids"] = sorted(set((r["user_ids"] or "").split(","))) \
                if r["user_ids"] else []
        out.append(item)
    partial = await _plugin_shares(conn, key_sql, where, params, out)
    return {"by": key, "since_ns": since, "until_ns": until, "groups": out,
            "total": groups_total, "plugin_shares_partial": partial,
            "totals": {"trace_count": tc, "input_tokens": tin, "output_tokens": tout,
                       "cached_tokens": tcached, "cost_usd": round(tcost, 8)}}


async def _plugin_shares(conn: Any, key_sql: str, where: list[str], params: list[Any],
                         groups: list[dict[str, Any]]) -> bool:
    """Each group's LLM tokens and cost per plugin (``groups[i]["plugins"]``), from the
    spans of the newest :data:`SPEND_SHARE_TRACES` traces of the groups; True when that
    left traces out."""
    for g in groups:
        g["plugins"] = []
    if not groups:
        return False
    keys = [g["key"] for g in groups]
    marks = ",".join("?" * len(keys))  # placeholders only; the keys are bound
    cond = " AND ".join([*where, f"{key_sql} IN ({marks})"])
    async with conn.execute(
            f"SELECT t.k, c.spans FROM (SELECT {key_sql} AS k, t.start_ns, t.trace_id "
            f"FROM traces t WHERE {cond} ORDER BY t.start_ns DESC LIMIT ?) t "
            "CROSS JOIN span_chunks c ON c.trace_start_ns = t.start_ns AND c.trace_id = t.trace_id",
            [*params, *keys, SPEND_SHARE_TRACES]) as cur:
        rows = await cur.fetchall()
    # (a trace's chunks come one after another; whether the cap cut a trace off is told
    # by counting traces, below)
    texts: dict[str, list[str]] = {}
    for k, text in rows:
        texts.setdefault(k, []).append(text)
    async with conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM traces t WHERE {cond} LIMIT ?)",
            [*params, *keys, SPEND_SHARE_TRACES + 1]) as cur:
        partial = (await cur.fetchone())[0] > SPEND_SHARE_TRACES
    described = await _plugin_table(conn)

    def tally() -> None:
        for g in groups:
            per: dict[str, list] = {}
            for e in latest_spans(texts.get(g["key"], ())):
                if e[E.END] is None:
                    continue
                if e[E.TYPE] == "llm_call":
                    v = per.setdefault(e[E.PLUGIN] or "", [0, 0, 0.0, 0])
                    v[0] += e[E.TIN]
                    v[1] += e[E.TOUT]
                    v[2] += e[E.COST]
                elif e[E.PLUGIN] and isinstance(e[E.DATA], dict):
                    # what a plugin's hook added to an LLM request (tokens estimated)
                    added = (e[E.DATA].get("meta") or {}).get("tokens_added_est")
                    if isinstance(added, int) and added > 0:
                        per.setdefault(e[E.PLUGIN], [0, 0, 0.0, 0])[3] += added
            g["plugins"] = sorted(
                ({"plugin": name,
                  "display_name": (described.get(name) or {}).get("display_name", name),
                  "input_tokens": tin, "output_tokens": tout, "cost_usd": round(cost, 8),
                  "context_tokens_est": ctx}
                 for name, (tin, tout, cost, ctx) in per.items()),
                key=lambda p: (-(p["input_tokens"] + p["output_tokens"] + p["context_tokens_est"]),
                               p["plugin"]))

    await asyncio.to_thread(tally)
    return partial
