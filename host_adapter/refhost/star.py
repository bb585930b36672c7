"""Plugins ("stars"): metadata, handler registry and the star manager.

A plugin is a module holding one :class:`Star` subclass decorated with
``@register(...)``; its methods carry ``filter`` decorators (see
:mod:`botrace_host_adapter.refhost.api`). Loading a plugin imports its module,
instantiates the class with the host's :class:`~botrace_host_adapter.refhost.context.Context`,
and records every handler, LLM tool and subagent it declares, each keeping
the module path it came from — that module path is what tracing attributes
spans by. Unloading removes all of them; reloading re-imports the module, so
the new code (and new metadata) is what runs and what spans are attributed to.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import logging
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botrace_host_adapter.refhost.context import Context

__all__ = [
    "Agent",
    "EventType",
    "FunctionTool",
    "Star",
    "StarHandlerMetadata",
    "StarManager",
    "StarMetadata",
]

log = logging.getLogger("refhost.star")


class EventType(enum.StrEnum):
    """When a handler runs (AstrBot's ``EventType`` names)."""

    AdapterMessageEvent = "AdapterMessageEvent"
    OnLLMRequestEvent = "OnLLMRequestEvent"
    OnLLMResponseEvent = "OnLLMResponseEvent"
    OnUsingLLMToolEvent = "OnUsingLLMToolEvent"
    OnLLMToolRespondEvent = "OnLLMToolRespondEvent"


class Star:
    """Base class of a plugin. Override :meth:`initialize` / :meth:`terminate` as needed."""

    def __init__(self, context: Context) -> None:
        self.context = context

    async def initialize(self) -> None:
        """Called once after the plugin is loaded."""

    async def terminate(self) -> None:
        """Called once before the plugin is unloaded (also on reload)."""


@dataclass(slots=True)
class StarMetadata:
    name: str
    author: str
    desc: str
    version: str
    display_name: str
    module_path: str
    #: The plugin's package (``botrace_plugins_example.weather`` for ``botrace_plugins_example.weather.main``):
    #: every module under it belongs to the plugin.
    package: str
    reserved: bool = False  # builtin
    instance: Star | None = None
    handlers: list[StarHandlerMetadata] = field(default_factory=list)
    tools: list[FunctionTool] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)


@dataclass(slots=True)
class StarHandlerMetadata:
    event_type: EventType
    handler_full_name: str
    handler_name: str
    handler_module_path: str
    handler: Callable[..., Any]
    #: Message filters (``command`` / ``regex`` / ``all``) for AdapterMessageEvent handlers.
    command: str | None = None
    aliases: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    match_all: bool = False
    priority: int = 0
    desc: str = ""
    plugin_name: str = ""
    #: ``Class.method``, the name the handler's span gets.
    display_name: str = ""

    def matches(self, text: str, is_command: bool) -> bool:
        """Whether this message handler applies to ``text`` (wake prefix already stripped)."""
        if self.command is not None:
            if not is_command:
                return False
            word = text.split(maxsplit=1)[0] if text else ""
            return word == self.command or word in self.aliases
        if self.regex is not None:
            return self.regex.search(text) is not None
        return self.match_all


@dataclass(slots=True)
class FunctionTool:
    """A tool the LLM may call. ``handler_module_path`` maps it to its plugin."""

    name: str
    description: str
    parameters: dict[str, Any]
    handler: Callable[..., Awaitable[Any]] | None
    handler_module_path: str
    #: Only this subagent may call the tool (None: the main agent).
    agent: str | None = None
    plugin_name: str = ""

    def schema(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description,
                         "parameters": self.parameters},
        }


@dataclass(slots=True)
class Agent:
    """A subagent: the main agent hands off to it through ``transfer_to_<name>``."""

    name: str
    instructions: str
    description: str = ""
    max_steps: int = 6
    plugin_name: str = ""
    module_path: str = ""

    @property
    def handoff_tool_name(self) -> str:
        return f"transfer_to_{self.name}"


# -- markers put on functions by the ``filter`` decorators --------------------------------

_MARK = "__refhost_handler__"


def mark(fn: Callable[..., Any], **spec: Any) -> Callable[..., Any]:
    specs = fn.__dict__.setdefault(_MARK, [])
    specs.append(spec)
    return fn


_DOC_ARG = re.compile(r"^\s*(\w+)\s*\((\w+)\)\s*:\s*(.*)$")
_JSON_TYPES = {"string": "string", "str": "string", "number": "number", "float": "number",
               "int": "integer", "integer": "integer", "bool": "boolean", "boolean": "boolean",
               "array": "array", "list": "array", "object": "object", "dict": "object"}


