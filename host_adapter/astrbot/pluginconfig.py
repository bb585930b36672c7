"""The botrace AstrBot plugin's settings: its ``_conf_schema.json`` and their meaning.

An operator edits them in AstrBot's dashboard (the plugin's settings);
AstrBot keeps them in ``data/config/astrbot_plugin_botrace_config.json`` and
hands them to the plugin. One table below is the single source of truth for
the schema AstrBot shows (descriptions, hints, defaults) and for how each
option maps to a botrace setting. ``trace_enable`` is not here: it stays
AstrBot's own key, switched from AstrBot's Trace page or botrace's.

>>> settings, page = read_plugin_config({"store": {"retention_days": 3}}, data_dir="/srv/d")
>>> settings["trace_retention_days"], settings["trace_db_path"], page.port
(3, '/srv/d/botrace.db', 6196)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botrace.config import Settings, SettingsError
from botrace_webui.app import is_loopback

__all__ = ["OPTIONS", "Option", "PageOptions", "PluginConfigError", "conf_schema",
           "read_plugin_config"]


class PluginConfigError(ValueError):
    """A plugin setting has a value botrace cannot use; the message names it."""


@dataclass(frozen=True)
class Option:
    """One setting: where it sits in the plugin's config and what it means."""

    group: str
    key: str
    type: str            # AstrBot schema type: bool, int, float, string, text, list
    default: Any
    description: str
    hint: str = ""
    #: the botrace setting it sets (None: the plugin's own, e.g. the page's port)
    setting: str | None = None
    options: tuple[str, ...] = ()
    #: text holding JSON (AstrBot 4.14 has no dict type in plugin schemas)
    json: bool = False

    @property
    def path(self) -> str:
        return f"{self.group}.{self.key}"


_GROUPS = {
    "page": "Trace page",
    "store": "Trace store",
    "limits": "What a trace may hold",
    "export": "Export",
    "sampling": "Sampling (busy bots)",
}

OPTIONS: tuple[Option, ...] = (
    Option("page", "enable", "bool", True, "Serve the Trace page on its own port",
           "Open http://127.0.0.1:<port>/ on the AstrBot machine (or through an SSH tunnel). "
           "Newer AstrBot releases also show the page in the plugin's detail page, behind "
           "AstrBot's login."),
    Option("page", "host", "string", "127.0.0.1", "Address the Trace page listens on",
           "Keep 127.0.0.1 unless you set a token: traces hold your users' messages."),
    Option("page", "port", "int", 6196, "Port of the Trace page"),
    Option("page", "token", "string", "", "Token the Trace page asks for",
           "Needed for any address other than 127.0.0.1; empty: no login."),
    Option("page", "allowed_hosts", "list", [], "Host names the page answers to, besides "
           "127.0.0.1 and localhost",
           "Without a token the page refuses requests addressed to any other name (a web page "
           "you visit cannot reach it by DNS rebinding); list the name a reverse proxy passes."),
    Option("store", "retention_days", "int", 7, "Keep traces this many days",
           setting="trace_retention_days"),
    Option("store", "db_max_mb", "int", 512, "Largest size of the trace database (MB)",
           "Oldest whole traces are pruned first.", setting="trace_db_max_mb"),
    Option("store", "db_path", "string", "", "Trace database file",
           "Empty: botrace.db in AstrBot's data/plugin_data/astrbot_plugin_botrace/.",
           setting="trace_db_path"),
    Option("store", "writer", "string", "process", "Who writes the database",
           "process: a writer process of its own (another core); thread: a thread in "
           "AstrBot's process.", setting="trace_store_writer", options=("process", "thread")),
    Option("limits", "max_spans", "int", 10_000, "Most spans one trace keeps",
           "Spans over the budget are dropped and counted on the trace.",
           setting="trace_max_spans"),
    Option("limits", "max_string", "int", 4_096, "Longest text kept in a span value",
           "Longer text is cut with a visible …[+N chars].", setting="trace_max_string"),
    Option("limits", "redact_keys", "list", [], "Extra key names to redact",
           "api_key, token, password, secret, authorization, cookie … always are.",
           setting="trace_redact_keys"),
    Option("export", "jsonl_enable", "bool", False,
           "Also write every span to a JSON-lines file",
           "botrace.jsonl in the plugin's data folder, rotated.", setting="trace_log_enable"),
    Option("export", "jsonl_max_mb", "int", 20, "Size of one JSON-lines file before rotation (MB)",
           setting="trace_log_max_mb"),
    Option("export", "otlp_endpoint", "string", "",
           "OpenTelemetry (OTLP/HTTP) endpoint to ship spans to",
           "e.g. http://127.0.0.1:4318/v1/traces (Jaeger, Tempo, Phoenix, a Collector).",
           setting="trace_otlp_endpoint"),
    Option("export", "otlp_protocol", "string", "protobuf", "OTLP encoding",
           setting="trace_otlp_protocol", options=("protobuf", "json")),
    Option("export", "otlp_headers", "text", "{}", "OTLP request headers (JSON object)",
           'e.g. {"Authorization": "Bearer …"}', setting="trace_otlp_headers", json=True),
    Option("export", "otlp_gzip", "bool", True, "Compress OTLP requests (gzip)",
           setting="trace_otlp_gzip"),
    Option("export", "capture_content", "bool", False,
           "Export message content (prompts, replies, tool arguments)",
           "Adds the GenAI message attributes to OTLP and Zipkin exports; off by default "
           "because they may hold your users' personal data.",
           setting="trace_otlp_capture_content"),
    Option("export", "service_name", "string", "astrbot",
           "Service name in exported spans (also the Phoenix project)",
           setting="trace_service_name"),
    Option("export", "zipkin_endpoint", "string", "", "Zipkin v2 endpoint to ship spans to",
           "e.g. http://127.0.0.1:9411/api/v2/spans", setting="trace_zipkin_endpoint"),
    Option("export", "price_table", "text", "{}", "Model prices for cost columns (JSON)",
           '{"model": {"input": 0.15, "cached_input": 0.075, "output": 0.6}} per million '
           "tokens.", setting="trace_price_table", json=True),
    Option("sampling", "rate", "float", 1.0, "Share of ordinary traces kept (0 to 1)",
           "1 keeps every trace. Below 1, a trace is decided when its message is done "
           "(it appears on the page then, not while it runs): failed, slow and forced "
           "traces are always kept, the rest at this rate.", setting="trace_sample_rate"),
    Option("sampling", "keep_slower_than_ms", "int", 0,
           "Always keep a trace that took at least this long (ms)", "0: no such rule.",
           setting="trace_keep_slower_than_ms"),
    Option("sampling", "keep_users", "list", [], "Always keep these users' traces",
           "Sender ids, as the page shows them under User.", setting="trace_sample_keep_users"),
    Option("sampling", "keep_sessions", "list", [], "Always keep these sessions' traces",
           "Session ids or unified message origins (platform:type:id).",
           setting="trace_sample_keep_sessions"),
)


