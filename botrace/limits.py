"""Value safety: everything put on a span is bounded, JSON-ready and redacted.

Plugins hand spans whatever they have: huge strings and ints, objects whose
``repr`` is slow or raises, containers whose own methods raise, cyclic
structures, dicts holding API keys, URLs and curl commands with credentials
inside. :func:`make_safe` turns any of it into plain JSON values on the way in,
so that nothing later (store, web page, exporters) has to be defensive, and
tells the caller whether it cut anything so the span can be marked
``truncated``::

    >>> limits = Limits(max_string=16)
    >>> make_safe({"q": "x" * 40, "api_key": "sk-123"}, limits)
    ({'q': 'xxxxxxxxxxxxxxxx…[+24 chars]', 'api_key': '[redacted]'}, True)
    >>> make_safe({"url": "https://db.example/q?user=bob&password=hunter2"}, Limits())[0]
    {'url': 'https://db.example/q?user=bob&password=[redacted]'}

What a value becomes:

==============================================  =====================================================
str                                             itself; cut past ``max_string`` with ``…[+N chars]``;
                                                secrets inside it masked (:func:`mask_secrets`)
int                                             itself within 64 bits; beyond, its decimal text (or
                                                ``[int ≈ 1.0e+5000]`` when that is too long), truncated
float, bool, None                               themselves (NaN and infinities as text)
dict, other mappings                            dict with str keys; values under secret keys
                                                (``api_key``, ``X-Auth-Token``) are ``[redacted]``
list, tuple, set, deque, dict views             list (sets sorted when they can be); a
                                                ``("X-Api-Key", "…")`` pair has its value redacted
dataclass, namedtuple                           dict of its fields (``field(repr=False)`` left out)
Enum                                            ``"Color.RED"`` (IntEnum, StrEnum: their value)
exception                                       ``"ValueError('bad city')"`` (plain arguments only)
date/time, Decimal, UUID, Path, ip addresses    their ``repr``, bounded
anything else                                   ``"<TypeName>"``; its ``repr`` only with
                                                ``Limits(repr_objects=True)``: a ``__repr__`` may be
                                                slow, or print what the object holds
a value whose own methods raise                 ``"[unrecordable: TypeName]"``, counted
==============================================  =====================================================

Recording never raises into plugin code: a value's own code (``items()``,
``__iter__``, ``__repr__``, ``__lt__``, ...) runs in one place,
:meth:`_Walker.guarded`, and what raises there becomes
``[unrecordable: TypeName]`` while the rest of the value is kept.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import math
import numbers
import re
import sys
import traceback
import types
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from operator import index as _index
from typing import Any

__all__ = ["REDACTED", "Limits", "describe_error", "is_secret_key", "make_safe", "mask_secrets",
           "safe_repr"]

REDACTED = "[redacted]"

# -- secret keys ------------------------------------------------------------------

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
# Words that make a key *about* a secret rather than the secret: a quantity
# (token_count, max_token, password_length), a kind or setting (token_type,
# auth_method, password_policy), or where one lives or what it is called
# (token_url, secret_name, password_file, api_key_id). "used" is not one:
# password_used and used_token hold the secret that was used.
_ABOUT_WORDS = frozenset({
    "count", "counts", "num", "number", "limit", "usage", "length", "len", "budget", "max",
    "min", "total", "type", "kind", "method", "methods", "mode", "scheme", "provider",
    "policy", "required", "enabled", "status", "error", "expires", "expiry", "ttl",
    "url", "uri", "endpoint", "name", "file", "path", "dir", "id", "ids",
})
# Keys that name a directory when they hold a path: the shell's PWD ("pwd": "/home/x").
# Holding anything else, "pwd" is a password.
_PATH_KEYS = frozenset({"pwd"})
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
#: Every secret word and pair above contains one of these (tests check it): text
#: dense with ``key: value`` pairs is scanned for them (see _find_pairs).
SECRET_FRAGMENTS = ("pass", "pwd", "secret", "token", "auth", "cookie", "credential", "key",
                    "bearer", "jwt", "otp")


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds applied to span values and to a whole trace, in one place.

    ``repr_objects``: show objects of types botrace does not know by their
    ``repr`` (bounded) instead of ``<TypeName>``. Off by default: a
    ``__repr__`` runs the object's own code on the host's path, which may be
    slow (a second blocks the message for a second) or print what the object
    holds (a client's repr with its API key).
    """

    max_string: int = 4_096
    max_repr: int = 1_024
    max_depth: int = 8
    max_items: int = 200
    max_spans: int = 10_000
    max_trace_bytes: int = 8 * 1024 * 1024
    max_traceback_frames: int = 30
    redact: bool = True
    extra_redact_keys: tuple[str, ...] = ()
    repr_objects: bool = False


