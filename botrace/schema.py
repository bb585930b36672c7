"""The store's SQLite schema, its version history and the migrations between them.

A botrace database is recognised by ``PRAGMA application_id`` (``APPLICATION_ID``)
and versioned by ``PRAGMA user_version``. ``MIGRATIONS[n]`` upgrades version
``n`` to ``n + 1``; ``SCHEMA_V1`` is kept so a test can build a database of
the first released version and prove the upgrade path.
"""

from __future__ import annotations

import math

__all__ = [
    "APPLICATION_ID",
    "DUR_BUCKET_BASE",
    "GRAINS",
    "MIGRATIONS",
    "SCHEMA",
    "SCHEMA_V1",
    "SCHEMA_VERSION",
    "SPAN_FIELDS",
    "bucket_value_ns",
    "duration_bucket",
]

APPLICATION_ID = 0x62747263  # "btrc"
SCHEMA_VERSION = 6

# Durations are histogrammed in log buckets (3 % wide) so percentiles over a
# million spans come from a GROUP BY of small integers, not a sort.
DUR_BUCKET_BASE = 1.03
_LOG_BASE = math.log(DUR_BUCKET_BASE)


def duration_bucket(duration_ns: int | None) -> int | None:
    if duration_ns is None:
        return None
    if duration_ns < 1:
        return 0
    return int(math.log(duration_ns) / _LOG_BASE) + 1


def bucket_value_ns(bucket: int) -> float:
    """Representative duration of a bucket (its geometric middle)."""
    if bucket <= 0:
        return 0.0
    return DUR_BUCKET_BASE ** (bucket - 0.5)


# Version 1: traces and spans only (no self time, histogram bucket, cost or tags).
SCHEMA_V1 = """
CREATE TABLE traces (
    trace_id TEXT PRIMARY KEY,
    name TEXT, start_ns INTEGER NOT NULL, end_ns INTEGER, duration_ns INTEGER,
    status TEXT NOT NULL,
    umo TEXT, sender TEXT, user_id TEXT, session_id TEXT, outline TEXT,
    agent_type TEXT, platform TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    span_count INTEGER NOT NULL DEFAULT 0, llm_calls INTEGER NOT NULL DEFAULT 0,
    tool_calls INTEGER NOT NULL DEFAULT 0, error_count INTEGER NOT NULL DEFAULT 0,
    dropped_spans INTEGER NOT NULL DEFAULT 0, truncated INTEGER NOT NULL DEFAULT 0,
    plugins TEXT, models TEXT, attributes TEXT
);
CREATE INDEX traces_start ON traces(start_ns, trace_id);
CREATE INDEX traces_user ON traces(user_id, start_ns);
CREATE INDEX traces_session ON traces(session_id, start_ns);
CREATE INDEX traces_umo ON traces(umo, start_ns);
CREATE INDEX traces_status ON traces(status, start_ns);
CREATE TABLE spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT,
    name TEXT, span_type TEXT, plugin TEXT, model TEXT, tool TEXT,
    start_ns INTEGER NOT NULL, end_ns INTEGER, duration_ns INTEGER,
    status TEXT NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    data TEXT
);
CREATE UNIQUE INDEX spans_trace ON spans(trace_id, span_id);
CREATE INDEX spans_type_start ON spans(span_type, start_ns);
"""