def tool_from_docstring(fn: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """Description and JSON-schema parameters from a tool's docstring.

    As in AstrBot, the first paragraph describes the tool and an ``Args:``
    section lists ``name(type): description`` lines.
    """
    doc = inspect.getdoc(fn) or ""
    head, _, rest = doc.partition("Args:")
    props: dict[str, Any] = {}
    for line in rest.splitlines():
        m = _DOC_ARG.match(line)
        if m:
            props[m[1]] = {"type": _JSON_TYPES.get(m[2].lower(), "string"), "description": m[3]}
    params = inspect.signature(fn).parameters
    required = [n for n in props if n in params and params[n].default is inspect.Parameter.empty]
    return " ".join(head.split()), {"type": "object", "properties": props, "required": required}


# -- the manager -------------------------------------------------------------------------


class StarManager:
    """Loads, unloads and reloads plugins, and keeps the handler/tool/agent registries.

    ``on_loaded`` / ``on_unloaded`` are told about every change (the host
    uses them to keep tracing's plugin attribution in step).
    """

    def __init__(
        self,
        context: Context,
        on_loaded: Callable[[StarMetadata], None] | None = None,
        on_unloaded: Callable[[StarMetadata], None] | None = None,
    ) -> None:
        self.context = context
        self.star_map: dict[str, StarMetadata] = {}  # module path -> metadata
        self.on_loaded = on_loaded
        self.on_unloaded = on_unloaded
        self._builtin: dict[str, bool] = {}

    # -- queries --
    def get(self, name: str) -> StarMetadata | None:
        for meta in self.star_map.values():
            if meta.name == name:
                return meta
        return None

    def handlers(self, event_type: EventType) -> list[StarHandlerMetadata]:
        found = [h for m in self.star_map.values() for h in m.handlers if h.event_type is event_type]
        found.sort(key=lambda h: -h.priority)
        return found

    def tools(self, agent: str | None = None) -> list[FunctionTool]:
        return [t for m in self.star_map.values() for t in m.tools if t.agent == agent]

    def agents(self) -> list[Agent]:
        return [a for m in self.star_map.values() for a in m.agents]

    def plugin_of_module(self, module_path: str) -> StarMetadata | None:
        """The loaded plugin whose package contains ``module_path`` (longest match)."""
        best: StarMetadata | None = None
        for meta in self.star_map.values():
            pkg = meta.package
            if (module_path == pkg or module_path.startswith(pkg + ".")) and (
                best is None or len(pkg) > len(best.package)
            ):
                best = meta
        return best

    # -- lifecycle --
    async def load(self, module_path: str, *, builtin: bool = False, reload: bool = False) -> StarMetadata:
        """Import ``module_path`` and register the plugin it defines."""
        if module_path in self.star_map:
            raise ValueError(f"plugin module {module_path!r} is already loaded")
        if reload and module_path in sys.modules:
            _purge_modules(_package_of(module_path))
        module = importlib.import_module(module_path)
        cls = _find_star_class(module)
        info = cls.__star_info__
        meta = StarMetadata(
            name=info["name"], author=info["author"], desc=info["desc"], version=info["version"],
            display_name=info.get("display_name") or info["name"], module_path=module_path,
            package=_package_of(module_path), reserved=builtin,
        )
        if self.get(meta.name) is not None:
            raise ValueError(f"a plugin named {meta.name!r} is already loaded")
        instance = cls(self.context)
        meta.instance = instance
        self._collect(meta, cls, instance)
        self.star_map[module_path] = meta
        self._builtin[module_path] = builtin
        if self.on_loaded is not None:
            self.on_loaded(meta)
        await instance.initialize()
        log.info("loaded plugin %s %s (%s)", meta.name, meta.version, module_path)
        return meta

    async def unload(self, name: str) -> StarMetadata:
        meta = self.get(name)
        if meta is None:
            raise KeyError(f"no plugin named {name!r}")
        try:
            if meta.instance is not None:
                await meta.instance.terminate()
        finally:
            del self.star_map[meta.module_path]
            if self.on_unloaded is not None:
                self.on_unloaded(meta)
        log.info("unloaded plugin %s", name)
        return meta

    async def reload(self, name: str) -> StarMetadata:
        """Unload, re-import the plugin's modules from disk, load again."""
        meta = await self.unload(name)
        return await self.load(meta.module_path, builtin=meta.reserved, reload=True)

    def _collect(self, meta: StarMetadata, cls: type, instance: Star) -> None:
        for attr, fn in inspect.getmembers(cls, callable):
            for spec in getattr(fn, _MARK, ()):
                bound = getattr(instance, attr)
                kind = spec["kind"]
                if kind == "llm_tool":
                    desc, params = tool_from_docstring(fn)
                    meta.tools.append(FunctionTool(
                        name=spec.get("name") or fn.__name__, description=desc, parameters=params,
                        handler=bound, handler_module_path=meta.package, agent=spec.get("agent"),
                        plugin_name=meta.name,
                    ))
                    continue
                h = StarHandlerMetadata(
                    event_type=spec["event_type"],
                    handler_full_name=f"{fn.__module__}_{fn.__qualname__}",
                    handler_name=fn.__name__,
                    handler_module_path=fn.__module__,
                    handler=bound,
                    priority=spec.get("priority", 0),
                    desc=(inspect.getdoc(fn) or "").split("\n", 1)[0],
                    plugin_name=meta.name,
                    display_name=fn.__qualname__,
                )
                if kind == "command":
                    h.command, h.aliases = spec["command"], tuple(spec.get("alias") or ())
                elif kind == "regex":
                    h.regex = re.compile(spec["pattern"])
                elif kind == "all":
                    h.match_all = True
                meta.handlers.append(h)
        for agent in getattr(cls, "agents", ()) or ():
            meta.agents.append(dataclasses.replace(agent, plugin_name=meta.name,
                                                   module_path=meta.package))


def _find_star_class(module: Any) -> type:
    for obj in vars(module).values():
        if inspect.isclass(obj) and issubclass(obj, Star) and "__star_info__" in obj.__dict__:
            return obj
    raise ValueError(f"module {module.__name__!r} defines no @register(...) Star class")


def _package_of(module_path: str) -> str:
    """``botrace_plugins_example.weather.main`` → ``botrace_plugins_example.weather`` (AstrBot's tool path)."""
    head, _, last = module_path.rpartition(".")
    return head if head and last == "main" else module_path


def _purge_modules(package: str) -> None:
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()