secret_key_cache: dict[str, bool] = {}
_CACHED_KEY_MAX = 128  # longer keys are classified each time: the cache holds short keys only


def is_secret_key(key: str, extra: tuple[str, ...] = ()) -> bool:
    """True when a mapping key names a secret (``api_key``, ``X-Auth-Token``, ``password_used``).

    Identifiers, counts and settings stay visible: ``session_id``, ``user_id``,
    ``umo``, ``input_tokens``, ``max_tokens``, ``auth_method``, ``token_url``::

        >>> is_secret_key("OPENAI_API_KEY"), is_secret_key("used_token"), is_secret_key("max_tokens")
        (True, True, False)
    """
    secret = secret_key_cache.get(key)
    if secret is None:
        secret = _secret_by_words(key)
        # Keys repeat; a bounded cache keeps this ~50 ns, and lets span setters
        # skip the walk for keys known to be plain (botrace.span._admit).
        if len(secret_key_cache) < 4096 and len(key) <= _CACHED_KEY_MAX:
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


def _keeps_path(key: str, value: Any) -> bool:
    """True for ``pwd`` holding a path, a directory rather than a password."""
    return type(value) is str and value[:1] in ("/", "~") and key.lower() in _PATH_KEYS


# -- secrets inside text ------------------------------------------------------------

#: Strings shorter than this are not scanned for secrets inside them ("pwd=abc1" is 8).
SCAN_MIN = 8
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# Credential formats worth masking wherever they appear. Each regex starts with a
# literal, which the regex engine finds fast, and runs only when a plain substring
# test (faster still) says the literal is there; a leading word boundary is checked
# on the few matches rather than in the pattern, which would slow every position.
_SK_KEY = re.compile(r"sk-[A-Za-z0-9_\-]{16,}")  # OpenAI, Anthropic (sk-ant-), DeepSeek, ...
_GITHUB_TOKEN = re.compile(r"gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}")
_SLACK_TOKEN = re.compile(r"xox[abposr]-[A-Za-z0-9\-]{10,}")
_GOOGLE_KEY = re.compile(r"AIza[A-Za-z0-9_\-]{35}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}")
_BEARER = re.compile(r"Bearer[ \t]+([A-Za-z0-9._~+/=\-]{8,})")
_URL_PASSWORD = re.compile(r"://[^\s:/@]+:([^\s@/]+)@")
_PRIVATE_KEY = re.compile(r"-----BEGIN[A-Z ]*PRIVATE KEY-----(.+?)(?:-----END[A-Z ]*PRIVATE KEY-----|\Z)",
                          re.S)
# The key before a "=" or ":", read backwards from the separator in a reversed
# window of text (a regex can only match forwards; this one is anchored, so it
# costs the key's length, not the text's).
_KEY_BEFORE = re.compile(r"""[ \t]*["']?([A-Za-z0-9_.\-]{1,64})""")
_KEY_WINDOW = 68
# From a secret fragment to the separator after its key ("key" in "api_key_v2": …).
_REST_OF_KEY = re.compile(r"""[a-z0-9_.\-]{0,64}["']?[ \t]*[=:]""")
_DENSE = 24  # separators in one text past which _find_pairs looks from the fragments instead
_SHORT_TEXT = 256  # texts this short are first checked for a fragment at all
# The value after "key=" / "key: ": quoted, or one run of non-separators. An auth
# scheme before it ("Authorization: Bearer …") is kept, the credential masked.
_PAIR_VALUE = re.compile(r"""[ \t]*(?:(["'])([^"'\n]*)|(?:(?i:bearer|basic|token|digest|bot)[ \t]+)?"""
                         r"""([^\s"'&,;<>{}\[\]()]+))""")
# A Cookie header's value runs to the end of the line: "Cookie: a=1; csrftoken=…".
_LINE_VALUE = re.compile(r"""[ \t]*([^\n"']+)""")


