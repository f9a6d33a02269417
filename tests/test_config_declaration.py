"""Every setting is declared once (name, type, default, meaning); the README table is that declaration."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest

from yijing.config import SETTINGS, Config, ConfigError, Setting, settings_table

ROOT = Path(__file__).resolve().parents[1]


def _settings_table_script():
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "scripts" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_table_is_generated_from_the_declaration():
    script = _settings_table_script()
    in_readme = script.readme_table((ROOT / "README.md").read_text(encoding="utf-8"))
    assert in_readme == settings_table(), "run `python scripts/settings_table.py --write`"


def test_every_config_field_comes_from_a_declared_setting_and_each_name_is_declared_once():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    fields = {f.name for f in dataclasses.fields(Config)} - {"extra"}
    assert {s.field for s in SETTINGS} == fields


def test_the_dataclass_defaults_agree_with_the_declaration():
    """A default is written in the declaration; a Config field's own default may only repeat it."""
    by_field = {f.name: f for f in dataclasses.fields(Config)}
    for setting in SETTINGS:
        if setting.custom:
            continue
        field = by_field[setting.field]
        if field.default is not dataclasses.MISSING:
            assert field.default == setting.read({}), setting.name


def test_an_empty_environment_gives_every_declared_default():
    config = Config.from_env({})
    for setting in SETTINGS:
        if not setting.custom:
            assert getattr(config, setting.field) == setting.read({}), setting.name
    assert config.report_export_dir == str(ROOT / "var" / "exports")  # the README and the code agree now


def test_the_code_reads_no_undeclared_environment_variable():
    """Settings come from yijing/config.py only: no module reads os.environ for its own."""
    # Read by a library, not by us: prometheus_client's multiprocess directory (docs/deployment.md).
    library_variables = {"PROMETHEUS_MULTIPROC_DIR"}
    declared = {s.name for s in SETTINGS} | library_variables
    for folder in ("yijing", "workers", "desk", "miniprogram_api"):
        for path in (ROOT / folder).rglob("*.py"):
            source = path.read_text(encoding="utf-8")
            for name in re.findall(r"""environ(?:\.get)?\(?\[?["']([A-Z_]+)["']""", source):
                assert name in declared, f"{path.relative_to(ROOT)} reads {name}, which SETTINGS lacks"


@pytest.mark.parametrize(
    ("setting", "raw", "expected"),
    [
        (Setting("N", "int", 5, "m", minimum=1), "7", 7),
        (Setting("N", "float", 2.0, "m"), "0.5", 0.5),
        (Setting("N", "bool", True, "m"), "off", False),
        (Setting("N", "ints", (1,), "m"), "30, 120", (30, 120)),
        (Setting("N", "radii", (1,), "m"), "500,2000", (500, 2000)),
        (Setting("N", "choice", "a", "m", choices=("a", "b")), "b", "b"),
        (Setting("N", "path", "var/x", "m"), "/srv/x", "/srv/x"),
        (Setting("N", "path", "var/x", "m"), "", str(ROOT / "var" / "x")),
        (Setting("N", "text", "d", "m"), "  ", "d"),
    ],
)
def test_each_kind_reads_its_type(setting, raw, expected):
    assert setting.read({"N": raw}) == expected


@pytest.mark.parametrize(
    ("setting", "raw"),
    [
        (Setting("N", "int", 5, "m", minimum=1), "0"),
        (Setting("N", "int", 5, "m"), "five"),
        (Setting("N", "bool", True, "m"), "maybe"),
        (Setting("N", "radii", (1,), "m"), "3,1"),
        (Setting("N", "choice", "a", "m", choices=("a", "b")), "c"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(setting, raw):
    with pytest.raises(ConfigError, match=r"^N "):
        setting.read({"N": raw})


def test_the_table_shows_type_default_and_meaning_and_hides_demo_values():
    table = settings_table()
    assert "| `USER_TOKEN_TTL` | whole number ≥ 60 | `2592000` (30 days) |" in table
    assert "| `SECRET_KEY` | text | *demo* |" in table
    assert "demo-secret" not in table


def test_settings_is_the_running_apps_config(app_ctx):
    from yijing.config import settings

    assert settings() is app_ctx.config["YIJING"]
