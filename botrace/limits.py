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


#: What the span setters' flat fast path (botrace.span) needs to know without a
#: call: value types that are always JSON-ready as they are, the first two
#: characters every ``_SECRET_VALUE`` match starts with, and the cache of keys
#: already classified (key -> is a secret; a key not in it needs the full walk).
FLAT_TYPES = frozenset({bool, int, type(None)})
SECRET_VALUE_PREFIXES = frozenset({"Be", "sk", "gh"})
# Tuples, not ``a | b`` unions: a union is built anew each time the line runs.
_SETS = (set, frozenset)
_SEQUENCES = (list, tuple, set, frozenset)
_BYTES = (bytes, bytearray, memoryview)
_NUMBERS = (bool, int, float)


def make_safe(value: Any, limits: Limits) -> tuple[Any, bool]:
    """Return ``(json_ready_copy, truncated)`` for any Python value.

    Strings longer than ``max_string`` are cut with a visible ``…[+N chars]``
    marker; containers are cut at ``max_items`` and ``max_depth``; cycles become
    ``"[cycle]"``; other objects become their bounded ``repr``; values under a
    secret-looking key become ``"[redacted]"``.
    """
    walker = _Walker(limits)
    return walker.value(value, 0), walker.truncated


def make_safe_sized(value: Any, limits: Limits) -> tuple[Any, bool, int]:
    """:func:`make_safe` plus the copy's approximate JSON size in bytes, in the same pass."""
    walker = _Walker(limits)
    return walker.value(value, 0), walker.truncated, walker.size


class _Walker:
    """One pass over a value: copies, bounds, redacts, and adds up its approximate size.

    Containers copy their plain items (short strings, ints, bools, None) inline
    and call back into :meth:`value` only for the rest: most values hosts put
    on spans are flat or one level deep, and a call per item would cost more
    than the item.
    """

    __slots__ = ("extra", "max_depth", "max_items", "max_repr", "max_string", "redact", "seen",
                 "size", "truncated")

    def __init__(self, limits: Limits) -> None:
        self.max_string = limits.max_string
        self.max_repr = limits.max_repr
        self.max_depth = limits.max_depth
        self.max_items = limits.max_items
        self.redact = limits.redact
        self.extra = limits.extra_redact_keys
        self.truncated = False
        self.size = 0
        self.seen: set[int] = set()

    def value(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is int or kind is bool or value is None:
            self.size += 8
            return value
        if kind is dict:
            return self.mapping(value, depth)
        if kind is list or kind is tuple:
            return self.sequence(value, depth)
        if kind is float:
            self.size += 8
            if value - value != 0.0:  # NaN and infinities are not JSON
                return "NaN" if value != value else str(value)
            return value
        return self.other(value, depth)

    def other(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):  # str subclasses (enums etc.)
            return self.text(str.__str__(value))
        if isinstance(value, _BYTES):
            return self.text(safe_repr(bytes(value[: self.max_string]), self.max_repr))
        if isinstance(value, dict):
            return self.mapping(value, depth)
        if isinstance(value, _SEQUENCES):
            return self.sequence(value, depth)
        if isinstance(value, _NUMBERS):  # int/float subclasses, IntEnum
            return self.value(int(value) if isinstance(value, int) else float(value), depth)
        text = safe_repr(value, self.max_repr)
        if text.endswith(" chars]"):
            self.truncated = True
        self.size += len(text) + 2
        return text

    def text(self, text: str) -> str:
        n = len(text)
        if n > 10 and self.redact and n < 512 and text[:2] in SECRET_VALUE_PREFIXES \
                and _SECRET_VALUE.match(text):
            text = REDACTED
        elif n > self.max_string:
            self.truncated = True
            text = f"{text[: self.max_string]}…[+{n - self.max_string} chars]"
        self.size += len(text) + 2
        return text

    # mapping() and sequence() start with the same depth and cycle checks, and
    # call mapping() / sequence() directly for dict and list items: a call more
    # per container level costs more than these repeated lines.
    def mapping(self, value: dict, depth: int) -> Any:
        if depth >= self.max_depth:
            return self._cut("[too deep]")
        marker = id(value)
        seen = self.seen
        if marker in seen:
            return self._cut("[cycle]")
        seen.add(marker)
        out: dict[str, Any] = {}
        size = 2
        redact, extra, max_string, max_items = self.redact, self.extra, self.max_string, self.max_items
        known = secret_key_cache.get
        depth += 1
        count = 0
        for key, item in value.items():
            if count >= max_items:
                self.truncated = True
                out["…"] = f"[+{len(value) - max_items} items]"
                break
            count += 1
            if type(key) is not str:
                key = safe_repr(key, 128)
            size += len(key) + 4
            if redact and (extra or known(key) is not False) and is_secret_key(key, extra):
                out[key] = REDACTED
                size += 12
                continue
            kind = type(item)
            if kind is str:
                n = len(item)
                if n <= max_string and (n <= 10 or item[:2] not in SECRET_VALUE_PREFIXES):
                    out[key] = item
                    size += n + 2
                    continue
            elif kind is int or kind is bool or item is None:
                out[key] = item
                size += 8
                continue
            elif kind is dict:
                out[key] = self.mapping(item, depth)
                continue
            elif kind is list:
                out[key] = self.sequence(item, depth)
                continue
            out[key] = self.value(item, depth)
        seen.discard(marker)
        self.size += size
        return out

    def sequence(self, value: Any, depth: int) -> Any:
        if depth >= self.max_depth:
            return self._cut("[too deep]")
        marker = id(value)
        seen = self.seen
        if marker in seen:
            return self._cut("[cycle]")
        seen.add(marker)
        if type(value) is not list and isinstance(value, _SETS):
            try:
                value = sorted(value)
            except TypeError:
                value = list(value)
        out: list[Any] = []
        size = 2
        max_string, max_items = self.max_string, self.max_items
        depth += 1
        for item in value:
            if len(out) >= max_items:
                self.truncated = True
                out.append(f"[+{len(value) - max_items} items]")
                break
            kind = type(item)
            if kind is str:
                n = len(item)
                if n <= max_string and (n <= 10 or item[:2] not in SECRET_VALUE_PREFIXES):
                    out.append(item)
                    size += n + 3
                    continue
            elif kind is int or kind is bool or item is None:
                out.append(item)
                size += 9
                continue
            size += 1
            if kind is dict:
                out.append(self.mapping(item, depth))
            else:
                out.append(self.value(item, depth))
        seen.discard(marker)
        self.size += size
        return out

    def _cut(self, marker: str) -> str:
        self.truncated = True
        self.size += len(marker) + 2
        return marker
