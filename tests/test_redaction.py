"""Redaction, as a table of cases: the tables are the spec (issue 17, item 9).

Secrets are masked inside free text with the text around them kept; keys are
redacted by name without leaking the examples below or over-redacting the
others; ids and counts stay visible.
"""

from __future__ import annotations

import pytest

from botrace import Limits, make_safe, span_context
from botrace.limits import _SECRET_PAIRS, _SECRET_WORDS, REDACTED, is_secret_key
from botrace.testing import capture_spans

SK = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123"

# (text as given, text as recorded)
FREE_TEXT = [
    # a query string
    ("GET /search?q=paris&api_key=abc123def&token=zzz999x",
     "GET /search?q=paris&api_key=[redacted]&token=[redacted]"),
    # a URL's password
    ("postgres://admin:Sup3rSecret@db.internal:5432/app",
     "postgres://admin:[redacted]@db.internal:5432/app"),
    # headers inside a curl command: the scheme stays, the credential goes
    ("curl -H 'Authorization: Bearer abcdefghijklmnop123' https://api.example.com/v1",
     "curl -H 'Authorization: Bearer [redacted]' https://api.example.com/v1"),
    ('curl -H "X-Api-Key: 8f14e45fceea167a" https://api.example.com',
     'curl -H "X-Api-Key: [redacted]" https://api.example.com'),
    # a key inside a prompt
    (f"Please use my key {SK} for this call.", "Please use my key [redacted] for this call."),
    # the error message of issue 17, item 8
    ("login failed for bob with password=hunter2 api_key=sk-abcdefghijklmnopqrstu",
     "login failed for bob with password=[redacted] api_key=[redacted]"),
    # JSON and YAML text
    ('{"password": "hunter2", "user": "bob"}', '{"password": "[redacted]", "user": "bob"}'),
    ("db:\n  host: db.internal\n  password: hunter2\n", "db:\n  host: db.internal\n  password: [redacted]\n"),
    # keys the old rules let through
    ("password_used: hunter2; used_token=abc123", "password_used: [redacted]; used_token=[redacted]"),
    # a Cookie header, to the end of its line
    ("Cookie: sessionid=abc; csrftoken=xyz\nAccept: */*", "Cookie: [redacted]\nAccept: */*"),
    # known formats anywhere
    ("gh token ghp_abcdefghijklmnopqrstuvwxyz0123 and slack xoxb-1234567890-abcdefghij",
     "gh token [redacted] and slack [redacted]"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2hlcmU", "jwt [redacted]"),
    ("gemini AIzaSyA1234567890abcdefghijklmnopqrstuv ok", "gemini [redacted] ok"),
    ("Bearer abcdefghijklmnop", "Bearer [redacted]"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
     "-----BEGIN RSA PRIVATE KEY-----[redacted]-----END RSA PRIVATE KEY-----"),
    # kept as they are: ids, counts, settings about a secret, words that merely contain "sk-"
    ("user_id=42&session_id=s-1&input_tokens=812&max_tokens=1024",
     "user_id=42&session_id=s-1&input_tokens=812&max_tokens=1024"),
    ("auth_method: oauth, token_url=https://id.example.com/oauth/token",
     "auth_method: oauth, token_url=https://id.example.com/oauth/token"),
    ("pwd=/home/x", "pwd=/home/x"),
    ("webchat:FriendMessage:alice", "webchat:FriendMessage:alice"),
    ("The weather: sunny. Note: bring a hat.", "The weather: sunny. Note: bring a hat."),
    ("task-queue-scheduler-service-worker-7", "task-queue-scheduler-service-worker-7"),
    ("author: Jane; keyboard=qwerty; monkey: yes", "author: Jane; keyboard=qwerty; monkey: yes"),
    ("https://example.com/path?q=1&page=2", "https://example.com/path?q=1&page=2"),
]


@pytest.mark.parametrize(("text", "expected"), FREE_TEXT)
def test_secrets_inside_text_are_masked_and_the_text_kept(text, expected):
    assert make_safe({"text": text}, Limits())[0] == {"text": expected}
    assert make_safe([text], Limits())[0] == [expected]  # in a list as in a dict


# (key, value, value as recorded)
KEYS = [
    # secrets
    ("api_key", "k", REDACTED), ("apiKey", "k", REDACTED), ("OPENAI_API_KEY", "k", REDACTED),
    ("password", "p", REDACTED), ("X-Auth-Token", "t", REDACTED), ("Authorization", "Basic x", REDACTED),
    ("cookie", "c", REDACTED), ("client_secret", "s", REDACTED), ("access_token", "t", REDACTED),
    ("refresh_token", "t", REDACTED), ("set-cookie", "c", REDACTED), ("db_pwd", "p", REDACTED),
    ("password_used", "hunter2", REDACTED), ("used_token", "abc", REDACTED),
    ("pwd", "hunter2", REDACTED),
    # not secrets
    ("user_id", "u1", "u1"), ("session_id", "s1", "s1"), ("umo", "qq:1", "qq:1"),
    ("input_tokens", 812, 812), ("max_tokens", 1024, 1024), ("output_tokens", 64, 64),
    ("tokens", 5, 5), ("token_count", 5, 5), ("model", "gpt", "gpt"), ("author", "Jane", "Jane"),
    ("keyboard", "qwerty", "qwerty"), ("auth_method", "oauth", "oauth"), ("token_type", "bearer", "bearer"),
    ("token_url", "https://x/token", "https://x/token"), ("secret_name", "db-pass", "db-pass"),
    ("pwd", "/home/x", "/home/x"), ("PWD", "~/src", "~/src"),
]


@pytest.mark.parametrize(("key", "value", "recorded"), KEYS)
def test_keys_neither_leak_nor_over_redact(key, value, recorded):
    assert make_safe({key: value}, Limits())[0] == {key: recorded}
    with capture_spans() as cap, span_context("x") as s:  # the span setters' fast path agrees
        s.set_input({key: value})
        s.set_meta(**{key: value})
    assert cap.find("x").input == {key: recorded} == cap.find("x").meta


def test_a_header_pair_has_its_value_redacted():
    headers = [("X-Api-Key", "8f14e45f"), ("Accept", "application/json"), ["Authorization", "Bearer x"]]
    assert make_safe({"headers": headers}, Limits())[0] == {"headers": [
        ["X-Api-Key", REDACTED], ["Accept", "application/json"], ["Authorization", REDACTED]]}


def test_dict_keys_that_read_the_same_are_all_kept():
    assert make_safe({1: "a", "1": "b"}, Limits())[0] == {"1 (int)": "a", "1": "b"}
    assert make_safe({1: "a"}, Limits())[0] == {"1": "a"}
    assert make_safe({(1, 2): "t", None: 0, True: 1}, Limits())[0] == {"(1, 2)": "t", "None": 0, "True": 1}


def test_secrets_in_span_values_are_masked_on_every_path():
    url = "https://api.example.com/v1?api_key=abc123def"
    with capture_spans() as cap, span_context("x") as s:
        s.set_input(url=url)  # the flat fast path
        s.set_output({"urls": [url], "nested": {"url": url}})
        s.set_meta(note=f"key {SK}")
    span = cap.find("x")
    masked = "https://api.example.com/v1?api_key=[redacted]"
    assert span.input == {"url": masked}
    assert span.output == {"urls": [masked], "nested": {"url": masked}}
    assert span.meta == {"note": "key [redacted]"}


def test_text_dense_with_pairs_is_masked_too():
    pairs = ", ".join(f'"item{i}": "value {i}"' for i in range(60))  # past _find_pairs' dense mode
    text = f'{{{pairs}, "api_key": "abc123", "x-auth-token": "zzz", "max_tokens": 5}}'
    masked = make_safe(text, Limits())[0]
    assert '"api_key": "[redacted]", "x-auth-token": "[redacted]", "max_tokens": 5}' in masked
    assert masked.startswith('{"item0": "value 0", "item1": "value 1"')


def test_a_secret_across_the_cut_is_masked_whole():
    text = "x" * 90 + " api_key=abcdefghijklmnopqrstuvwxyz"
    safe, cut = make_safe(text, Limits(max_string=100))
    assert cut and "abcdef" not in safe and safe == "x" * 90 + " api_key=[…[+25 chars]"


def test_extra_redact_keys_apply_inside_text():
    limits = Limits(extra_redact_keys=("phone",))
    assert make_safe("call phone_number=5551234 now", limits)[0] == "call phone_number=[redacted] now"
    assert make_safe("call phone_number=5551234 now", Limits())[0] == "call phone_number=5551234 now"


def test_redaction_can_be_switched_off():
    assert make_safe({"api_key": "k", "t": "password=hunter2"}, Limits(redact=False))[0] == {
        "api_key": "k", "t": "password=hunter2"}


def test_every_secret_word_and_pair_holds_a_fragment_the_text_scanner_looks_for():
    from botrace.limits import SECRET_FRAGMENTS

    for name in [*_SECRET_WORDS, *("_".join(pair) for pair in _SECRET_PAIRS)]:
        assert any(fragment in name for fragment in SECRET_FRAGMENTS), name
        assert is_secret_key(name), name


def test_mask_secrets_examples():
    from botrace.limits import mask_secrets

    assert mask_secrets("max_tokens=512, auth_method: oauth") == "max_tokens=512, auth_method: oauth"
    assert mask_secrets("short") == "short"
    assert mask_secrets("my password is hunter2") == "my password is hunter2"  # no separator: not seen