def may_hold_secret(text: str) -> bool:
    """The cheap pre-check before :func:`mask_secrets` runs a regex.

    Every pattern masked needs one of these substrings, and most strings hold
    none. Single characters are memchr scans (a 4 KB string in ~0.1 us, where
    a word costs ~2 us), so each word is only looked for after a character of it
    that prose holds less often. A "key: value" pair needs a separator; whether
    its key names a secret is for mask_secrets to tell.
    """
    return (":" in text or "=" in text
            or ("-" in text and ("sk-" in text or "xox" in text or "PRIVATE KEY" in text))
            or ("_" in text and "gh" in text)
            or ("J" in text and "eyJ" in text) or ("z" in text and "AIza" in text)
            or ("B" in text and "Bearer" in text))


def mask_secrets(text: str, extra: tuple[str, ...] = ()) -> str:
    """``text`` with the secrets inside it replaced by ``[redacted]``, the rest kept.

    Masked: the value of a ``key=value`` or ``key: value`` pair whose key is a
    secret by :func:`is_secret_key` (query strings, headers, JSON, YAML, log
    lines), a URL's password, a Bearer credential, known key formats (``sk-…``,
    ``ghp_…``, ``xoxb-…``, ``AIza…``, JWTs) and private key blocks::

        >>> mask_secrets("curl -H 'Authorization: Bearer abc.def.ghi' 'https://x/v1?q=1&api_key=k3y'")
        "curl -H 'Authorization: Bearer [redacted]' 'https://x/v1?q=1&api_key=[redacted]'"
        >>> mask_secrets("postgres://admin:Sup3rSecret@db:5432/app")
        'postgres://admin:[redacted]@db:5432/app'
        >>> mask_secrets("max_tokens=512, auth_method: oauth")
        'max_tokens=512, auth_method: oauth'

    ``extra`` adds key fragments (the ``trace_redact_keys`` setting). Not masked:
    a secret in prose without a separator ("my password is hunter2").
    """
    if len(text) < SCAN_MIN:
        return text
    found: list[tuple[int, int]] = []
    colon = ":" in text
    if colon or "=" in text:
        _find_pairs(text, extra, found)
        if colon and "/" in text and "://" in text:
            found.extend(m.span(1) for m in _URL_PASSWORD.finditer(text))
    if "-" in text:  # (the words are looked for after a character they hold: see may_hold_secret)
        if "sk-" in text:
            _find_tokens(_SK_KEY, text, found)
        if "xox" in text:
            _find_tokens(_SLACK_TOKEN, text, found)
        if "PRIVATE KEY" in text:
            found.extend(m.span(1) for m in _PRIVATE_KEY.finditer(text))
    if "_" in text and "gh" in text:
        _find_tokens(_GITHUB_TOKEN, text, found)
    if "J" in text and "eyJ" in text:
        _find_tokens(_JWT, text, found)
    if "z" in text and "AIza" in text:
        _find_tokens(_GOOGLE_KEY, text, found)
    if "B" in text and "Bearer" in text:
        found.extend(m.span(1) for m in _BEARER.finditer(text))
    if not found:
        return text
    found.sort()
    parts: list[str] = []
    last = 0
    for start, end in found:
        if end <= last:
            continue  # inside a secret already masked
        if start >= last:
            parts.append(text[last:start])
            parts.append(REDACTED)
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _find_tokens(pattern: re.Pattern[str], text: str, found: list[tuple[int, int]]) -> None:
    for m in pattern.finditer(text):
        start = m.start()
        if start == 0 or text[start - 1] not in _WORD_CHARS:  # "task-…" holds no "sk-" key
            found.append((start, m.end()))


