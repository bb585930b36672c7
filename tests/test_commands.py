"""``botrace serve|prune|stats|export`` run through the real command dispatcher."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from storeutil import count

from botrace.cli import main
from botrace.commands import parse_when
from botrace.store import TraceStore
from botrace.store.synthetic import feed, synthetic_traces

DAY_NS = 86_400 * 10**9


def build_db(path: Path, old: int = 30, new: int = 20) -> list:
    now = time.time_ns()
    traces = (list(synthetic_traces(old, start_ns=now - 10 * DAY_NS, seed=1))
              + list(synthetic_traces(new, start_ns=now - 3600 * 10**9, seed=2)))

    async def fill() -> None:
        store = TraceStore(path)
        store.retention_days = 0
        await store.open()
        for t in traces:
            feed(store, t)
        await store.close()

    asyncio.run(fill())
    return traces


def test_prune_deletes_traces_older_than_the_days_given(tmp_path: Path, capsys) -> None:
    db = tmp_path / "t.db"
    build_db(db)
    assert main(["prune", "--db", str(db), "--days", "7", "--dry-run"]) == 0
    assert "would delete 30 traces" in capsys.readouterr().out
    assert count(db, "SELECT count(*) FROM traces") == 50
    assert main(["prune", "--db", str(db), "--days", "7"]) == 0
    assert "deleted 30 of 50 traces" in capsys.readouterr().out
    assert count(db, "SELECT count(*) FROM traces") == 20
    assert count(db, "SELECT count(*) FROM spans") == 20 * 20


def test_stats_prints_a_table_and_json(tmp_path: Path, capsys) -> None:
    db = tmp_path / "t.db"
    traces = build_db(db, old=0, new=40)
    assert main(["stats", "--db", str(db), "--by", "model", "--since", "2h"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["model", "count", "err%"]
    assert len(table) == 1 + len({s.meta["model"] for t in traces for s in t.spans
                                  if s.span_type == "llm_call"})
    assert main(["stats", "--db", str(db), "--by", "tool", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    tool_calls = sum(s.span_type == "tool_call" for t in traces for s in t.spans)
    assert sum(g["count"] for g in doc["groups"]) == tool_calls


def test_export_writes_jsonl_and_otlp_json_files(tmp_path: Path, capsys) -> None:
    db = tmp_path / "t.db"
    traces = build_db(db)
    out = tmp_path / "recent.jsonl"
    assert main(["export", "--db", str(db), "--since", "2d", "--output", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["trace"]["trace_id"] for d in lines] == [t.trace_id for t in traces[30:]]
    assert all(len(d["spans"]) == 20 for d in lines)
    otlp = tmp_path / "all.otlp.jsonl"
    assert main(["export", "--db", str(db), "--output", str(otlp), "--format", "otlp-json",
                 "--batch-spans", "100"]) == 0
    requests = [json.loads(line) for line in otlp.read_text().splitlines()]
    spans = [s for r in requests for s in r["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    assert len(spans) == 50 * 20
    assert len(requests) == 10
    assert "exported 50 traces (1000 spans)" in capsys.readouterr().err


class _Collector(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).bodies.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_export_sends_stored_traces_to_an_otlp_endpoint(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    db = tmp_path / "t.db"
    traces = build_db(db, old=0, new=12)
    _Collector.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert main(["export", "--db", str(db), "--otlp", url, "--header", "x-team=bots"]) == 0
    finally:
        server.shutdown()
    assert {path for path, _, _ in _Collector.bodies} == {"/v1/traces"}
    got = {}
    for _, ctype, body in _Collector.bodies:
        assert ctype == "application/x-protobuf"
        for span in ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans:
            got[span.span_id.hex()] = span.parent_span_id.hex() or None
    assert got == {s.span_id: s.parent_id for t in traces for s in t.spans}


def test_export_to_a_dead_endpoint_fails_with_a_message(tmp_path: Path, capsys,
                                                        unused_tcp_port, monkeypatch) -> None:
    import botrace.exporters.otlp as otlp

    real = otlp.post_with_retries

    async def quick(*args, **kwargs):
        kwargs.update(max_retries=1, backoff=0.01)
        return await real(*args, **kwargs)

    monkeypatch.setattr(otlp, "post_with_retries", quick)
    db = tmp_path / "t.db"
    build_db(db, old=0, new=3)
    assert main(["export", "--db", str(db), "--otlp", f"http://127.0.0.1:{unused_tcp_port}"]) == 1
    assert "botrace export:" in capsys.readouterr().err


def test_bad_inputs_give_clear_errors(tmp_path: Path, capsys) -> None:
    assert main(["stats", "--db", str(tmp_path / "none.db")]) == 1
    assert "does not exist" in capsys.readouterr().err
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite" * 100)
    assert main(["stats", "--db", str(junk)]) == 1
    assert "left untouched" in capsys.readouterr().err
    assert main(["export", "--db", str(junk), "--since", "last tuesday", "--output", "-"]) == 2
    assert "not a time" in capsys.readouterr().err


def test_serve_comes_from_the_web_ui_package_not_the_core() -> None:
    """Issue 17, item 22: the core offered serve and imported the web UI by name."""
    import botrace.cli as cli

    pm = cli.plugin_manager()
    impls = {impl.plugin_name for impl in pm.hook.botrace_register_commands.get_hookimpls()}
    assert "webui" in impls  # the botrace entry point (pyproject.toml)
    assert "serve" in cli.build_parser(pm).format_help()
    core = Path(cli.__file__).parent
    assert not [p.name for p in core.rglob("*.py") if "webui" in p.read_text()]


def test_without_the_web_ui_there_is_no_serve(monkeypatch, capsys) -> None:
    import botrace.cli as cli

    real = cli.plugin_manager

    def without_webui():
        pm = real()
        pm.unregister(name="webui")  # as if botrace_webui were not installed
        return pm

    monkeypatch.setattr(cli, "plugin_manager", without_webui)
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--db", "x.db"])
    assert exc.value.code == 2
    assert "invalid choice: 'serve'" in capsys.readouterr().err


def test_serve_hands_the_database_to_the_web_ui(monkeypatch, tmp_path: Path) -> None:
    import botrace_webui.app as webui_app

    calls = []

    def fake_serve(path, host, port, token, allowed_hosts):
        calls.append((path, host, port, token, allowed_hosts))

    monkeypatch.setattr(webui_app, "serve", fake_serve)
    assert main(["serve", "--db", "t.db", "--port", "9999"]) == 0
    assert main(["serve", "--db", "t.db", "--allowed-host", "trace.lan"]) == 0
    assert calls == [("t.db", "127.0.0.1", 9999, None, None),
                     ("t.db", "127.0.0.1", 8765, None, ["trace.lan"])]


def test_serve_reports_a_bad_database_or_address(tmp_path: Path, capsys) -> None:
    assert main(["serve", "--db", str(tmp_path / "t.db"), "--host", "0.0.0.0"]) == 1
    assert "refusing to serve on 0.0.0.0 without a token" in capsys.readouterr().err


def test_times_past_64_bits_are_an_error_not_a_crash(tmp_path: Path, capsys) -> None:
    """Issue 17, item 10, in the CLI: such a time was an OverflowError from SQLite."""
    db = tmp_path / "t.db"
    build_db(db, old=0, new=2)
    for argv in (["stats", "--db", str(db), "--since", "99999999999999999999"],
                 ["export", "--db", str(db), "--since", "9999-12-31", "--output", "-"],
                 ["stats", "--db", str(db), "--until", "1969-12-31T00:00:00+00:00"]):
        assert main(argv) == 2, argv
        assert "out of range" in capsys.readouterr().err
    assert main(["stats", "--db", str(db), "--since", "99999999999w", "--json"]) == 0  # from 1970


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", 1_000 * 10**9 - 90 * 10**9), ("2h", 0),  # (before 1970: 1970)
    ("1970-01-01T00:00:10", 10 * 10**9), ("12345", 12345), (None, None),
])
def test_parse_when(text, expected) -> None:
    assert parse_when(text, now_ns=1_000 * 10**9) == expected
