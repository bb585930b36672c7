"""The ``botrace`` command: one dispatcher, subcommands from plugins.

Each subcommand is contributed through the ``botrace_register_commands`` hook
(as Datasette's ``register_commands``): the core's own (``prune``, ``export``,
``stats``, ``hooks``), the web UI's ``serve``, the host adapter's ``demo``, and any
third party's, loaded from the ``botrace`` entry-point group.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

import pluggy

from botrace import hookspecs
from botrace.hookspecs import hookimpl

__all__ = ["build_parser", "main"]

#: The core's own command modules, registered like any plugin (when importable).
DEFAULT_COMMAND_PLUGINS = ("botrace.commands",)


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("botrace")
    pm.add_hookspecs(hookspecs)
    pm.register(sys.modules[__name__], name="botrace.cli")
    for module_name in DEFAULT_COMMAND_PLUGINS:
        try:
            pm.register(importlib.import_module(module_name), name=module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
    pm.load_setuptools_entrypoints("botrace")
    return pm


def build_parser(pm: pluggy.PluginManager | None = None) -> argparse.ArgumentParser:
    pm = pm or plugin_manager()
    parser = argparse.ArgumentParser(
        prog="botrace", description="Hierarchical, plugin-aware tracing for chatbot hosts.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    pm.hook.botrace_register_commands(subparsers=subparsers)
    parser.set_defaults(pm=pm)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


@hookimpl
def botrace_register_commands(subparsers: argparse._SubParsersAction) -> None:
    hooks = subparsers.add_parser("hooks", help="list botrace's hooks and who implements them")
    hooks.set_defaults(func=_list_hooks)


def _list_hooks(args: argparse.Namespace) -> int:
    from botrace.tracer import Tracer

    tracer = Tracer()
    for name in sorted(n for n in dir(tracer.pm.hook) if n.startswith("botrace_")):
        impls = [impl.plugin_name for impl in getattr(tracer.pm.hook, name).get_hookimpls()]
        print(f"{name}: {', '.join(impls) or '-'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