def _find_pairs(text: str, extra: tuple[str, ...], found: list[tuple[int, int]]) -> None:
    """``key=value`` / ``key: value`` pairs whose key is a secret: their values.

    Each separator's key is read by an anchored regex on a short reversed window
    (about 1 us a separator on a slow core). Text dense with separators (JSON, logs)
    is looked at the other way round: only the separators right after a secret
    fragment, found by ``str.find`` on the lowered text (a fixed ~30 us per 4 KB).
    """
    if len(text) <= _SHORT_TEXT:
        lowered = text.lower()
        if not any(fragment in lowered for fragment in (*SECRET_FRAGMENTS, *extra)):
            return  # (a URL, a time, a umo: separators, and no key that could name a secret)
    find = text.find
    separators: list[int] = []
    for separator in ":=":
        at = find(separator)
        while at != -1 and len(separators) <= _DENSE:
            separators.append(at)
            at = find(separator, at + 1)
    if len(separators) > _DENSE:
        separators = _separators_after_fragments(text, extra)
    known = secret_key_cache.get
    key_before = _KEY_BEFORE.match
    for at in separators:
        before = key_before((text[at - _KEY_WINDOW:at] if at > _KEY_WINDOW else text[:at])[::-1])
        if before is not None:
            key = before.group(1)[::-1]
            if (extra or known(key) is not False) and is_secret_key(key, extra):
                _find_value(text, at, key, found)


def _separators_after_fragments(text: str, extra: tuple[str, ...]) -> list[int]:
    lowered = text.lower()
    find = lowered.find
    rest_of_key = _REST_OF_KEY.match
    separators = set()
    for fragment in (*SECRET_FRAGMENTS, *extra):
        at = find(fragment)
        while at != -1:
            rest = rest_of_key(lowered, at + len(fragment))
            if rest is not None:
                separators.add(rest.end() - 1)
            at = find(fragment, at + 1)
    return sorted(separators)


def _find_value(text: str, at: int, key: str, found: list[tuple[int, int]]) -> None:
    if text[at] == ":" and "cookie" in key.lower():
        value = _LINE_VALUE.match(text, at + 1)
        group = 1
    else:
        value = _PAIR_VALUE.match(text, at + 1)
        group = 2 if value is not None and value.group(1) else 3
    if value is not None:
        start, end = value.span(group)
        if end > start and not _keeps_path(key, text[start:end]):
            found.append((start, end))


# -- reprs, type names ------------------------------------------------------------------

def safe_repr(value: Any, max_len: int) -> str:
    """``repr(value)``, bounded, surviving a ``__repr__`` that raises."""
    try:
        text = repr(value)
    except Exception as exc:  # a plugin's broken __repr__ must not break tracing
        return f"<unrepresentable {_type_name(type(value))}: {_type_name(type(exc))}>"
    if len(text) > max_len:
        return f"{text[:max_len]}…[+{len(text) - max_len} chars]"
    return text


# A class's own name, read without the class's code: a metaclass may make
# ``__name__`` a property (that raises).
_type_name = type.__dict__["__name__"].__get__

# How a value of a type botrace does not own is read; decided once per type (_classify).
(_TEXT, _BYTES, _INT, _FLOAT, _INTEGRAL, _REAL, _ENUM, _MAPPING, _NAMEDTUPLE, _SEQUENCE,
 _DATACLASS, _EXCEPTION, _REPR, _OBJECT) = range(14)
_kinds: dict[type, int] = {}
_SEQUENCE_TYPES = (list, tuple, set, frozenset, deque, type({}.keys()), type({}.values()),
                   type({}.items()))
_SETS = (set, frozenset)
_PLAIN = frozenset({str, int, float, bool, type(None)})
# Types whose repr is C code over the value's own fields: fast, and bounded by them.
_REPR_BUILTINS = frozenset({complex, range, slice, type, types.FunctionType, types.BuiltinFunctionType,
                            types.ModuleType, type(Ellipsis), type(NotImplemented)})
# The same from the standard library, looked up where the module is already imported
# (a value of a type from a module nobody imported cannot exist).
_REPR_STDLIB = (("datetime", ("date", "datetime", "time", "timedelta", "timezone")),
                ("decimal", ("Decimal",)), ("fractions", ("Fraction",)), ("uuid", ("UUID",)),
                ("zoneinfo", ("ZoneInfo",)),
                ("pathlib", ("PurePosixPath", "PureWindowsPath", "PosixPath", "WindowsPath")),
                ("ipaddress", ("IPv4Address", "IPv6Address", "IPv4Network", "IPv6Network")))


