"""The Trace page as an AstrBot plugin page: a folder of static files for ``pages/trace/``.

Newer AstrBot releases (4.27.4 and 4.29.3 read for this) show a plugin's
``pages/<name>/index.html`` (4.29: ``views/`` first, ``pages/`` still read) in a sandboxed
iframe of their dashboard. The page reaches its plugin's backend only through the bridge
AstrBot injects (``window.AstrBotPluginPage``), and AstrBot serves the folder's files itself,
under an asset token of its own. So the folder is the
page botrace serves, rendered once from the same templates and static files
(``plugin_page=True``): relative asset URLs, views in the hash, the icon sprite inline. Its
scripts see the bridge and use it (``static/js/mode.js``).

The backend behind it maps each bridge endpoint to botrace's REST API (:func:`bridge_route`,
docs/WEBUI.md, "Inside AstrBot's dashboard")::

    from botrace_webui.plugin_page import write_plugin_page
    write_plugin_page(Path(plugin_dir) / "pages" / "trace")

or ``python -m botrace_webui.plugin_page PLUGIN_DIR/pages/trace``.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import jinja2
from markupsafe import Markup

from botrace_webui.app import STATIC_DIR, TEMPLATE_DIR, _version

__all__ = ["bridge_route", "write_plugin_page"]

#: inlined into index.html instead of copied (see templates/base.html)
SPRITE = "icons.svg"


def write_plugin_page(dest: Path, *, title: str = "Trace") -> list[Path]:
    """Write the Trace page into ``dest`` as a self-contained plugin page folder.

    ``dest`` gets ``index.html`` and ``static/`` (the stylesheet, the icon and the ES
    modules, as botrace serves them); every URL in them is relative and names a file of
    the folder. Existing files are overwritten; others are left alone, so write into a
    fresh folder when building a release. Returns the files written, ``index.html`` first.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    # the settings of create_app's environment, so both render the shell alike
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("index.html").render(
        plugin_page=True, sprite_symbols=_sprite_symbols(), base="./", title=title,
        version=_version(), view="index", chat=False, read_only=False, auth=False)
    index = dest / "index.html"
    index.write_text(html, encoding="utf-8")
    written = [index]
    for src in sorted(STATIC_DIR.rglob("*")):
        if not src.is_file() or src.relative_to(STATIC_DIR).as_posix() == SPRITE:
            continue
        target = dest / "static" / src.relative_to(STATIC_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        written.append(target)
    return written


def _sprite_symbols() -> Markup:
    svg = (STATIC_DIR / SPRITE).read_text(encoding="utf-8")
    inner = re.search(r"<svg\b[^>]*>(.*)</svg>", svg, re.S)
    if inner is None:
        raise ValueError(f"{STATIC_DIR / SPRITE} is not an SVG sprite")
    return Markup(inner.group(1).strip())  # our own file, not data


def bridge_route(method: str, endpoint: str) -> tuple[str, str]:
    """The botrace REST call behind a call of the plugin page's bridge.

    ``method`` is what the dashboard sent (``apiGet``, ``download`` and ``subscribeSSE``
    send GET, ``apiPost`` POST), ``endpoint`` the plugin-local path, what follows
    ``/api/v1/plugins/extensions/<plugin>/``. The page puts botrace's API under ``api/``;
    the bridge has no PUT, so a POST to ``api/config`` is the switch's PUT::

        >>> bridge_route("GET", "api/traces/0af7651916cd43dd8448eb211c80319c")
        ('GET', '/api/v1/traces/0af7651916cd43dd8448eb211c80319c')
        >>> bridge_route("POST", "api/config")
        ('PUT', '/api/v1/config')

    Raises ValueError for an endpoint outside ``api/`` or a method other than GET and POST.
    """
    method = method.upper()
    parts = endpoint.strip("/").split("/")
    if parts[0] != "api" or len(parts) < 2 or any(p in ("", ".", "..") for p in parts[1:]):
        raise ValueError(f"not a botrace API endpoint: {endpoint!r}")
    if method not in ("GET", "POST"):
        raise ValueError(f"the bridge sends GET or POST, not {method}")
    path = "/api/v1/" + "/".join(parts[1:])
    if method == "POST" and parts[1:] == ["config"]:
        return "PUT", path
    return method, path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m botrace_webui.plugin_page",
                                     description="Write the Trace page as an AstrBot plugin page folder.")
    parser.add_argument("dest", type=Path, help="the folder, e.g. <plugin>/pages/trace")
    parser.add_argument("--title", default="Trace")
    args = parser.parse_args(argv)
    for path in write_plugin_page(args.dest, title=args.title):
        print(path)


if __name__ == "__main__":
    main()
