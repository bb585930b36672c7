"""The botrace AstrBot plugin as written by ``botrace astrbot-plugin``: its files and settings.

What it does inside AstrBot is proven in tests/astrbot/ against the real package.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from botrace.cli import main as botrace_main
from botrace_host_adapter.astrbot.package import REQUIREMENTS, write_plugin, write_plugin_zip
from botrace_host_adapter.astrbot.pluginconfig import (
    OPTIONS,
    PluginConfigError,
    conf_schema,
    read_plugin_config,
)

ROOT = Path(__file__).resolve().parent.parent
#: the schema types AstrBot 4.14 accepts in a plugin's _conf_schema.json (no "dict" yet)
ASTRBOT_414_TYPES = {"int", "float", "bool", "string", "text", "list", "file", "object",
                     "template_list"}


def test_the_schema_uses_only_types_astrbot_414_knows_and_every_option_is_described():
    schema = conf_schema()
    assert [k for k in schema] == ["page", "store", "limits", "export", "sampling"]
    for group in schema.values():
        assert group["type"] == "object" and group["description"]
        for item in group["items"].values():
            assert item["type"] in ASTRBOT_414_TYPES
            assert item["description"]
            if "options" in item:
                assert item["default"] in item["options"]
    assert "trace_enable" not in json.dumps(schema)  # AstrBot's own key, never the plugin's


def test_defaults_make_valid_settings_in_the_plugin_data_folder(tmp_path):
    settings, page = read_plugin_config(None, data_dir=str(tmp_path))
    assert settings["trace_db_path"] == str(tmp_path / "botrace.db")
    assert settings["trace_log_path"] == str(tmp_path / "botrace.jsonl")
    assert settings["trace_retention_days"] == 7 and not settings["trace_log_enable"]
    assert (page.enable, page.host, page.port, page.url) == (True, "127.0.0.1", 6196,
                                                            "http://127.0.0.1:6196/")
    assert "trace_enable" not in settings


def test_options_map_to_botrace_settings(tmp_path):
    config = {"store": {"retention_days": 3, "writer": "thread", "db_path": "/x/t.db"},
              "limits": {"redact_keys": ["session_key"]},
              "export": {"otlp_headers": '{"X-Key": "k"}',
                         "price_table": '{"gpt-x": {"input": 1.5, "output": 2}}'}}
    settings, _ = read_plugin_config(config, data_dir=str(tmp_path))
    assert settings["trace_retention_days"] == 3 and settings["trace_store_writer"] == "thread"
    assert settings["trace_db_path"] == "/x/t.db"
    assert settings["trace_redact_keys"] == ["session_key"]
    assert settings["trace_otlp_headers"] == {"X-Key": "k"}
    assert settings["trace_price_table"] == {"gpt-x": {"input": 1.5, "output": 2}}


@pytest.mark.parametrize(("config", "message"), [
    ({"store": {"retention_days": "soon"}}, "store.retention_days: expected an integer >= 0, got 'soon'"),
    ({"store": {"writer": "cloud"}}, "store.writer: expected 'process' or 'thread', got 'cloud'"),
    ({"export": {"price_table": "{not json"}}, "export.price_table: expected a JSON object"),
    ({"export": {"price_table": '{"m": {"input": -1}}'}}, "export.price_table.m.input: expected a "
                                                           "non-negative number, got -1"),
    ({"page": {"port": 70000}}, "page.port: expected a port number 0-65535, got 70000"),
    ({"page": {"host": "0.0.0.0"}}, "page.host: 0.0.0.0 is reachable from other machines"),
])
def test_a_bad_setting_is_refused_naming_the_option(tmp_path, config, message):
    with pytest.raises(PluginConfigError, match="botrace plugin setting ") as err:
        read_plugin_config(config, data_dir=str(tmp_path))
    assert message in str(err.value)


def test_a_public_page_address_is_allowed_with_a_token(tmp_path):
    _, page = read_plugin_config({"page": {"host": "0.0.0.0", "token": "s3cret"}},
                                 data_dir=str(tmp_path))
    assert page.host == "0.0.0.0" and page.token == "s3cret"


def test_requirements_are_the_distributions_dependencies():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(REQUIREMENTS) == sorted(deps)


def test_the_plugin_folder_has_what_astrbot_loads_and_its_own_botrace(tmp_path):
    folder = write_plugin(tmp_path)
    assert folder.name == "astrbot_plugin_botrace"
    for name in ("main.py", "metadata.yaml", "_conf_schema.json", "requirements.txt", "README.md",
                 "CHANGELOG.md",
                 "pages/trace/index.html", "_vendor/botrace/__init__.py",
                 "_vendor/botrace_webui/static/js/app.js",
                 "_vendor/botrace_host_adapter/astrbot/adapter.py"):
        assert (folder / name).is_file(), name
    assert not (folder / "_vendor/botrace_host_adapter/refhost").exists()
    assert not list(folder.rglob("__pycache__"))
    meta = dict(line.split(": ", 1) for line in (folder / "metadata.yaml").read_text().splitlines())
    assert {json.loads(meta[k]) for k in ("name", "version", "author")} >= {"astrbot_plugin_botrace"}
    assert all(json.loads(meta[k]) for k in ("name", "desc", "version", "author"))
    assert json.loads((folder / "_conf_schema.json").read_text()) == conf_schema()
    # the vendored code imports on its own, without this checkout
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "import botrace, botrace_host_adapter.astrbot.plugin as p, botrace_webui; "
            "assert botrace.__file__.startswith(sys.argv[1]), botrace.__file__; "
            "assert p.__file__.startswith(sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(folder / "_vendor")], check=True,
                   timeout=60, cwd=tmp_path)
    with pytest.raises(FileExistsError):
        write_plugin(tmp_path)
    assert write_plugin(tmp_path, overwrite=True) == folder


def test_the_zip_starts_with_the_plugin_folder_as_astrbot_expects(tmp_path):
    path = write_plugin_zip(tmp_path)
    assert path.name == "astrbot_plugin_botrace.zip"
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert names[0] == "astrbot_plugin_botrace/"
    assert "astrbot_plugin_botrace/main.py" in names
    assert all(n.startswith("astrbot_plugin_botrace/") for n in names)


def test_the_command_writes_the_zip(tmp_path, capsys):
    assert botrace_main(["astrbot-plugin", "--zip", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "astrbot_plugin_botrace.zip").is_file()
    assert "upload it in AstrBot's dashboard" in capsys.readouterr().out


def test_every_option_is_in_the_schema_once():
    paths = [o.path for o in OPTIONS]
    assert len(paths) == len(set(paths))


DOC = (ROOT / "docs" / "ASTRBOT.md").read_text(encoding="utf-8")


def test_the_astrbot_doc_lists_every_setting_with_its_default():
    rows = {}
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and "." in cells[0]:
            rows[cells[0].strip("`")] = cells[1].strip("`")
    assert set(rows) == {o.path for o in OPTIONS}
    for option in OPTIONS:
        shown = json.dumps(option.default) if not isinstance(option.default, str) else (
            option.default if option.json else json.dumps(option.default))
        assert rows[option.path] in (shown, str(option.default).lower(), option.default), option.path


@pytest.mark.parametrize("without_botrace", [False, True])
def test_the_plugin_author_example_runs_with_and_without_botrace(without_botrace):
    block = DOC.split("```python\n")[1].split("```")[0]
    prelude = "import sys; sys.modules['botrace'] = None\n" if without_botrace else ""
    code = prelude + block + "\nimport asyncio\nprint(asyncio.run(fetch('Paris')))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "Paris: sunny"


def test_the_sampling_group_sets_botraces_sampling_settings(tmp_path):
    schema = conf_schema()["sampling"]["items"]
    assert schema["rate"]["type"] == "float" and schema["rate"]["default"] == 1.0
    settings, _ = read_plugin_config(None, data_dir=str(tmp_path))
    assert settings["trace_sample_rate"] == 1.0 and settings["trace_sample_keep_users"] == []
    config = {"sampling": {"rate": 0.1, "keep_slower_than_ms": 3000, "keep_users": ["10001"],
                           "keep_sessions": ["aiocqhttp:GroupMessage:42"]}}
    settings, _ = read_plugin_config(config, data_dir=str(tmp_path))
    assert (settings["trace_sample_rate"], settings["trace_keep_slower_than_ms"]) == (0.1, 3000)
    assert settings["trace_sample_keep_users"] == ["10001"]
    assert settings["trace_sample_keep_sessions"] == ["aiocqhttp:GroupMessage:42"]
    with pytest.raises(PluginConfigError, match=r"sampling\.rate: expected a number from 0 to 1"):
        read_plugin_config({"sampling": {"rate": 2}}, data_dir=str(tmp_path))
    with pytest.raises(PluginConfigError, match=r"sampling\.keep_users: expected a list"):
        read_plugin_config({"sampling": {"keep_users": [1]}}, data_dir=str(tmp_path))


def test_the_page_can_answer_a_proxys_host_name(tmp_path):
    _, page = read_plugin_config({"page": {"allowed_hosts": ["bot.example.org"]}},
                                 data_dir=str(tmp_path))
    assert page.allowed_hosts == ("bot.example.org",)
    with pytest.raises(PluginConfigError, match=r"page\.allowed_hosts: expected a list"):
        read_plugin_config({"page": {"allowed_hosts": "bot.example.org"}}, data_dir=str(tmp_path))
