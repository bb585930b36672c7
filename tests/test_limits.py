"""Value safety: truncation, reprs, cycles, depth, redaction without over-scrubbing."""

from __future__ import annotations

import json

from botrace import Limits, make_safe, span_context
from botrace.limits import REDACTED, is_secret_key
from botrace.testing import capture_spans


def test_long_strings_are_cut_with_a_visible_marker():
    safe, cut = make_safe({"text": "a" * 100}, Limits(max_string=10))
    assert safe == {"text": "aaaaaaaaaa…[+90 chars]"}
    assert cut


def test_non_json_values_become_bounded_reprs():
    class Thing:
        def __repr__(self):
            return "Thing(" + "x" * 5000 + ")"

    safe, cut = make_safe({"thing": Thing(), "b": b"\x00\xff", "s": {3, 1, 2}}, Limits(max_repr=20))
    assert safe["thing"].startswith("Thing(xxxx") and safe["thing"].endswith("chars]")
    assert safe["s"] == [1, 2, 3]
    assert isinstance(safe["b"], str)
    json.dumps(safe)
    assert cut


def test_a_repr_that_raises_is_survived():
    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr for you")

    safe, _ = make_safe({"x": Broken()}, Limits())
    assert safe == {"x": "<unrepresentable Broken: RuntimeError>"}


def test_cycles_and_depth_are_cut():
    a: dict = {"name": "a"}
    a["self"] = a
    deep: list = []
    node = deep
    for _ in range(20):
        node.append([])
        node = node[0]
    safe, cut = make_safe({"a": a, "deep": deep}, Limits(max_depth=4))
    assert safe["a"]["self"] == "[cycle]"
    assert "[too deep]" in json.dumps(safe["deep"])
    assert cut


def test_long_containers_are_cut_and_counted():
    safe, cut = make_safe(list(range(10)), Limits(max_items=3))
    assert safe == [0, 1, 2, "[+7 items]"] and cut


def test_nan_and_infinity_become_strings():
    safe, _ = make_safe({"a": float("nan"), "b": float("inf")}, Limits())
    json.dumps(safe, allow_nan=False)


def test_secrets_are_redacted_by_key():
    for key in ("api_key", "apiKey", "OPENAI_API_KEY", "password", "X-Auth-Token", "Authorization",
                "cookie", "client_secret", "access_token", "refresh_token", "secret", "set-cookie"):
        assert is_secret_key(key), key


def test_identifiers_and_token_counts_are_not_redacted():
    for key in ("session_id", "user_id", "umo", "input_tokens", "max_tokens", "tokens",
                "output_tokens", "token_count", "model", "sender", "author", "keyboard"):
        assert not is_secret_key(key), key


def test_secret_looking_values_are_redacted_wherever_they_are():
    safe, _ = make_safe({"header": "Bearer abcdefghijklmnop", "note": "sk-" + "a" * 30,
                         "text": "skiing is fun"}, Limits())
    assert safe == {"header": REDACTED, "note": REDACTED, "text": "skiing is fun"}


def test_extra_redact_keys_from_settings():
    with capture_spans(settings={"trace_redact_keys": ["phone"]}) as cap:
        with span_context("x") as s:
            s.set_input(phone_number="123", city="Paris")
    assert cap.find("x").input == {"phone_number": REDACTED, "city": "Paris"}


def test_extra_redact_keys_apply_to_keys_already_known_as_plain_and_nested():
    make_safe({"phone_number": 1, "deep": {"phone_number": 2}}, Limits())  # now cached as plain
    limits = Limits(extra_redact_keys=("phone",))
    safe, _ = make_safe({"phone_number": 1, "deep": {"phone_number": 2}, "list": [{"phone": 3}]}, limits)
    assert safe == {"phone_number": REDACTED, "deep": {"phone_number": REDACTED},
                    "list": [{"phone": REDACTED}]}


def test_span_values_are_made_safe_on_the_way_in():
    with capture_spans(settings={"trace_max_string": 16}) as cap, span_context("x") as s:
        s.set_input({"messages": [{"role": "user", "content": "y" * 100}], "api_key": "k"})
    span = cap.find("x")
    assert span.input["api_key"] == REDACTED
    assert span.input["messages"][0]["content"].endswith("…[+84 chars]")
    assert span.truncated and cap.traces[0].truncated