# Version 2 (current) = version 1 + MIGRATIONS[1]. Spans are keyed by their
# trace's start time (``trace_start_ns``) instead of a unique random-id index:
# inserts land at the end of every index (time order), retention deletes key
# ranges, and one trace's spans are one index range. Tags (plugin, span type,
# model, tool of a trace) serve the list filters; plugin descriptions live once
# in ``plugins`` instead of on every span. ``gkey`` is a span's statistics key (the model
# of an llm_call, the tool of a tool_call, the plugin of a plugin_call, else its name),
# and ``spans_stats`` holds every column the statistics read, in GROUP BY order, so
# "p95 per model this week" is one pass over part of one index, no sort, no row lookups.
_V1_TO_V2 = """
CREATE TABLE spans_v2 (
    trace_start_ns INTEGER NOT NULL, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    parent_id TEXT, name TEXT, span_type TEXT, plugin TEXT, gkey TEXT,
    start_ns INTEGER NOT NULL, end_ns INTEGER, status TEXT NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    self_ns INTEGER, dur_bucket INTEGER, cost_usd REAL NOT NULL DEFAULT 0, data TEXT
);
INSERT INTO spans_v2 (trace_start_ns, trace_id, span_id, parent_id, name, span_type, plugin,
                      gkey, start_ns, end_ns, status, input_tokens, output_tokens,
                      cached_tokens, data)
    SELECT t.start_ns, s.trace_id, s.span_id, s.parent_id, s.name, s.span_type, s.plugin,
           CASE s.span_type WHEN 'llm_call' THEN s.model WHEN 'tool_call' THEN s.tool
                            WHEN 'plugin_call' THEN s.plugin ELSE s.name END, s.start_ns, s.end_ns, s.status, s.input_tokens,
           s.output_tokens, s.cached_tokens, s.data
    FROM spans s JOIN traces t ON t.trace_id = s.trace_id;
DROP TABLE spans;
ALTER TABLE spans_v2 RENAME TO spans;
CREATE INDEX spans_trace ON spans(trace_start_ns, trace_id);
CREATE INDEX spans_stats ON spans(span_type, gkey, dur_bucket, start_ns, status, end_ns, self_ns,
                                  plugin, input_tokens, output_tokens, cached_tokens, cost_usd);
ALTER TABLE traces ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
CREATE INDEX traces_duration ON traces(duration_ns);
CREATE TABLE trace_tags (
    start_ns INTEGER NOT NULL, trace_id TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (start_ns, trace_id, kind, value)
) WITHOUT ROWID;
CREATE INDEX trace_tags_value ON trace_tags(kind, value, start_ns, trace_id);
CREATE TABLE plugins (
    name TEXT PRIMARY KEY, display_name TEXT, plugin_type TEXT, version TEXT
)
"""

# the tags of traces, rebuilt from their spans (migration and crash recovery);
# an optional "AND s.trace_start_ns = ? AND s.trace_id = ?" narrows it to one trace
TAGS_FROM_SPANS = """
INSERT OR IGNORE INTO trace_tags (start_ns, trace_id, kind, value)
SELECT trace_start_ns, trace_id, 'span_type', span_type FROM spans s
    WHERE span_type IS NOT NULL {where}
UNION SELECT trace_start_ns, trace_id, 'plugin', plugin FROM spans s
    WHERE plugin IS NOT NULL {where}
UNION SELECT trace_start_ns, trace_id, 'model', gkey FROM spans s
    WHERE span_type = 'llm_call' AND gkey IS NOT NULL {where}
UNION SELECT trace_start_ns, trace_id, 'tool', gkey FROM spans s
    WHERE span_type = 'tool_call' AND gkey IS NOT NULL {where}
"""
TAGS_FROM_SPANS_ALL = TAGS_FROM_SPANS.format(where="")


def _v1_to_v2_backfill(conn) -> None:  # sqlite3.Connection, inside the migration transaction
    """Fill what version 1 did not have from what it did (self time stays NULL)."""
    rows = conn.execute(
        "SELECT rowid, end_ns - start_ns FROM spans WHERE end_ns IS NOT NULL").fetchall()
    conn.executemany("UPDATE spans SET dur_bucket = ? WHERE rowid = ?",
                     [(duration_bucket(d), rid) for rid, d in rows])
    conn.execute(TAGS_FROM_SPANS_ALL)


