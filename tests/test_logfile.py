"""The log exporter: JSON lines, rotation, one summary line per trace."""

from __future__ import annotations

import json
import logging

from botrace import SpanType, Tracer, span_context
from botrace.exporters.logfile import LogExporter


def run_trace(tracer):
    with tracer.start_trace("message", {"umo": "qq:GroupMessage:1"}):
        with span_context("WakingCheck", SpanType.PIPELINE_STAGE):
            pass
        with span_context("Process", SpanType.PIPELINE_STAGE):
            with span_context("llm", SpanType.LLM_CALL) as llm:
                llm.set_usage(input_tokens=10, output_tokens=2)
            with span_context("tool", SpanType.TOOL_CALL):
                pass


def test_writes_span_and_trace_lines_and_a_summary(tmp_path, caplog):
    path = tmp_path / "logs" / "trace.jsonl"
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    tracer.register(LogExporter(path))
    with caplog.at_level(logging.INFO, logger="botrace.trace"):
        run_trace(tracer)
        tracer.flush()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["type"] for r in records].count("span") == 5
    trace = records[-1]
    assert trace["type"] == "trace" and trace["llm_calls"] == 1 and trace["tool_calls"] == 1
    line = caplog.records[-1].getMessage()
    assert trace["trace_id"] in line
    assert "llm=1 tools=1" in line and "tokens=10/2" in line
    assert "WakingCheck=" in line and "Process=" in line
    tracer.close()


def test_rotates_at_the_size_limit(tmp_path):
    path = tmp_path / "trace.jsonl"
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    exporter = LogExporter(path, max_bytes=2_000, backups=2, summary=False)
    tracer.register(exporter)
    for _ in range(20):
        run_trace(tracer)
    tracer.flush()
    assert path.exists() and (tmp_path / "trace.jsonl.1").exists() and (tmp_path / "trace.jsonl.2").exists()
    assert not (tmp_path / "trace.jsonl.3").exists()
    assert path.stat().st_size <= 2_000 + 1_000
    tracer.close()


def test_write_errors_are_counted_and_the_host_unaffected(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    exporter = LogExporter(blocker / "trace.jsonl")
    tracer = Tracer({"trace_enable": True}, load_entrypoints=False)
    tracer.register(exporter, name="log")
    run_trace(tracer)
    tracer.flush()
    assert exporter.write_errors > 0 and exporter.last_error
    assert tracer.health()["sink_errors"]["log"] > 0
    health = exporter.botrace_health()
    assert health["state"] == "degraded" and "not_a_dir" in health["reason"]
    blocker.unlink()  # the disk is fine again: the next write succeeds
    run_trace(tracer)
    tracer.flush()
    assert exporter.botrace_health()["state"] == "ok"
    tracer.close()


def test_settings_turn_the_exporters_on(tmp_path):
    path = tmp_path / "from_settings.jsonl"
    tracer = Tracer({"trace_enable": True, "trace_log_enable": True, "trace_log_path": str(path),
                     "trace_zipkin_endpoint": "http://127.0.0.1:9/api/v2/spans"},
                    load_entrypoints=False)
    added = tracer.register_exporters()
    assert sorted(type(s).__name__ for s in added) == ["LogExporter", "ZipkinExporter"]
    assert tracer.register_exporters() == []  # once
    run_trace(tracer)
    tracer.flush()
    assert path.read_text().count('"type": "trace"') == 1
    tracer.close()
