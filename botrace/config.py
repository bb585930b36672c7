"""One typed settings object, read from the host's own configuration mapping.

The host keeps its settings where it always has (AstrBot: ``data/cmd_config.json``);
botrace reads the keys that start with ``trace_`` and ignores everything else::

    >>> s = Settings.from_mapping({"trace_enable": True, "trace_retention_days": 3,
    ...                            "platform": "ignored"})
    >>> (s.trace_enable, s.trace_retention_days)
    (True, 3)

A bad value raises :class:`SettingsError` naming the key and the value, so an
operator sees at once which line of the config file to fix.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from botrace.limits import Limits

__all__ = ["Settings", "SettingsError"]

log = logging.getLogger("botrace.config")


class SettingsError(ValueError):
    """A ``trace_*`` setting has a value botrace cannot use."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key = key
        self.value = value
        super().__init__(f"setting {key!r}: expected {expected}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything botrace can be told, with the defaults an embedded host wants.

    Create it with :meth:`from_mapping`; change it with :meth:`replace`, which
    validates again. Frozen, so a reader never sees half an update.
    """

    #: Record a trace for each incoming message. Flip live with ``Tracer.set_enabled``.
    trace_enable: bool = False

    # -- limits on what one trace may hold (see botrace.limits.Limits) --
    trace_max_spans: int = 10_000
    trace_max_bytes: int = 8 * 1024 * 1024
    trace_max_string: int = 4_096
    trace_max_repr: int = 1_024
    trace_max_depth: int = 8
    trace_max_items: int = 200
    trace_max_traceback_frames: int = 30
    trace_redact: bool = True
    #: Show objects of types botrace does not know by their bounded ``repr`` (off: their
    #: ``<TypeName>``; a ``__repr__`` then never runs on the host's path).
    trace_repr_objects: bool = False
    #: Extra key fragments to redact, on top of the built-in secret names.
    trace_redact_keys: tuple[str, ...] = ()

    # -- the hand-off from the host's path to the sinks --
    trace_queue_size: int = 200_000
    trace_dispatch_interval_ms: int = 50

    # -- store (botrace.store) --
    trace_store_enable: bool = True
    trace_db_path: str = "data/botrace.db"
    trace_retention_days: int = 7
    trace_db_max_mb: int = 512
    #: Where the store writes: "process" (its own writer process, so SQLite and JSON
    #: use another core) or "thread" (in this process; less throughput).
    trace_store_writer: str = "process"

    # -- log exporter (botrace.exporters.logfile) --
    trace_log_enable: bool = False
    trace_log_path: str = "logs/botrace.jsonl"
    trace_log_max_mb: int = 20
    trace_log_backups: int = 3
    trace_log_summary: bool = True

    # -- OTLP / Zipkin exporters --
    trace_service_name: str = "astrbot"
    trace_otlp_endpoint: str = ""
    trace_otlp_protocol: str = "protobuf"
    trace_otlp_headers: Mapping[str, str] = field(default_factory=dict)
    trace_otlp_gzip: bool = True
    #: Put LLM and tool message content in the GenAI attributes (``gen_ai.input.messages``,
    #: ``gen_ai.output.messages``, ``gen_ai.system_instructions``, ``gen_ai.tool.call.*``)
    #: of the OTLP and Zipkin exporters. Opt-in, as the conventions say: it may hold PII.
    trace_otlp_capture_content: bool = False
    trace_zipkin_endpoint: str = ""
    trace_export_batch_size: int = 512
    trace_export_queue_size: int = 20_000

    # -- tail-based sampling (botrace.sampling), decided when a trace's root ends --
    #: Share of the other traces kept (0..1). 1.0 keeps every trace and holds nothing back.
    trace_sample_rate: float = 1.0
    #: Always keep a trace that took at least this long (ms); 0: no such rule.
    trace_keep_slower_than_ms: int = 0
    #: Always keep the traces of these users (the trace's ``user_id``).
    trace_sample_keep_users: tuple[str, ...] = ()
    #: Always keep the traces of these sessions (the trace's ``session_id`` or ``umo``).
    trace_sample_keep_sessions: tuple[str, ...] = ()

    #: Model name -> {"input": $, "cached_input": $, "output": $} per million tokens.
    trace_price_table: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    #: The value-safety limits as one object, derived from the fields above.
    limits: Limits = field(init=False, repr=False, compare=False)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None, /, **overrides: Any) -> Settings:
        """Read the ``trace_*`` keys of a host's config mapping (other keys are ignored).

        Unknown ``trace_*`` keys are logged, not fatal: a host may keep keys of
        its own under the same prefix.
        """
        known = _setting_names()
        values: dict[str, Any] = {}
        for key, value in {**(mapping or {}), **overrides}.items():
            if key in known:
                values[key] = value
            elif isinstance(key, str) and key.startswith("trace_"):
                log.warning("botrace: ignoring unknown setting %r", key)
        return cls(**_validated(values))

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated."""
        unknown = set(changes) - _setting_names()
        if unknown:
            key = sorted(unknown)[0]
            raise SettingsError(key, changes[key], "a known botrace setting")
        return dataclasses.replace(self, **_validated(changes))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view; header values that may hold credentials are masked."""
        out = {name: getattr(self, name) for name in sorted(_setting_names())}
        out["trace_redact_keys"] = list(self.trace_redact_keys)
        out["trace_sample_keep_users"] = list(self.trace_sample_keep_users)
        out["trace_sample_keep_sessions"] = list(self.trace_sample_keep_sessions)
        out["trace_otlp_headers"] = {k: "***" for k in self.trace_otlp_headers}
        out["trace_price_table"] = {k: dict(v) for k, v in self.trace_price_table.items()}
        return out

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", Limits(
            max_string=self.trace_max_string,
            max_repr=self.trace_max_repr,
            max_depth=self.trace_max_depth,
            max_items=self.trace_max_items,
            max_spans=self.trace_max_spans,
            max_trace_bytes=self.trace_max_bytes,
            max_traceback_frames=self.trace_max_traceback_frames,
            redact=self.trace_redact,
            repr_objects=self.trace_repr_objects,
            extra_redact_keys=tuple(self.trace_redact_keys),
        ))


def _setting_names() -> frozenset[str]:
    return frozenset(f.name for f in fields(Settings) if f.init)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise SettingsError(key, value, "true or false")


def _as_int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise SettingsError(key, value, f"an integer >= {minimum}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise SettingsError(key, value, f"an integer >= {minimum}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < minimum:
        raise SettingsError(key, value, f"an integer >= {minimum}")
    return value


def _as_str(key: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SettingsError(key, value, "a string")
    return value


def _as_str_tuple(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in (p.strip() for p in value.split(",")) if v]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise SettingsError(key, value, "a list of strings")
    return tuple(v.lower() for v in value)


def _as_ids(key: str, value: Any) -> tuple[str, ...]:
    """A list of ids (users, sessions): kept as written, case included; a string is split at commas."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise SettingsError(key, value, "a list of strings")
    return tuple(v for v in (v.strip() for v in value) if v)


def _as_fraction(key: str, value: Any) -> float:
    expected = "a number from 0 to 1"
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise SettingsError(key, value, expected) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise SettingsError(key, value, expected)  # (NaN fails the range test too)
    return float(value)


def _as_headers(key: str, value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SettingsError(key, value, "a mapping of header names to strings")
    return dict(value)


def _as_price_table(key: str, value: Any) -> Mapping[str, Mapping[str, float]]:
    if not isinstance(value, Mapping):
        raise SettingsError(key, value, "a mapping of model names to prices")
    table: dict[str, dict[str, float]] = {}
    for model, prices in value.items():
        if not isinstance(model, str) or not isinstance(prices, Mapping):
            raise SettingsError(f"{key}.{model}", prices, "a mapping of input/cached_input/output prices")
        row: dict[str, float] = {}
        for kind, price in prices.items():
            if kind not in ("input", "cached_input", "output"):
                raise SettingsError(f"{key}.{model}.{kind}", price, "one of input, cached_input, output")
            if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
                raise SettingsError(f"{key}.{model}.{kind}", price, "a non-negative number")
            row[kind] = float(price)
        table[model] = row
    return table


_MINIMUMS = {
    "trace_max_spans": 1, "trace_max_bytes": 1024, "trace_max_string": 16, "trace_max_repr": 16,
    "trace_max_depth": 1, "trace_max_items": 1, "trace_queue_size": 16,
    "trace_dispatch_interval_ms": 1, "trace_export_batch_size": 1, "trace_export_queue_size": 16,
}


def _validated(values: Mapping[str, Any]) -> dict[str, Any]:
    types = {f.name: f.type for f in fields(Settings) if f.init}
    out: dict[str, Any] = {}
    for key, value in values.items():
        kind = types[key]
        if kind == "bool":
            out[key] = _as_bool(key, value)
        elif kind == "int":
            out[key] = _as_int(key, value, _MINIMUMS.get(key, 0))
        elif kind == "str":
            out[key] = _as_str(key, value)
        elif kind == "float":
            out[key] = _as_fraction(key, value)
        elif key in ("trace_sample_keep_users", "trace_sample_keep_sessions"):
            out[key] = _as_ids(key, value)
        elif key == "trace_redact_keys":
            out[key] = _as_str_tuple(key, value)
        elif key == "trace_otlp_headers":
            out[key] = _as_headers(key, value)
        elif key == "trace_price_table":
            out[key] = _as_price_table(key, value)
        else:  # pragma: no cover - a new field without a validator is a bug
            raise AssertionError(f"no validator for {key}")
    writer = out.get("trace_store_writer")
    if writer is not None and writer not in ("process", "thread"):
        raise SettingsError("trace_store_writer", writer, "'process' or 'thread'")
    protocol = out.get("trace_otlp_protocol")
    if protocol is not None and protocol not in ("protobuf", "json"):
        raise SettingsError("trace_otlp_protocol", protocol, "'protobuf' or 'json'")
    return out