# Version 3 = version 2 + MIGRATIONS[2]. The wide ``spans_stats`` index is gone (it
# halved insert speed: every span went into it at a (type, key, bucket) position);
# statistics read ``stats_rollup`` instead, kept by the writer in the same transaction
# as the spans. One row per time bucket x span type x statistics key x span name x plugin
# x span status, at three grains (minute, hour, day: ``GRAINS``), holding the count, sums
# of duration, self time, tokens and cost, the longest duration, the earliest trace start
# of its spans (so the spans of a part-minute at a window's edge are one ``spans_trace``
# range) and a histogram of durations in ``DUR_BUCKET_BASE`` buckets (a flat JSON list
# ``[bucket, count, bucket, count, ...]``). Only finished spans are counted. Empty strings
# stand for a missing key (the columns are part of a WITHOUT ROWID primary key).
# ``trace_tags`` becomes one b-tree in the order the list filters walk it, (kind, value,
# start_ns, trace_id), instead of a table plus an index in that order (a tag row cost two
# b-tree inserts); ``tag_values`` lists the (kind, value) pairs so retention deletes key
# ranges, one per pair.
GRAINS = (86_400_000_000_000, 3_600_000_000_000, 60_000_000_000)  # day, hour, minute (ns)
ROLLUP_COLS = ("grain", "t0", "span_type", "gkey", "name", "plugin", "status", "n", "dur_ns",
               "self_ns", "max_ns", "input_tokens", "output_tokens", "cached_tokens",
               "cost_usd", "min_trace_start_ns", "hist")
_V2_TO_V3 = """
DROP INDEX IF EXISTS spans_stats;
CREATE TABLE stats_rollup (
    grain INTEGER NOT NULL, t0 INTEGER NOT NULL,
    span_type TEXT NOT NULL, gkey TEXT NOT NULL, name TEXT NOT NULL, plugin TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL, dur_ns INTEGER NOT NULL, self_ns INTEGER NOT NULL, max_ns INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL, min_trace_start_ns INTEGER NOT NULL, hist TEXT NOT NULL,
    PRIMARY KEY (grain, t0, span_type, gkey, name, plugin, status)
) WITHOUT ROWID;
CREATE TABLE trace_tags_v3 (
    kind TEXT NOT NULL, value TEXT NOT NULL, start_ns INTEGER NOT NULL, trace_id TEXT NOT NULL,
    PRIMARY KEY (kind, value, start_ns, trace_id)
) WITHOUT ROWID;
INSERT INTO trace_tags_v3 (kind, value, start_ns, trace_id)
    SELECT kind, value, start_ns, trace_id FROM trace_tags;
DROP TABLE trace_tags;
ALTER TABLE trace_tags_v3 RENAME TO trace_tags;
CREATE TABLE tag_values (
    kind TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (kind, value)
) WITHOUT ROWID;
INSERT INTO tag_values (kind, value) SELECT DISTINCT kind, value FROM trace_tags
"""


def _v2_to_v3_rollup(conn) -> None:  # sqlite3.Connection, inside the migration transaction
    """Build the rollup from the spans already stored (one GROUP BY pass)."""
    from botrace.store.rollup import rebuild_rollup

    rebuild_rollup(conn)


# Version 4 = version 3 + MIGRATIONS[3]. A tag is a small integer: ``tag_values`` numbers
# the (kind, value) pairs and ``trace_tags`` is keyed (tag, start_ns, trace_id). The list
# filters look the number up once (a scalar subquery) and walk the same b-tree order as
# before; a tag row is a third shorter and compares integers first, which halves what
# SQLite takes to insert a trace's tags (2.6 -> 1.3 us a span, measured on the tag
# inserts alone; docs/PERFORMANCE.md has the whole writer's figures).
_V3_TO_V4 = """
CREATE TABLE tag_values_v4 (
    tag INTEGER PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, UNIQUE (kind, value)
);
INSERT INTO tag_values_v4 (kind, value) SELECT kind, value FROM tag_values ORDER BY kind, value;
CREATE TABLE trace_tags_v4 (
    tag INTEGER NOT NULL, start_ns INTEGER NOT NULL, trace_id TEXT NOT NULL,
    PRIMARY KEY (tag, start_ns, trace_id)
) WITHOUT ROWID;
INSERT INTO trace_tags_v4 (tag, start_ns, trace_id)
    SELECT v.tag, g.start_ns, g.trace_id FROM trace_tags g
    JOIN tag_values_v4 v ON v.kind = g.kind AND v.value = g.value;
DROP TABLE trace_tags;
DROP TABLE tag_values;
ALTER TABLE trace_tags_v4 RENAME TO trace_tags;
ALTER TABLE tag_values_v4 RENAME TO tag_values
"""

