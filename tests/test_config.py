"""Settings: read from the host's mapping, validated, flipped live."""

from __future__ import annotations

import asyncio

import pytest

from botrace import Settings, SettingsError, Tracer, hookimpl, span_context


def test_reads_trace_keys_and_ignores_the_rest():
    s = Settings.from_mapping({"trace_enable": "true", "trace_retention_days": "3",
                               "platform_settings": {"x": 1}})
    assert s.trace_enable is True and s.trace_retention_days == 3
    assert s.limits.max_string == s.trace_max_string


@pytest.mark.parametrize(("key", "value"), [
    ("trace_enable", "maybe"),
    ("trace_retention_days", -1),
    ("trace_max_spans", "many"),
    ("trace_otlp_protocol", "grpc"),
    ("trace_price_table", {"gpt": {"input": -1}}),
    ("trace_redact_keys", 5),
    ("trace_db_path", 3),
])
def test_bad_values_name_the_key_and_the_value(key, value):
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping({key: value})
    assert key in str(caught.value)
    assert repr(value) in str(caught.value) or key.endswith("price_table")


def test_unknown_trace_keys_are_logged_not_fatal(caplog):
    Settings.from_mapping({"trace_enabel": True})
    assert "trace_enabel" in caplog.text


def test_replace_validates():
    with pytest.raises(SettingsError):
        Settings().replace(trace_enable="perhaps")
    with pytest.raises(SettingsError):
        Settings().replace(no_such_setting=1)


def test_settings_to_dict_masks_otlp_headers():
    s = Settings.from_mapping({"trace_otlp_headers": {"Authorization": "Bearer x"}})
    assert s.to_dict()["trace_otlp_headers"] == {"Authorization": "***"}


def test_flip_takes_effect_at_the_next_message_and_is_reported(sink):
    changes = []

    class Host:
        @hookimpl
        def botrace_load_settings(self):
            return {"trace_enable": True}

        @hookimpl
        def botrace_settings_changed(self, settings, changes):
            record.append((settings.trace_enable, dict(changes)))

    record = changes
    tracer = Tracer.from_host(Host(), load_entrypoints=False)
    tracer.register(sink)
    assert tracer.enabled
    with tracer.start_trace("one"):
        pass
    tracer.set_enabled(False)
    assert not tracer.start_trace("two")  # NULL_SPAN is falsy
    tracer.set_enabled(False)  # no change, no notification
    tracer.set_enabled(True)
    with tracer.start_trace("three"):
        pass
    tracer.flush()
    assert [t.name for t in sink.traces] == ["one", "three"]
    assert changes == [(False, {"trace_enable": False}), (True, {"trace_enable": True})]
    tracer.close()


async def test_a_running_trace_finishes_whole_when_tracing_goes_off(tracer, sink):
    async def handler(step_gate: asyncio.Event) -> None:
        async with tracer.start_trace("message"):
            async with span_context("before"):
                pass
            await step_gate.wait()
            async with span_context("after"), span_context("nested after"):
                pass

    gate = asyncio.Event()
    task = asyncio.create_task(handler(gate))
    await asyncio.sleep(0.01)
    tracer.set_enabled(False)
    gate.set()
    await task
    async with tracer.start_trace("ignored"):
        pass
    tracer.flush()
    assert len(sink.traces) == 1
    trace = sink.traces[0]
    assert [s.name for s in trace.spans] == ["message", "before", "after", "nested after"]
    assert all(s.end_ns is not None for s in trace.spans)
    assert trace.to_dict()["status"] == "ok"


def test_reload_settings_reads_the_host_again():
    config = {"trace_enable": False}

    class Host:
        @hookimpl
        def botrace_load_settings(self):
            return config

    tracer = Tracer.from_host(Host(), load_entrypoints=False)
    assert not tracer.enabled
    config["trace_enable"] = True
    tracer.reload_settings()
    assert tracer.enabled


def test_issue17_20_capturing_message_content_is_an_opt_in_setting():
    assert Settings().trace_otlp_capture_content is False
    assert Settings.from_mapping({"trace_otlp_capture_content": "on"}).trace_otlp_capture_content
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping({"trace_otlp_capture_content": "sometimes"})
    assert "trace_otlp_capture_content" in str(caught.value)


def test_repr_objects_is_a_setting_that_reaches_the_limits():
    assert Settings().limits.repr_objects is False
    on = Settings.from_mapping({"trace_repr_objects": "yes"})
    assert on.trace_repr_objects is True and on.limits.repr_objects is True
