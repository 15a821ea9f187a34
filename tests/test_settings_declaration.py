"""Each TORCH_OTEL_* setting is declared once (torch_otel.environment_variables); Settings, `torch-otel doctor` and
README.md's table of torch-otel's own settings agree with the declarations."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import pytest

from torch_otel import environment_variables as env
from torch_otel.config.settings import Settings, SettingsError, parse_variable
from torch_otel.tools import doctor

README = Path(__file__).resolve().parents[1] / "README.md"
TABLE_INTRO = "torch-otel's own settings"


def readme_rows() -> dict[str, tuple[str, str]]:
    """README's torch-otel settings table: variable -> (meaning, default cell)."""
    text = README.read_text(encoding="utf-8")
    settings = text[text.index("\n## Settings\n"):]
    lines = settings[settings.index(TABLE_INTRO):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Variable |"))
    rows: dict[str, tuple[str, str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, line
        name = re.fullmatch(r"`(TORCH_OTEL_\w+)`", cells[0])
        assert name, f"not one `TORCH_OTEL_*` variable: {cells[0]}"
        assert name.group(1) not in rows, f"{name.group(1)} twice in the README table"
        rows[name.group(1)] = (cells[1], cells[2])
    return rows


def test_readme_table_lists_exactly_the_declared_settings_with_their_defaults():
    rows = readme_rows()
    assert sorted(rows) == sorted(env.ALL)
    for variable in env.ALL:
        meaning, default = rows[variable]
        assert default == f"`{variable.default_text}`", variable
        if variable.kind in ("bytes", "count", "seconds", "seconds_or_off"):
            assert variable.limits in meaning, variable
        for choice in variable.choices:
            assert f"`{choice}`" in meaning + default, (variable, choice)


def test_doctor_shows_every_declared_setting():
    out = io.StringIO()
    assert doctor.main(["--no-check"], environ={}, out=out) == 0
    body = out.getvalue().split("\ntorch-otel settings\n", 1)[1].split("\n\n", 1)[0]
    lines = {line.strip().split(" = ", 1)[0]: line.strip() for line in body.splitlines()[1:]}
    assert sorted(lines) == sorted(env.ALL)
    for variable in env.ALL:
        assert "(default)" in lines[variable] and lines[variable].endswith(f"valid: {variable.limits}")
        assert variable.default_text in lines[variable] or variable.show(variable.default) in lines[variable]


def test_settings_fields_and_defaults_are_the_declared_ones():
    declared = {variable.field: variable.default for variable in env.ALL if variable.field is not None}
    assert dataclasses.asdict(Settings()) == declared
    assert Settings.from_env({}) == Settings()


def test_each_name_is_declared_once_and_is_the_constant_of_the_same_name():
    assert len(set(env.ALL)) == len(env.ALL)
    fields = [variable.field for variable in env.ALL if variable.field is not None]
    assert len(set(fields)) == len(fields)
    constants = {name: value for name, value in vars(env).items() if name.startswith("TORCH_OTEL_")}
    assert constants == {str(variable): variable for variable in env.ALL}
    assert all(name == value for name, value in constants.items())


@pytest.mark.parametrize("variable", [v for v in env.ALL if v.field is not None], ids=str)
def test_declared_default_text_and_limits_parse(variable):
    """The default as README and doctor write it reads back as the default; the limits are inclusive."""
    assert parse_variable(variable, variable.default_text) == variable.default
    if variable.kind in ("count", "bytes"):
        assert parse_variable(variable, str(int(variable.maximum))) == variable.maximum
        assert parse_variable(variable, str(int(variable.minimum))) == variable.minimum
        with pytest.raises(SettingsError, match=variable.limits):
            parse_variable(variable, str(int(variable.maximum) + 1))
    if variable.kind in ("seconds", "seconds_or_off"):
        assert parse_variable(variable, f"{variable.maximum:g}") == variable.maximum
        assert parse_variable(variable, "0.2") == 0.2
        with pytest.raises(SettingsError, match=variable.limits):
            parse_variable(variable, "0")
        with pytest.raises(SettingsError, match=variable.limits):
            parse_variable(variable, f"{variable.maximum:g}1")
    if variable.kind == "seconds_or_off":
        assert parse_variable(variable, "off") is None and parse_variable(variable, " OFF ") is None
        assert variable.show(None) == "off"


def test_slow_compile_is_off_or_seconds_and_doctor_shows_off():
    assert Settings.from_env({"TORCH_OTEL_SLOW_COMPILE": "off"}).slow_compile is None
    assert Settings.from_env({"TORCH_OTEL_SLOW_COMPILE": "90"}).slow_compile == 90.0
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"TORCH_OTEL_SLOW_COMPILE": "never"})
    assert str(raised.value) == (
        "TORCH_OTEL_SLOW_COMPILE='never' is not valid: expected a number of seconds greater than 0 and at most "
        "86400, or off (e.g. 60, 0.5 or off)."
    )
    out = io.StringIO()
    doctor.main(["--no-check"], environ={"TORCH_OTEL_SLOW_COMPILE": "off"}, out=out)
    assert "TORCH_OTEL_SLOW_COMPILE = off (set to 'off', default 60 s)" in out.getvalue()