# Version 5 = version 4 + MIGRATIONS[4]. The writer writes a batch's minute rows of the
# rollup in the batch's transaction, and the hour and day rows at most once a second
# (re-encoding their larger histograms for every batch was a tenth of the writer's time).
# ``rollup_dirty`` lists the hours whose hour (and day) rows may lag their minute rows,
# in the same transactions; it is emptied when they are written. A process that dies in
# between leaves the hours listed, and the next open rebuilds their rows from the minute
# rows (``botrace.store.rollup.repair_coarse``), so the rollup again describes exactly
# the finished spans stored.
_V4_TO_V5 = """
CREATE TABLE rollup_dirty (t0 INTEGER PRIMARY KEY)
"""

# Version 6 = version 5 + MIGRATIONS[5]. Spans are stored a trace's batch at a time: one
# ``span_chunks`` row per trace and writer batch, holding a JSON array of the spans that
# batch brought, each an array in ``SPAN_FIELDS`` order (``data``: an object or null).
# A span row cost the writer two b-tree inserts and the binding of 18 values (~4 us a
# span); a chunk of 20 spans costs one row (docs/PERFORMANCE.md, eighth session). A span
# written while running appears again, finished, in a later chunk of its trace: the
# latest version (highest rowid) is the span. The ``spans`` view gives one row per span
# (its latest version) for SQL by hand; botrace itself decodes the chunks in Python.
SPAN_FIELDS = (
    "span_id", "parent_id", "name", "span_type", "plugin", "gkey", "start_ns", "end_ns",
    "status", "input_tokens", "output_tokens", "cached_tokens", "self_ns", "dur_bucket",
    "cost_usd", "data",
)
_SPANS_VIEW = """
CREATE VIEW spans AS
SELECT c.trace_start_ns AS trace_start_ns, c.trace_id AS trace_id, {cols}, c.rowid AS chunk
FROM span_chunks c, json_each(c.spans) s
WHERE json_extract(s.value, '$[8]') IS NOT 'running' OR NOT EXISTS (
    SELECT 1 FROM span_chunks c2, json_each(c2.spans) s2
    WHERE c2.trace_start_ns = c.trace_start_ns AND c2.trace_id = c.trace_id
    AND c2.rowid > c.rowid AND json_extract(s2.value, '$[0]') = json_extract(s.value, '$[0]'))
""".format(cols=", ".join(f"json_extract(s.value, '$[{i}]') AS {name}"
                          for i, name in enumerate(SPAN_FIELDS)))
_V5_TO_V6 = f"""
CREATE TABLE span_chunks (
    trace_start_ns INTEGER NOT NULL, trace_id TEXT NOT NULL, spans TEXT NOT NULL
);
INSERT INTO span_chunks (trace_start_ns, trace_id, spans)
    SELECT trace_start_ns, trace_id, json_group_array(json_array(
        {", ".join(SPAN_FIELDS[:-1])},
        CASE WHEN json_valid(data) THEN json(data) END))
    FROM spans GROUP BY trace_start_ns, trace_id;
DROP TABLE spans;
CREATE INDEX span_chunks_trace ON span_chunks(trace_start_ns, trace_id);
{_SPANS_VIEW}
"""

# MIGRATIONS[n]: (sql script, python step or None) taking version n to n + 1
MIGRATIONS: dict[int, tuple[str, object]] = {
    1: (_V1_TO_V2, _v1_to_v2_backfill),
    2: (_V2_TO_V3, _v2_to_v3_rollup),
    3: (_V3_TO_V4, None),
    4: (_V4_TO_V5, None),
    5: (_V5_TO_V6, None),
}

# Fresh databases are created at version 1 and migrated forward, so the
# migration path is the code path every new database takes too.
SCHEMA = SCHEMA_V1
