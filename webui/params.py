"""Declared query parameters: one table drives validation, the store's filters and OpenAPI.

Each API route lists its :class:`Param` s. :func:`parse_query` turns a request's
query string into typed values or raises :class:`BadParam` naming the first bad
parameter (unknown names included), which the API answers with a 400.

Every value that reaches the store fits its columns: times and cursor numbers are
64-bit (SQLite's INTEGER), so no input can overflow a query into a 500. The OpenAPI
schema of each parameter (:meth:`Param.schema`) describes a subset of what is
accepted, so a request valid by the schema is never rejected
(``tests/test_api_schemathesis.py`` checks both against the served description).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["INT64_MAX", "BadParam", "Param", "parse_query", "parse_time"]

SPAN_TYPES = ("message", "pipeline_stage", "plugin_call", "llm_call", "tool_call",
              "subagent_call", "io_call", "custom")
TRACE_STATUSES = ("ok", "error", "cancelled", "running", "interrupted")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
#: the largest value of a SQLite INTEGER: times (ns) and cursor numbers stay within it
INT64_MAX = 2**63 - 1
_RELATIVE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d|w)$")
_DIGITS = re.compile(r"^[0-9]+$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CURSOR = re.compile(r"^[A-Za-z0-9_-]+$")

# What the OpenAPI description promises a time parameter accepts (a subset of what
# parse_time takes): ns since the epoch (18 digits at most, so within 64 bits), a relative
# time, or an ISO 8601 date/time between 1970 and 2261 (ns since the epoch end in 2262).
_ISO_SCHEMA = (r"(19[7-9][0-9]|20[0-9]{2}|21[0-9]{2}|22[0-5][0-9]|226[01])"
               r"-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
               r"(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{3}([0-9]{3})?)?)?"
               r"(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?)?")
TIME_PATTERN = rf"^([0-9]{{1,18}}|[0-9]{{1,6}}(\.[0-9]{{1,3}})?[smhdw]|{_ISO_SCHEMA})$"


class BadParam(ValueError):
    """A request parameter the API cannot use; becomes ``400 {"error", "param"}``."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Param:
    """One query parameter of one route.

    ``kind``: ``str``, ``int``, ``float``, ``bool``, ``enum``, ``time``
    (relative like ``15m``/``24h``/``7d``, ISO 8601 or ns; becomes ns since the
    epoch) or ``cursor`` (a ``next_cursor`` the API gave out). ``store_key`` names
    the store filter the value feeds (None: the handler uses it itself).
    """

    name: str
    kind: str = "str"
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    default: Any = None
    max_length: int = 500
    store_key: str | None = None
    example: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        """The OpenAPI schema of the raw (string) value."""
        if self.kind == "int":
            out: dict[str, Any] = {"type": "integer"}
        elif self.kind == "float":
            out = {"type": "number"}
        elif self.kind == "bool":
            out = {"type": "boolean"}
        elif self.kind == "enum":
            out = {"type": "string", "enum": list(self.choices)}
        elif self.kind == "time":
            out = {"type": "string", "pattern": TIME_PATTERN,
                   "description": "relative (15m, 24h, 7d), ISO 8601 (1970..2262) or ns since the epoch"}
        elif self.kind == "cursor":
            out = {"type": "string", "pattern": _CURSOR.pattern, "maxLength": self.max_length}
        else:
            out = {"type": "string", "pattern": "^[^\\x00]*$", "maxLength": self.max_length}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.default is not None:
            out["default"] = self.default
        return out

    def parse(self, raw: str) -> Any:
        if len(raw) > self.max_length:
            raise BadParam(self.name, f"parameter {self.name!r} is longer than {self.max_length} characters")
        if self.kind == "str":
            if "\x00" in raw:
                raise BadParam(self.name, f"parameter {self.name!r} contains a NUL character")
            return raw
        if self.kind == "int":
            try:
                value: Any = int(raw.strip())
            except ValueError:
                raise BadParam(self.name, f"parameter {self.name!r} must be an integer, got {raw!r}") from None
            self._check_range(value)
            return value
        if self.kind == "float":
            try:
                value = float(raw.strip())
            except ValueError:
                raise BadParam(self.name, f"parameter {self.name!r} must be a number, got {raw!r}") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise BadParam(self.name, f"parameter {self.name!r} must be a finite number, got {raw!r}")
            self._check_range(value)
            return value
        if self.kind == "bool":
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise BadParam(self.name, f"parameter {self.name!r} must be true or false, got {raw!r}")
        if self.kind == "enum":
            if raw not in self.choices:
                raise BadParam(self.name, f"parameter {self.name!r} must be one of {', '.join(self.choices)}; got {raw!r}")
            return raw
        if self.kind == "time":
            return parse_time(self.name, raw)
        if self.kind == "cursor":
            return parse_cursor(self.name, raw)
        raise AssertionError(f"unknown param kind {self.kind}")  # pragma: no cover

    def _check_range(self, value: float) -> None:
        if self.minimum is not None and value < self.minimum:
            raise BadParam(self.name, f"parameter {self.name!r} must be at least {self.minimum:g}, got {value:g}")
        if self.maximum is not None and value > self.maximum:
            raise BadParam(self.name, f"parameter {self.name!r} must be at most {self.maximum:g}, got {value:g}")