def _classify(kind: type) -> int:
    """How values of ``kind`` are read (see the module's table). May run the class's code
    (an ABC's ``__subclasshook__``), so it is called under the walker's guard."""
    if issubclass(kind, str):
        how = _TEXT
    elif issubclass(kind, (bytes, bytearray, memoryview)):
        how = _BYTES
    elif issubclass(kind, int):
        how = _INT
    elif issubclass(kind, float):
        how = _FLOAT
    elif issubclass(kind, enum.Enum):
        how = _ENUM
    elif issubclass(kind, (dict, Mapping)):
        how = _MAPPING
    elif issubclass(kind, tuple) and isinstance(getattr(kind, "_fields", None), tuple):
        how = _NAMEDTUPLE
    elif issubclass(kind, _SEQUENCE_TYPES):
        how = _SEQUENCE
    elif dataclasses.is_dataclass(kind):
        how = _DATACLASS
    elif issubclass(kind, BaseException):
        how = _EXCEPTION
    elif issubclass(kind, numbers.Integral):  # numpy's integers
        how = _INTEGRAL
    elif issubclass(kind, numbers.Real):  # numpy's floats
        how = _REAL
    elif kind in _REPR_BUILTINS or any(getattr(sys.modules.get(module), name, None) is kind
                                       for module, names in _REPR_STDLIB for name in names):
        how = _REPR
    else:
        how = _OBJECT
    if len(_kinds) < 1024:  # types are few; a bounded cache keeps a class factory from growing it
        _kinds[kind] = how
    return how


# -- the walk ------------------------------------------------------------------------------

#: Ints kept as they are: what the store's JSON writer (orjson) takes, signed or unsigned 64 bits.
INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1
_LOG10_2 = math.log10(2)
_max_str_digits = getattr(sys, "get_int_max_str_digits", lambda: 0)


def make_safe(value: Any, limits: Limits) -> tuple[Any, bool]:
    """Return ``(json_ready_copy, truncated)`` for any Python value.

    Strings longer than ``max_string`` are cut with a visible ``…[+N chars]``
    marker; containers are cut at ``max_items`` and ``max_depth``; cycles become
    ``"[cycle]"``; values under a secret-looking key become ``"[redacted]"``,
    secrets inside strings are masked; see the module's table for the rest.
    """
    walker = _Walker(limits)
    return walker.value(value, 0), walker.truncated


def make_safe_args(mapping: Any, values: dict[str, Any], limits: Limits) -> tuple[dict[str, Any], _Walker]:
    """A span setter's arguments (``set_input(mapping, **values)``) as one safe dict, and the walk.

    ``values`` win over ``mapping``'s keys. A ``mapping`` that is not a mapping is
    kept under ``"value"``; one that cannot be read becomes
    ``{"value": "[unrecordable: TypeName]"}``. The walker tells what was cut
    (``truncated``), the copy's approximate JSON size (``size``) and how many
    values could not be read (``failures``, the first exception in ``failure``).
    """
    walker = _Walker(limits)
    if mapping is None:
        safe = walker.value(values, 0)
    else:
        safe = walker.value(mapping, 0)
        if type(safe) is not dict:
            safe = {"value": safe}
        if values:
            safe.update(walker.value(values, 0))
    return safe, walker


def describe_error(error: Any, limits: Limits) -> tuple[dict[str, str], _Walker]:
    """``{"type", "message", "traceback"}`` for an exception (or a message), bounded and masked.

    The message and the traceback's text go through :func:`mask_secrets`, as
    values do: ``password=hunter2`` in an exception's message shows as
    ``password=[redacted]``.
    """
    walker = _Walker(limits)
    kind = type(error)
    if issubclass(kind, BaseException):
        name = _type_name(kind)
        message = walker.guarded(str, error)
        text = walker.guarded(_traceback_text, error, limits.max_traceback_frames)
    else:
        name = "Error"
        message = error if kind is str else walker.guarded(str, error)
        text = ""
    max_string = limits.max_string
    if limits.redact:
        message = mask_secrets(message[: max_string + _SCAN_MARGIN], limits.extra_redact_keys)
        text = mask_secrets(text, limits.extra_redact_keys)
    if len(text) > max_string * 2:
        text = "…" + text[-max_string * 2:]
    return {"type": name, "message": message[:max_string], "traceback": text}, walker


def _traceback_text(error: BaseException, max_frames: int) -> str:
    frames = traceback.extract_tb(error.__traceback__)[-max_frames:]
    return "".join(traceback.format_list(frames))


# Text past max_string still scanned before the cut, so that a secret straddling
# the cut is masked whole rather than shown in part.
_SCAN_MARGIN = 256


