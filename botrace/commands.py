"""The core's ``botrace`` subcommands: ``prune``, ``stats``, ``export``.

Registered on the command's plugin manager like any third party's commands
(``botrace_register_commands``); ``serve`` (the read-only Trace tab) comes the same
way from the web UI package, ``demo`` from the host adapter::

    botrace prune  --db data/botrace.db --days 3        # delete traces older than 3 days
    botrace stats  --db data/botrace.db --by model --since 24h
    botrace export --db data/botrace.db --since 1h --otlp http://collector:4318
    botrace export --db data/botrace.db --output traces.jsonl --format jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from botrace.hookspecs import hookimpl

__all__ = ["botrace_register_commands", "parse_when"]

_DEFAULT_DB = "data/botrace.db"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_INT64_MAX = 2**63 - 1  # the store's times are SQLite INTEGERs


def parse_when(text: str | None, now_ns: int | None = None) -> int | None:
    """A point in time as ns: ``"2h"``/``"7d"`` ago, an ISO date/time, or raw ns.

    The store keeps 64-bit ns since the epoch: a relative time reaching back before 1970
    means 1970, any other time outside 1970..2262 is an error.

    >>> parse_when("1h", now_ns=3_600 * 10**9 + 5)
    5
    """
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    now_ns = time.time_ns() if now_ns is None else now_ns
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smhdw])", text)
    if m:
        ago_ns = float(m.group(1)) * _UNITS[m.group(2)] * 1e9
        return max(0, now_ns - int(ago_ns)) if math.isfinite(ago_ns) else 0
    if re.fullmatch(r"[0-9]+", text):
        value = int(text)
    else:
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a time: {text!r} (use 30m, 2h, 7d, an ISO date like 2026-01-31T12:00, "
                "or nanoseconds)") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        value = int(dt.timestamp() * 1_000_000) * 1000
    if not 0 <= value <= _INT64_MAX:
        raise argparse.ArgumentTypeError(
            f"out of range: {text[:40]!r} (times run from 1970 to 2262, or 0..{_INT64_MAX} ns)")
    return value


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(0, total)
        self.label = label
        self.stream = stream or sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def update(self, done: int) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < self.total:
            return
        self._last = now
        frac = min(1.0, done / self.total) if self.total else 1.0
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r{self.label} [{bar:<30}] {done}/{self.total} {frac:4.0%}")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def _db_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=_DEFAULT_DB,
                        help=f"path of the trace database (default {_DEFAULT_DB})")


@hookimpl
def botrace_register_commands(subparsers: argparse._SubParsersAction) -> None:
    prune = subparsers.add_parser("prune", help="delete old traces (whole traces, oldest first)")
    _db_arg(prune)
    prune.add_argument("--days", type=int, default=None,
                       help="keep this many days (default: trace_retention_days, 7)")
    prune.add_argument("--max-mb", type=int, default=None,
                       help="then delete oldest traces until the database is under this size")
    prune.add_argument("--dry-run", action="store_true", help="only count what would go")
    prune.set_defaults(func=cmd_prune)

    stats = subparsers.add_parser("stats", help="latency, errors and tokens per stage/plugin/tool/model")
    _db_arg(stats)
    stats.add_argument("--by", default="stage",
                       choices=["stage", "plugin", "tool", "model", "span_type", "name"])
    stats.add_argument("--since", default="7d", help="30m, 24h, 7d, an ISO time (default 7d)")
    stats.add_argument("--until", default=None)
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=cmd_stats)

    export = subparsers.add_parser(
        "export", help="send stored traces to an OTLP endpoint, or write them to a file")
    _db_arg(export)
    export.add_argument("--since", default=None, help="30m, 24h, 7d, an ISO time (default: all)")
    export.add_argument("--until", default=None)
    where = export.add_mutually_exclusive_group(required=True)
    where.add_argument("--otlp", metavar="URL", help="OTLP/HTTP endpoint, e.g. http://localhost:4318")
    where.add_argument("--output", metavar="FILE", help="write to FILE ('-' for stdout)")
    export.add_argument("--format", choices=["otlp-json", "jsonl"], default="jsonl",
                        help="file format: one OTLP/JSON request per line, or one trace per line")
    export.add_argument("--protocol", choices=["protobuf", "json"], default="protobuf",
                        help="OTLP encoding (Phoenix accepts only protobuf)")
    export.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                        help="extra HTTP header for the OTLP endpoint (repeatable)")
    export.add_argument("--service-name", default="botrace")
    export.add_argument("--batch-spans", type=int, default=512)
    export.set_defaults(func=cmd_export)


# ---------------------------------------------------------------------------- prune

def cmd_prune(args: argparse.Namespace) -> int:
    from botrace.config import Settings
    from botrace.store import StoreError, TraceStore

    overrides: dict[str, Any] = {}
    if args.days is not None:
        overrides["trace_retention_days"] = args.days
    overrides["trace_db_max_mb"] = args.max_mb or 0
    settings = Settings.from_mapping(overrides)

    async def run() -> int:
        store = TraceStore(args.db, settings, read_only=args.dry_run)
        await store.open()
        try:
            if args.dry_run:
                n = await store.count_prunable()
                print(f"would delete {n} traces older than {settings.trace_retention_days} days")
                return 0
            before = await store.count_traces()
            bar = Progress(before, "pruning")
            n = await store.prune(progress=bar.update)
            bar.close()
            print(f"deleted {n} of {before} traces; {before - n} kept")
            return 0
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreError as exc:
        print(f"botrace prune: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------- stats

def cmd_stats(args: argparse.Namespace) -> int:
    from botrace.store import QueryError, StoreError, TraceStore

    try:
        since, until = parse_when(args.since), parse_when(args.until)
    except argparse.ArgumentTypeError as exc:
        print(f"botrace stats: {exc}", file=sys.stderr)
        return 2

    async def run() -> dict[str, Any]:
        store = TraceStore(args.db, read_only=True)
        await store.open()
        try:
            return await store.stats(args.by, since_ns=since, until_ns=until)
        finally:
            await store.close()

    try:
        result = asyncio.run(run())
    except (StoreError, QueryError) as exc:
        print(f"botrace stats: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(format_stats(result))
    return 0


def format_stats(result: dict[str, Any]) -> str:
    cols = [("key", result["group_by"], "<", 28), ("count", "count", ">", 8),
            ("error_rate", "err%", ">", 6), ("p50_ms", "p50 ms", ">", 9),
            ("p95_ms", "p95 ms", ">", 9), ("p99_ms", "p99 ms", ">", 9),
            ("total_ms", "total ms", ">", 11), ("self_ms", "self ms", ">", 11),
            ("input_tokens", "tok in", ">", 10), ("output_tokens", "tok out", ">", 9),
            ("cost_usd", "cost $", ">", 9)]
    lines = [" ".join(f"{title:{align}{width}}" for _, title, align, width in cols)]
    for g in result["groups"]:
        cells = []
        for key, _, align, width in cols:
            value = g[key]
            if key == "error_rate":
                value = f"{value * 100:.1f}"
            elif key == "cost_usd":
                value = f"{value:.4f}"
            elif isinstance(value, float):
                value = f"{value:.1f}"
            text = str(value)
            if len(text) > width:
                text = text[: width - 1] + "…"
            cells.append(f"{text:{align}{width}}")
        lines.append(" ".join(cells))
    if not result["groups"]:
        lines.append("(no spans in this window)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- export

def cmd_export(args: argparse.Namespace) -> int:
    from botrace.store import StoreError

    try:
        since, until = parse_when(args.since), parse_when(args.until)
    except argparse.ArgumentTypeError as exc:
        print(f"botrace export: {exc}", file=sys.stderr)
        return 2
    headers = {}
    for item in args.header:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            print(f"botrace export: --header wants NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        headers[name.strip()] = value
    try:
        n_traces, n_spans = asyncio.run(_export(args, since, until, headers))
    except StoreError as exc:
        print(f"botrace export: {exc}", file=sys.stderr)
        return 1
    except ExportFailed as exc:
        print(f"botrace export: {exc}", file=sys.stderr)
        return 1
    where = args.otlp or args.output
    print(f"exported {n_traces} traces ({n_spans} spans) to {where}", file=sys.stderr)
    return 0


class ExportFailed(Exception):
    pass


async def _export(args: argparse.Namespace, since: int | None, until: int | None,
                  headers: dict[str, str]) -> tuple[int, int]:
    from botrace.exporters.otlp import (
        encode_json,
        encode_request,
        otlp_spans,
        post_with_retries,
        traces_url,
    )
    from botrace.store import TraceStore

    store = TraceStore(args.db, read_only=True)
    await store.open()
    session = None
    out: TextIO | None = None
    n_traces = n_spans = 0
    try:
        total = await store.count_traces(since, until)
        bar = Progress(total, "exporting")
        if args.otlp:
            import aiohttp

            session = aiohttp.ClientSession()
            url = traces_url(args.otlp)
        elif args.output == "-":
            out = sys.stdout
        else:
            out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        batch: list[tuple[dict, list[dict]]] = []
        batch_spans = 0

        async def ship() -> None:
            nonlocal batch, batch_spans
            if not batch:
                return
            if session is not None:
                body, hdrs = encode_request(batch, args.protocol, args.service_name)
                try:
                    await post_with_retries(session, url, body, {**headers, **hdrs})
                except Exception as exc:
                    raise ExportFailed(f"{url}: {exc} (after {n_traces} traces)") from None
            else:
                records = []
                for trace, spans in batch:
                    records += otlp_spans(trace, spans)
                out.write(json.dumps(encode_json(records, args.service_name),
                                     ensure_ascii=False, separators=(",", ":")) + "\n")
            batch, batch_spans = [], 0

        async for doc in store.iter_traces(since, until):
            n_traces += 1
            n_spans += len(doc["spans"])
            if out is not None and args.format == "jsonl":
                out.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
            else:
                batch.append((doc["trace"], doc["spans"]))
                batch_spans += len(doc["spans"])
                if batch_spans >= args.batch_spans:
                    await ship()
            bar.update(n_traces)
        await ship()
        bar.close()
    finally:
        if session is not None:
            await session.close()
        if out is not None and out is not sys.stdout:
            out.close()
        await store.close()
    return n_traces, n_spans