def parse_time(name: str, raw: str, *, now_ns: int | None = None) -> int:
    """``15m`` / ``24h`` / ``7d`` (ago), ISO 8601, or an integer of ns since the epoch.

    The result is a 64-bit count of ns since the epoch (1970 to 2262): a relative time
    reaching back before 1970 means 1970; any other time outside is a :class:`BadParam`.

    >>> parse_time("since", "1970-01-01T00:00:01Z")
    1000000000
    """
    text = raw.strip()
    now_ns = time.time_ns() if now_ns is None else now_ns
    m = _RELATIVE.match(text)
    if m:
        ago_ns = float(m.group(1)) * _UNIT_S[m.group(2)] * 1e9
        return max(0, now_ns - int(ago_ns)) if math.isfinite(ago_ns) else 0
    if _DIGITS.match(text):
        value = int(text)
    else:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BadParam(name, f"parameter {name!r} must be a time like 15m, 24h, 7d or ISO 8601; got {raw!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        value = int(dt.timestamp() * 1_000_000) * 1000
    if not 0 <= value <= INT64_MAX:
        raise BadParam(name, f"parameter {name!r} must be a time between 1970 and 2262 "
                             f"(0..{INT64_MAX} ns since the epoch); got {raw[:40]!r}")
    return value


def parse_cursor(name: str, raw: str) -> str:
    """A ``next_cursor`` the API gave out, checked as far as the API can: URL-safe base64 of
    a JSON list whose numbers fit the store's 64-bit columns. The store checks the rest."""
    text = raw.strip()
    try:
        if not _CURSOR.match(text):
            raise ValueError
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        values = None
    if not isinstance(values, list) or not all(
            isinstance(v, str) or (isinstance(v, int) and -INT64_MAX - 1 <= v <= INT64_MAX)
            for v in values):
        raise BadParam(name, f"parameter {name!r} is not a cursor this API gave out; "
                             "pass next_cursor back unchanged")
    return text


def parse_query(query: Mapping[str, str], params: Sequence[Param]) -> dict[str, Any]:
    """Typed values for the declared ``params``; empty strings count as absent."""
    by_name = {p.name: p for p in params}
    for name in query:
        if name not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise BadParam(name, f"unknown parameter {name!r} (this route accepts: {known})")
    out: dict[str, Any] = {}
    for p in params:
        raw = query.get(p.name)
        if raw is None or raw == "":
            if p.default is not None:
                out[p.name] = p.default
            continue
        out[p.name] = p.parse(raw)
    return out


def store_filters(values: Mapping[str, Any], params: Sequence[Param]) -> dict[str, Any]:
    """The parsed values that feed store filters, under the store's names."""
    out: dict[str, Any] = {}
    for p in params:
        if p.store_key and p.name in values:
            out[p.store_key] = values[p.name]
    return out
