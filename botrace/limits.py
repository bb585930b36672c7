"""Value safety: everything put on a span is bounded, JSON-ready and redacted.

Plugins hand spans whatever they have: huge strings, objects whose ``repr``
raises, cyclic structures, dicts holding API keys. :func:`make_safe` turns any
of it into plain JSON values on the way in, so that nothing later (store, web
page, exporters) has to be defensive, and tells the caller whether it cut
anything so the span can be marked ``truncated``::

    >>> limits = Limits(max_string=16)
    >>> make_safe({"q": "x" * 40, "api_key": "sk-123"}, limits)
    ({'q': 'xxxxxxxxxxxxxxxx…[+24 chars]', 'api_key': '[redacted]'}, True)
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["REDACTED", "Limits", "is_secret_key", "make_safe", "safe_repr"]

REDACTED = "[redacted]"

# Whole words (after splitting snake_case, kebab-case and camelCase) that name a
# secret. "token" is a secret, "tokens" (a count) is not; "session" and "id" are
# identifiers, never secrets on their own.
_SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "secret", "token", "authorization",
    "auth", "cookie", "cookies", "credential", "credentials", "apikey", "bearer",
    "jwt", "otp", "privatekey",
})
# Adjacent word pairs that name a secret although neither word does alone.
_SECRET_PAIRS = frozenset({
    ("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
    ("client", "secret"), ("set", "cookie"), ("session", "key"), ("app", "key"),
})
# Words that make a key a quantity or a kind *about* a secret, not the secret:
# token_count, max_token, token_type, password_length.
_ABOUT_WORDS = frozenset({
    "count", "counts", "num", "number", "limit", "usage", "length", "len", "budget", "max",
    "min", "total", "used", "type", "kind", "expires", "expiry", "ttl", "policy", "required",
})
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# Values that are secrets whatever their key: bearer headers and common key formats.
_SECRET_VALUE = re.compile(r"^(?:Bearer\s+\S{8,}|sk-[A-Za-z0-9_\-]{16,}|ghp_[A-Za-z0-9]{20,})$")


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds applied to span values and to a whole trace, in one place."""

    max_string: int = 4_096
    max_repr: int = 1_024
    max_depth: int = 8
    max_items: int = 200
    max_spans: int = 10_000
    max_trace_bytes: int = 8 * 1024 * 1024
    max_traceback_frames: int = 30
    redact: bool = True
    extra_redact_keys: tuple[str, ...] = ()


secret_key_cache: dict[str, bool] = {}


def is_secret_key(key: str, extra: tuple[str, ...] = ()) -> bool:
    """True when a mapping key names a secret (``api_key``, ``X-Auth-Token``, ...).

    Identifiers stay visible: ``session_id``, ``user_id``, ``umo``,
    ``input_tokens`` and ``max_tokens`` are not secrets.
    """
    secret = secret_key_cache.get(key)
    if secret is None:
        secret = _secret_by_words(key)
        if len(secret_key_cache) < 4096:  # keys repeat; a bounded cache keeps this ~50 ns
            secret_key_cache[key] = secret
    if secret:
        return True
    if extra:
        lowered = key.lower()
        return any(fragment in lowered for fragment in extra)
    return False


def _secret_by_words(key: str) -> bool:
    words = [w.lower() for w in _WORD_SPLIT.split(key) if w]
    if any(w in _ABOUT_WORDS for w in words):
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def safe_repr(value: Any, max_len: int) -> str:
    """``repr(value)``, bounded, surviving a ``__repr__`` that raises."""
    try:
        text = repr(value)
    except BaseException as exc:  # a plugin's broken __repr__ must not break tracing
        return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    if not isinstance(text, str):
        return f"<unrepresentable {type(value).__name__}>"
    if len(text) > max_len:
        return f"{text[:max_len]}…[+{len(text) - max_len} chars]"
    return text


_SCALARS = (bool, int, float, type(None))


