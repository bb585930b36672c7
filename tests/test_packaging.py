"""The distribution installs every package, each under a botrace-specific name."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_folder_is_installed_under_its_mapped_name():
    config = _setuptools()
    folder_of = {"botrace": "botrace", **config["package-dir"]}
    expected = set()
    for name, folder in folder_of.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            expected.add(".".join((name, *rel.parts)))
    assert set(config["packages"]) == expected


def test_installed_top_level_names_are_botrace_specific():
    config = _setuptools()
    assert {p.split(".")[0] for p in config["packages"]} == {
        "botrace", "botrace_webui", "botrace_host_adapter", "botrace_plugins_example"}


def test_the_installed_names_import(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not from the checkout's folders
    import botrace_host_adapter.commands
    import botrace_plugins_example.weather.main
    import botrace_webui

    assert Path(botrace_webui.__file__).parent == ROOT / "webui"
    assert botrace_host_adapter.commands.botrace_register_commands
    assert botrace_plugins_example.weather.main.__name__ == "botrace_plugins_example.weather.main"


def test_nothing_shipped_points_at_files_outside_the_project():
    """Docs and code speak in the project's own words: no reference to notes a user of the
    package does not have (a ``shared`` folder beside the checkout)."""
    outside = "../" + "shared"  # (spelt in two parts, so this file does not match itself)
    shipped = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    for folder in ("botrace", "webui", "host_adapter", "plugins_example"):
        shipped += [p for p in (ROOT / folder).rglob("*")
                    if p.suffix in {".py", ".md", ".js", ".html", ".css", ".json", ".yaml", ".txt"}]
    pointing = [str(p.relative_to(ROOT)) for p in shipped
                if outside in p.read_text(encoding="utf-8", errors="replace")]
    assert pointing == []
