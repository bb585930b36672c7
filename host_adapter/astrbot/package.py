"""``botrace astrbot-plugin``: write the botrace AstrBot plugin, as a folder or a zip.

The plugin is self-contained, so a stock AstrBot (Docker included) takes it the
way it takes any plugin — upload the zip in the dashboard (Extensions › + › Install
From File), or put the folder into ``data/plugins/``:

    astrbot_plugin_botrace/
        main.py               the Star (plugin_files/main.py)
        metadata.yaml         name, version, description with the page's address
        CHANGELOG.md          what this version brings (AstrBot shows it)
        _conf_schema.json     the settings AstrBot's dashboard shows (pluginconfig.py)
        requirements.txt      botrace's dependencies; AstrBot installs them
        README.md
        pages/trace/          the Trace page for AstrBot's plugin pages (newer releases)
        _vendor/              botrace, botrace_webui, botrace_host_adapter (the parts AstrBot needs)

``_vendor/`` holds this installation's own code, so the plugin runs the same
botrace that wrote it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import botrace
import botrace_host_adapter
import botrace_webui
from botrace_host_adapter.astrbot.plugin import PLUGIN_NAME
from botrace_host_adapter.astrbot.pluginconfig import conf_schema

__all__ = ["REQUIREMENTS", "add_arguments", "main", "write_plugin", "write_plugin_zip"]

#: botrace's run-time dependencies (pyproject.toml's; a test keeps them the same)
REQUIREMENTS = ("pluggy>=1.3", "aiohttp>=3.9", "aiosqlite>=0.19", "jinja2>=3.1")

_HERE = Path(__file__).resolve().parent
#: the host adapter's modules the plugin needs (not the reference host or the demo)
_ADAPTER_PARTS = ("__init__.py", "emitter.py", "hooks.py", "configfile.py", "astrbot")

_README = """# botrace for AstrBot

A live span tree of every message AstrBot handles: every pipeline stage, every
plugin handler and event hook (coloured by plugin, builtin or third-party),
every LLM call with model and tokens, every tool call with the plugin that owns
it, every subagent handoff — with timings, inputs, outputs and errors.

1. Install: upload `{name}.zip` in AstrBot's dashboard (Extensions › + › Install From
   File), or put this folder into `data/plugins/` and restart AstrBot.
2. Switch tracing on with AstrBot's own Trace switch (`trace_enable`), or the
   switch on the Trace page; both stay in step.
3. Open the Trace page: http://127.0.0.1:6196/ on the AstrBot machine (the
   address is logged at start; change it in the plugin's settings), or, in
   AstrBot releases with plugin pages, from the plugin's detail page.

Traces are kept in `data/plugin_data/{name}/botrace.db` ({days} days by
default). botrace {version}.
"""

_CHANGELOG = """# Changelog

## {version}

- The plugin carries botrace {version}: one span tree per message (stages, plugin
  handlers and event hooks credited to their plugins, LLM calls with model and tokens,
  tool calls with their results, subagent handoffs), the Trace page on its own port and
  in AstrBot's dashboard, and AstrBot's own Trace switch followed both ways.
"""


def write_plugin(dest: str | Path, *, overwrite: bool = False) -> Path:
    """Write the plugin folder ``<dest>/astrbot_plugin_botrace``; returns its path.

    ``dest`` is e.g. AstrBot's ``data/plugins``. An existing plugin folder is
    replaced only with ``overwrite``.
    """
    folder = Path(dest) / PLUGIN_NAME
    if folder.exists():
        if not overwrite:
            raise FileExistsError(f"{folder} exists (use --force to replace it)")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copyfile(_HERE / "plugin_files" / "main.py", folder / "main.py")
    (folder / "metadata.yaml").write_text(_metadata(), encoding="utf-8")
    (folder / "_conf_schema.json").write_text(
        json.dumps(conf_schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "requirements.txt").write_text("\n".join(REQUIREMENTS) + "\n", encoding="utf-8")
    (folder / "CHANGELOG.md").write_text(_CHANGELOG.format(version=botrace.__version__),
                                         encoding="utf-8")
    (folder / "README.md").write_text(_README.format(
        name=PLUGIN_NAME, days=7, version=botrace.__version__), encoding="utf-8")
    _write_page(folder / "pages" / "trace")
    vendor = folder / "_vendor"
    _copy_package(Path(botrace.__file__).parent, vendor / "botrace")
    _copy_package(Path(botrace_webui.__file__).parent, vendor / "botrace_webui")
    adapter_src = Path(botrace_host_adapter.__file__).parent
    for part in _ADAPTER_PARTS:
        src = adapter_src / part
        target = vendor / "botrace_host_adapter" / part
        if src.is_dir():
            _copy_package(src, target, skip=("plugin_files",))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
    return folder


def write_plugin_zip(dest: str | Path) -> Path:
    """Write ``<dest>/astrbot_plugin_botrace.zip`` for AstrBot's "install from file".

    AstrBot names the plugin's folder after the zip and moves the zip's *first*
    entry's contents into it, so the folder's own entry comes first.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{PLUGIN_NAME}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_plugin(tmp)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{PLUGIN_NAME}/", "")
            for path in sorted(folder.rglob("*")):
                arcname = f"{PLUGIN_NAME}/{path.relative_to(folder).as_posix()}"
                if path.is_dir():
                    zf.writestr(arcname + "/", "")
                else:
                    zf.write(path, arcname)
    return target


def _metadata() -> str:
    lines = {
        "name": PLUGIN_NAME,
        "display_name": "botrace · Trace",
        "desc": ("A live span tree of every message: stages, plugin handlers and hooks, LLM "
                 "calls with tokens, tools and subagents. Switch it with AstrBot's Trace switch. "
                 "The Trace page: in the dashboard's sidebar where AstrBot shows plugin pages, "
                 "and at http://127.0.0.1:6196/ (settings › Trace page)."),
        "version": botrace.__version__,
        "author": "botrace",
        "astrbot_version": ">=4.14",
    }
    return "".join(f"{k}: {json.dumps(v, ensure_ascii=False)}\n" for k, v in lines.items())


def _write_page(target: Path) -> None:
    from botrace_webui.plugin_page import write_plugin_page

    write_plugin_page(target, title="Trace")


def _copy_package(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *skip))


# -- the command -----------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=".", metavar="DIR",
                   help="where to write it, e.g. AstrBot's data/plugins (default: here)")
    p.add_argument("--zip", action="store_true",
                   help=f"write {PLUGIN_NAME}.zip, for AstrBot's dashboard (Extensions › + › Install "
                        "From File), instead of the folder")
    p.add_argument("--force", action="store_true", help="replace an existing plugin folder")


def main(args: argparse.Namespace) -> int:
    try:
        path = write_plugin_zip(args.out) if args.zip else write_plugin(args.out, overwrite=args.force)
    except (OSError, FileExistsError) as exc:
        print(f"botrace astrbot-plugin: {exc}", flush=True)
        return 2
    what = "upload it in AstrBot's dashboard (Extensions › + › Install From File)" if args.zip else \
        "it is AstrBot's plugin folder: put it into data/plugins/ (or write it there with --out)"
    print(f"botrace astrbot-plugin: wrote {path}; {what}, then switch on AstrBot's Trace switch "
          "and open http://127.0.0.1:6196/", flush=True)
    return 0