@dataclass(frozen=True)
class PageOptions:
    """Where the plugin serves the Trace page of its own."""

    enable: bool = True
    host: str = "127.0.0.1"
    port: int = 6196
    token: str = ""
    allowed_hosts: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def conf_schema() -> dict[str, Any]:
    """The plugin's ``_conf_schema.json``: one object per group, in the table's order."""
    schema: dict[str, Any] = {}
    for option in OPTIONS:
        group = schema.setdefault(option.group, {
            "type": "object", "description": _GROUPS[option.group], "items": {}})
        item: dict[str, Any] = {"type": option.type, "description": option.description,
                                "default": option.default}
        if option.hint:
            item["hint"] = option.hint
        if option.options:
            item["options"] = list(option.options)
        group["items"][option.key] = item
    return schema


def read_plugin_config(config: Mapping[str, Any] | None, *,
                       data_dir: str) -> tuple[dict[str, Any], PageOptions]:
    """botrace settings (``trace_*`` names) and the page's options from the plugin config.

    Missing options take their defaults; paths default into ``data_dir``. Raises
    :class:`PluginConfigError` naming the option (``store.retention_days``) and the value.
    """
    config = config or {}
    values: dict[str, Any] = {}
    page: dict[str, Any] = {}
    for option in OPTIONS:
        group = config.get(option.group)
        raw = group.get(option.key, option.default) if isinstance(group, Mapping) else option.default
        value = _parse_json(option, raw) if option.json else raw
        if option.setting is not None:
            values[option.setting] = value
        else:
            page[option.key] = value
    if not values.get("trace_db_path"):
        values["trace_db_path"] = os.path.join(data_dir, "botrace.db")
    values["trace_log_path"] = os.path.join(data_dir, "botrace.jsonl")
    try:
        Settings.from_mapping(values)  # validates every value, names the first bad one
    except SettingsError as exc:
        option = next((o for o in OPTIONS if o.setting == exc.key.split(".")[0]), None)
        where = exc.key if option is None else option.path + exc.key[len(option.setting or ""):]
        raise PluginConfigError(f"botrace plugin setting {where}: {_expected(exc)}") from None
    return values, _page_options(page)


def _parse_json(option: Option, raw: Any) -> Any:
    if isinstance(raw, Mapping):
        return dict(raw)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        return json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise PluginConfigError(f"botrace plugin setting {option.path}: expected a JSON object, "
                                f"got {raw!r} ({exc})") from None


def _expected(exc: SettingsError) -> str:
    return str(exc).split(": ", 1)[1] if ": " in str(exc) else str(exc)


def _page_options(page: Mapping[str, Any]) -> PageOptions:
    enable = page.get("enable", True)
    host = page.get("host") or "127.0.0.1"
    port = page.get("port", 6196)
    token = page.get("token") or ""
    allowed = page.get("allowed_hosts") or []
    if not isinstance(enable, bool):
        raise PluginConfigError(f"botrace plugin setting page.enable: expected true or false, "
                                f"got {enable!r}")
    if not isinstance(host, str):
        raise PluginConfigError(f"botrace plugin setting page.host: expected an address, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise PluginConfigError(f"botrace plugin setting page.port: expected a port number "
                                f"0-65535, got {port!r}")
    if not isinstance(token, str):
        raise PluginConfigError(f"botrace plugin setting page.token: expected a string, got {token!r}")
    if not isinstance(allowed, list) or not all(isinstance(h, str) and h for h in allowed):
        raise PluginConfigError(f"botrace plugin setting page.allowed_hosts: expected a list of "
                                f"host names, got {allowed!r}")
    if enable and not token and not is_loopback(host):
        raise PluginConfigError(f"botrace plugin setting page.host: {host} is reachable from "
                                "other machines; set page.token too, or use 127.0.0.1")
    return PageOptions(enable=enable, host=host, port=port, token=token,
                       allowed_hosts=tuple(allowed))
