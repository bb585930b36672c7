"""The host adapter's contributions to the ``botrace`` command: ``demo`` and ``astrbot-plugin``.

Loaded through the ``botrace`` entry-point group (``host_adapter =
"botrace_host_adapter.commands"``), so it must stay cheap to import: the demo's
modules are imported only when the command runs.
"""

from __future__ import annotations

import argparse

from botrace.hookspecs import hookimpl

__all__ = ["botrace_register_commands"]


@hookimpl
def botrace_register_commands(subparsers: argparse._SubParsersAction) -> None:
    from botrace_host_adapter import demo

    p = subparsers.add_parser(
        "demo", help="run the reference chatbot host with example plugins and the Trace page",
        description="Start the reference host (example plugins, scripted offline LLM, tracing "
                    "on), serve the Trace page on 127.0.0.1 and drive synthetic conversations.")
    demo.add_arguments(p)
    p.set_defaults(func=demo.main)

    from botrace_host_adapter.astrbot import package

    p = subparsers.add_parser(
        "astrbot-plugin", help="write the botrace plugin for AstrBot (a folder, or a zip to upload)",
        description="Write the botrace AstrBot plugin: a folder to put into AstrBot's "
                    "data/plugins/, or (--zip) a zip to upload in AstrBot's dashboard. It "
                    "carries this botrace's code, so AstrBot needs nothing else installed.")
    package.add_arguments(p)
    p.set_defaults(func=package.main)