#: What the span setters' flat fast path (botrace.span) needs to know without a
#: call: value types that are always JSON-ready as they are, the first two
#: characters every ``_SECRET_VALUE`` match starts with, and the cache of keys
#: already classified (key -> is a secret; a key not in it needs the full walk).
FLAT_TYPES = frozenset({bool, int, type(None)})
SECRET_VALUE_PREFIXES = frozenset({"Be", "sk", "gh"})


def make_safe(value: Any, limits: Limits) -> tuple[Any, bool]:
    """Return ``(json_ready_copy, truncated)`` for any Python value.

    Strings longer than ``max_string`` are cut with a visible ``…[+N chars]``
    marker; containers are cut at ``max_items`` and ``max_depth``; cycles become
    ``"[cycle]"``; other objects become their bounded ``repr``; values under a
    secret-looking key become ``"[redacted]"``.
    """
    state = _Walk(limits)
    out = state.walk(value, 0)
    return out, state.truncated


class _Walk:
    __slots__ = ("limits", "seen", "truncated")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.truncated = False
        self.seen: set[int] = set()

    def walk(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            return self.string(value)
        if kind in _SCALARS:
            if kind is float and value != value:  # NaN is not JSON
                return "NaN"
            if kind is float and value in (float("inf"), float("-inf")):
                return str(value)
            return value
        if isinstance(value, str):  # str subclasses (enums etc.)
            return self.string(str.__str__(value))
        if isinstance(value, bytes | bytearray | memoryview):
            return self.string(safe_repr(bytes(value[: self.limits.max_string]), self.limits.max_repr))
        if isinstance(value, dict | list | tuple | set | frozenset):
            if depth >= self.limits.max_depth:
                self.truncated = True
                return "[too deep]"
            marker = id(value)
            if marker in self.seen:
                self.truncated = True
                return "[cycle]"
            self.seen.add(marker)
            try:
                if isinstance(value, dict):
                    return self.mapping(value, depth)
                return self.sequence(value, depth)
            finally:
                self.seen.discard(marker)
        if isinstance(value, bool | int | float):  # int/float subclasses, IntEnum
            return self.walk(int(value) if isinstance(value, int) else float(value), depth)
        text = safe_repr(value, self.limits.max_repr)
        if text.endswith(" chars]"):
            self.truncated = True
        return text

    def string(self, text: str) -> str:
        limits = self.limits
        if limits.redact and len(text) < 512 and _SECRET_VALUE.match(text):
            return REDACTED
        if len(text) > limits.max_string:
            self.truncated = True
            return f"{text[: limits.max_string]}…[+{len(text) - limits.max_string} chars]"
        return text

    def mapping(self, value: dict, depth: int) -> dict:
        limits = self.limits
        out: dict[str, Any] = {}
        for i, (key, item) in enumerate(value.items()):
            if i >= limits.max_items:
                self.truncated = True
                out["…"] = f"[+{len(value) - limits.max_items} items]"
                break
            name = key if type(key) is str else safe_repr(key, 128)
            if limits.redact and is_secret_key(name, limits.extra_redact_keys):
                out[name] = REDACTED
            else:
                out[name] = self.walk(item, depth + 1)
        return out

    def sequence(self, value: Any, depth: int) -> list:
        limits = self.limits
        if isinstance(value, set | frozenset):
            try:
                value = sorted(value)
            except TypeError:
                value = list(value)
        out = []
        for i, item in enumerate(value):
            if i >= limits.max_items:
                self.truncated = True
                out.append(f"[+{len(value) - limits.max_items} items]")
                break
            out.append(self.walk(item, depth + 1))
        return out


def approx_size(value: Any) -> int:
    """A cheap upper-ish estimate of a safe value's JSON size, for the byte budget."""
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind is dict:
        return 2 + sum(len(k) + 4 + approx_size(v) for k, v in value.items())
    if kind is list:
        return 2 + sum(approx_size(v) + 1 for v in value)
    return 8
