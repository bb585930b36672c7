"""The web UI's contribution to the ``botrace`` command: ``serve``.

Loaded through the ``botrace`` entry-point group (``webui = "botrace_webui.commands"``)
like the host adapter's ``demo``, so the core never names the web UI: without it
installed there is simply no ``serve``. It stays cheap to import: aiohttp and the app
are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from botrace.hookspecs import hookimpl

__all__ = ["botrace_register_commands", "cmd_serve"]


@hookimpl
def botrace_register_commands(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="serve the Trace tab for a database, read-only",
        description="Open a trace database read-only and serve the Trace page for it (127.0.0.1 "
                    "unless given a token); traces another process writes show up live.")
    serve.add_argument("--db", default="data/botrace.db",
                       help="path of the trace database (default data/botrace.db)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--token", default=None,
                       help="require this bearer token (needed for a non-loopback --host)")
    serve.add_argument("--allowed-host", action="append", default=None, metavar="NAME",
                       dest="allowed_hosts",
                       help="without a token, also answer requests for this host name "
                            "(repeatable; loopback names always are)")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from botrace.store import StoreError
    from botrace_webui.app import serve

    try:
        serve(args.db, host=args.host, port=args.port, token=args.token,
              allowed_hosts=args.allowed_hosts)
    except (StoreError, ValueError) as exc:
        print(f"botrace serve: {exc}", file=sys.stderr)
        return 1
    return 0
