"""Declared query parameters: one table drives validation, the store's filters and OpenAPI.

Each API route lists its :class:`Param` s. :func:`parse_query` turns a request's
query string into typed values or raises :class:`BadParam` naming the first bad
parameter (unknown names included), which the API answers with a 400.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["BadParam", "Param", "parse_query", "parse_time"]

SPAN_TYPES = ("message", "pipeline_stage", "plugin_call", "llm_call", "tool_call",
              "subagent_call", "io_call", "custom")
TRACE_STATUSES = ("ok", "error", "cancelled", "running", "interrupted")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


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
    (relative like ``15m``/``24h``/``7d``, or ISO 8601; becomes ns since the
    epoch) or ``event_id``. ``store_key`` names the store filter the value
    feeds (None: the handler uses it itself).
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
            out = {"type": "string", "description": "relative (15m, 24h, 7d) or ISO 8601"}
        else:
            out = {"type": "string", "maxLength": self.max_length}
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
        raise AssertionError(f"unknown param kind {self.kind}")  # pragma: no cover

    def _check_range(self, value: float) -> None:
        if self.minimum is not None and value < self.minimum:
            raise BadParam(self.name, f"parameter {self.name!r} must be at least {self.minimum:g}, got {value:g}")
        if self.maximum is not None and value > self.maximum:
            raise BadParam(self.name, f"parameter {self.name!r} must be at most {self.maximum:g}, got {value:g}")


def parse_time(name: str, raw: str, *, now_ns: int | None = None) -> int:
    """``15m`` / ``24h`` / ``7d`` (ago), ISO 8601, or an integer of ns since the epoch.

    >>> parse_time("since", "1970-01-01T00:00:01Z")
    1000000000
    """
    text = raw.strip()
    now_ns = time.time_ns() if now_ns is None else now_ns
    m = _RELATIVE.match(text)
    if m:
        return now_ns - int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1_000_000_000)
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadParam(name, f"parameter {name!r} must be a time like 15m, 24h, 7d or ISO 8601; got {raw!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000) * 1000


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