class _Walker:
    """One pass over a value: copies, bounds, redacts, and adds up its approximate size.

    Containers copy their plain items (short strings, ints, bools, None) inline
    and call back into :meth:`value` only for the rest: most values hosts put
    on spans are flat or one level deep, and a call per item would cost more
    than the item. Values of types botrace does not own go through
    :meth:`guarded`, the only place their code runs.
    """

    __slots__ = ("extra", "failure", "failures", "max_depth", "max_items", "max_repr", "max_string",
                 "redact", "repr_objects", "seen", "size", "truncated")

    def __init__(self, limits: Limits) -> None:
        self.max_string = limits.max_string
        self.max_repr = limits.max_repr
        self.max_depth = limits.max_depth
        self.max_items = limits.max_items
        self.redact = limits.redact
        self.extra = limits.extra_redact_keys
        self.repr_objects = limits.repr_objects
        self.truncated = False
        self.size = 0
        self.seen: set[int] = set()
        self.failures = 0
        self.failure: Exception | None = None

    def value(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is int:
            if INT_MIN <= value <= INT_MAX:
                self.size += 8
                return value
            return self.big_int(value)
        if kind is bool or value is None:
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
        return self.guarded(self.foreign, value, depth)

    def guarded(self, read: Any, value: Any, *args: Any) -> Any:
        """``read(value, *args)``; if the value's own code raises, ``[unrecordable: TypeName]``.

        The boundary between a plugin's objects and tracing: whatever their
        ``items()``, ``__iter__``, ``__len__``, ``__repr__`` or ``__lt__`` raise
        stops here, counted (``failures``), instead of in the plugin's call.
        (BaseExceptions that are not Exceptions, KeyboardInterrupt and
        SystemExit, are not a value's fault and go on.)
        """
        try:
            return read(value, *args)
        except Exception as exc:
            self.seen.discard(id(value))  # left behind by a container that raised mid-walk
            self.failures += 1
            if self.failure is None:
                self.failure = exc
            return self._cut(f"[unrecordable: {_type_name(type(value))}]")

    def foreign(self, value: Any, depth: int) -> Any:
        """A value of a type botrace does not own (subclasses included): read it by its kind."""
        kind = type(value)
        how = _kinds.get(kind)
        if how is None:
            how = _classify(kind)
        if how == _TEXT:  # str subclasses (StrEnum etc.): their text, not their methods
            return self.text(str.__str__(value))
        if how == _INT:  # int subclasses, IntEnum: the number, without calling __int__
            return self.value(int.__index__(value), depth)
        if how == _FLOAT:
            return self.value(float.__float__(value), depth)
        if how == _MAPPING:
            return self.mapping(value, depth)
        if how == _SEQUENCE:
            return self.sequence(value, depth)
        if how == _NAMEDTUPLE:
            return self.fields(value, dict(zip(kind._fields, value, strict=False)), depth)
        if how == _DATACLASS:
            return self.fields(value, {f.name: getattr(value, f.name)
                                       for f in dataclasses.fields(value) if f.repr}, depth)
        if how == _ENUM:
            name = value._name_
            return self.text(f"{_type_name(kind)}.{name}" if type(name) is str else f"<{_type_name(kind)}>")
        if how == _BYTES:
            return self.text(safe_repr(bytes(value[: self.max_string]), self.max_repr))
        if how == _EXCEPTION:
            args = BaseException.args.__get__(value)
            if all(type(a) in _PLAIN for a in args):
                return self.short_text(BaseException.__repr__(value))
            return self.short_text(f"<{_type_name(kind)}>")
        if how == _INTEGRAL:
            return self.value(_index(value), depth)
        if how == _REAL:
            return self.value(float(value), depth)
        if how == _REPR or self.repr_objects:
            return self.short_text(repr(value))
        return self.short_text(f"<{_type_name(kind)}>")

    def fields(self, owner: Any, fields: dict[str, Any], depth: int) -> Any:
        """A dataclass's or namedtuple's fields as a dict (a cycle through ``owner`` is cut)."""
        marker = id(owner)
        if marker in self.seen:
            return self._cut("[cycle]")
        self.seen.add(marker)
        out = self.mapping(fields, depth)
        self.seen.discard(marker)
        return out

    def text(self, text: str) -> str:
        n = len(text)
        max_string = self.max_string
        if n >= SCAN_MIN and self.redact and may_hold_secret(text):
            text = mask_secrets(text if n <= max_string else text[: max_string + _SCAN_MARGIN], self.extra)
        if n > max_string:
            self.truncated = True
            text = f"{text[:max_string]}…[+{n - max_string} chars]"
        self.size += len(text) + 2
        return text

    def short_text(self, text: str) -> str:
        """A repr or a type name: masked like any text, cut at ``max_repr``."""
        n = len(text)
        if n >= SCAN_MIN and self.redact and may_hold_secret(text):
            text = mask_secrets(text[: self.max_repr + _SCAN_MARGIN], self.extra)
        if n > self.max_repr:
            self.truncated = True
            text = f"{text[: self.max_repr]}…[+{n - self.max_repr} chars]"
        self.size += len(text) + 2
        return text

    def big_int(self, value: int) -> str:
        """An int beyond 64 bits, as text: its digits when they fit, else its magnitude."""
        self.truncated = True
        digits = int(value.bit_length() * _LOG10_2) + 1  # at least its number of digits
        limit = _max_str_digits()
        if digits <= self.max_string and (not limit or digits <= limit):
            text = int.__repr__(value)
        else:  # too long to show, or to convert at all (Python's int_max_str_digits)
            exponent = math.log10(abs(value))
            whole = math.floor(exponent)
            text = f"[int ≈ {'-' if value < 0 else ''}{10 ** (exponent - whole):.4f}e+{whole}]"
        self.size += len(text) + 2
        return text

    def key(self, key: Any, source: Any, out: dict[str, Any], depth: int) -> str:
        """A non-str mapping key as text: ``1`` → ``"1"``; ``"1 (int)"`` if the mapping also has ``"1"``."""
        safe = self.value(key, depth)
        if type(safe) is str:
            text = safe
        elif type(key) is tuple and type(safe) is list:
            text = repr(tuple(safe))
        else:
            text = repr(safe)
        if len(text) > 128:
            text = f"{text[:128]}…"
        if text in out or text in source:  # {1: "a", "1": "b"} keeps both
            base = text = f"{text} ({_type_name(type(key))})"
            n = 2
            while text in out or text in source:
                text = f"{base} #{n}"
                n += 1
        return text

    # mapping() and sequence() start with the same depth and cycle checks, and
    # call mapping() / sequence() directly for dict and list items: a call more
    # per container level costs more than these repeated lines.
    def mapping(self, value: Any, depth: int) -> Any:
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
                key = self.key(key, value, out, depth)
            size += len(key) + 4
            if redact and (extra or known(key) is not False) and is_secret_key(key, extra) \
                    and not _keeps_path(key, item):
                out[key] = REDACTED
                size += 12
                continue
            kind = type(item)
            if kind is str:
                n = len(item)
                if n <= max_string and (n < SCAN_MIN or not redact or not may_hold_secret(item)):
                    out[key] = item
                    size += n + 2
                    continue
            elif (kind is int and INT_MIN <= item <= INT_MAX) or kind is bool or item is None:
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
        kind = type(value)
        if kind is not list and isinstance(value, _SETS):
            try:
                value = sorted(value)
            except Exception:  # unorderable items (or an __lt__ that raises): set order, then
                value = list(value)
        elif (kind is tuple or kind is list) and len(value) == 2 and self.redact \
                and type(value[0]) is str and type(value[1]) is str and is_secret_key(value[0], self.extra):
            # A header as a pair, ("X-Api-Key", "…"): the second item is the key's value.
            seen.discard(marker)
            self.size += len(value[0]) + 17
            return [value[0], REDACTED]
        out: list[Any] = []
        size = 2
        max_string, max_items, redact = self.max_string, self.max_items, self.redact
        depth += 1
        for item in value:
            if len(out) >= max_items:
                self.truncated = True
                out.append(f"[+{len(value) - max_items} items]")
                break
            kind = type(item)
            if kind is str:
                n = len(item)
                if n <= max_string and (n < SCAN_MIN or not redact or not may_hold_secret(item)):
                    out.append(item)
                    size += n + 3
                    continue
            elif (kind is int and INT_MIN <= item <= INT_MAX) or kind is bool or item is None:
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
