"""Inputs a fuzzing run found crashing lint, render or plan (each was an "internal
error"); every one is now a finding or a one-line error. The older hostile inputs are
in test_hostile.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli, lint_one, project, templated

pytestmark = pytest.mark.usefixtures("deadline")

TARGETED = "name: x\nexecute:\n  id: 1\n  target_by: user_id\n"


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ('  target_with_params: "{{ nope }}"\n', 5),  # not a mapping of recipients
        ('  target: [u1]\n  params: 5\n  push_text: "{{ nope }}"\n', 7),  # params not a mapping
    ],
)
def test_an_undefined_name_beside_odd_recipients_or_params(
    tmp_path: Path, body: str, line: int
) -> None:
    found = lint_one(tmp_path, TARGETED + body)
    assert (found["rule"], found["line"]) == ("undefined-variable", line)
    assert "'nope' is not defined" in found["message"]


@pytest.mark.parametrize("time", ["0001-01-01T00:00+01:00", "9999-12-31T23:59-01:00"])
def test_a_time_outside_what_utc_can_hold(tmp_path: Path, time: str) -> None:
    found = lint_one(tmp_path, f'{TARGETED}  target: [u1]\n  time: "{time}"\n')
    assert found["rule"] == "time-format" and "out of range" in found["message"]


@pytest.mark.parametrize(
    ("expression", "rule", "fragment"),
    [
        ('{{ "\\ud800" }}', "template-syntax", "a lone surrogate"),
        ('{{ {"\\udcff": 1} }}', "template-syntax", "a lone surrogate"),  # a key
        ("{{ 1.5|round(1, 'x') }}", "template-syntax", "template failed"),
        ("{{ 1|reverse }}", "template-syntax", "template failed"),
        ("{{ 'abc'|truncate(-5) }}", "template-syntax", "template failed"),
        ("{{ 'a'.x or 1 }}", "undefined-variable", "has no attribute 'x'"),  # folded at compile
        ("{{ ''.__class__ or 1 }}", "template-syntax", "not allowed in a template"),
        ("a{{ ('a'.x, 1) }}", "undefined-variable", "has no attribute 'x'"),  # not "Undefined"
    ],
)
def test_template_failures_found_by_fuzzing(
    tmp_path: Path, expression: str, rule: str, fragment: str
) -> None:
    found = lint_one(tmp_path, templated(expression))
    assert (found["rule"], found["line"]) == (rule, 6)
    assert fragment in found["message"]


def test_text_subclasses_render_as_plain_text(tmp_path: Path) -> None:
    """`|safe` gives Markup, a `!raw` var a RawStr: the YAML writer knows neither."""
    spec = templated("{{ 'a<b'|safe }}") + '  url: "{{ link }}"\n'
    project(tmp_path, files={"campaigns/x.yaml": spec})
    text = (tmp_path / "xpdeploy.yaml").read_text() + "vars: {link: !raw 'https://x/{{id}}'}\n"
    (tmp_path / "xpdeploy.yaml").write_text(text)
    result = cli(["render", "--format", "yaml"])
    assert result.exit_code == 0, result.output
    assert "push_text: a<b" in result.stdout and "url: https://x/{{id}}" in result.stdout


def test_an_anchor_defined_twice_is_a_finding(tmp_path: Path) -> None:
    found = lint_one(tmp_path, "name: &a x\ndescription: &a y\nexecute: {id: 1, bogus: 1}\n")
    assert (found["rule"], found["line"], found["column"]) == ("yaml-syntax", 2, 14)
    assert "anchor &a is defined twice" in found["message"]


def test_nesting_through_aliases_is_limited(tmp_path: Path) -> None:
    deep = "[" * 40 + "{}" + "]" * 40
    text = f"vars:\n  a: &a {deep}\n  b: &b {'[' * 40}*a{']' * 40}\nname: x\nexecute: {{id: 1}}\n"
    found = lint_one(tmp_path, text)
    assert (found["rule"], found["line"]) == ("yaml-syntax", 3)
    assert "nesting deeper than 64 levels, through aliases" in found["message"]


def test_a_var_key_too_deep_is_an_error(tmp_path: Path) -> None:
    project(tmp_path, files={"campaigns/x.yaml": templated("{{ a }}")})
    result = cli(["lint", "--var", "a" + ".a" * 1000 + "=1"])
    assert result.exit_code == 1 and "more than 32 levels" in result.stderr


def test_a_var_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    project(tmp_path, files={"campaigns/x.yaml": templated("{{ a }}")})
    result = cli(["lint", "--var", "a=caf\udce9"])  # how Python passes argv bytes 0xE9
    assert result.exit_code == 1 and "--var a: not a YAML value (not UTF-8 text)" in result.stderr


def test_a_file_name_that_is_not_utf8_is_shown_escaped(tmp_path: Path) -> None:
    """With a strict UTF-8 stdout (most desktops), printing the name used to crash."""
    project(tmp_path)
    os.makedirs(tmp_path / "campaigns", exist_ok=True)
    (tmp_path / "campaigns").joinpath(os.fsdecode(b"caf\xe9.yaml")).write_text("name: [\n")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    for fmt in ("text", "json"):
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                "from xpdeploy.cli import main; main()",
                "lint",
                "--format",
                fmt,
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 1 and "internal error" not in run.stderr, run.stderr
        assert "caf\\udce9.yaml" in run.stdout
    [found] = json.loads(run.stdout)["findings"]
    assert os.fsencode(found["path"]) == b"campaigns/caf\xe9.yaml"


# --- a third run: init, emulator options, the campaigns folder -----------------------------


def test_init_writes_nothing_when_it_cannot_write_everything(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "schema").write_text("mine")  # a file where init needs a folder
    result = cli(["init", str(tmp_path / "p")])
    assert result.exit_code == 1 and "not a folder" in result.stderr
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["schema"]


def test_init_does_not_replace_a_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / ".gitignore").symlink_to(tmp_path / "nowhere")
    result = cli(["init", str(tmp_path / "p")])
    assert result.exit_code == 1 and "refusing to overwrite" in result.stderr
    assert (tmp_path / "p" / ".gitignore").is_symlink()


@pytest.mark.parametrize("args", [["--port", "70000"], ["--port", "-5"], ["--host", ""]])
def test_emulator_options_out_of_range_are_usage_errors(args: list[str]) -> None:
    result = cli(["emulator", *args])
    assert result.exit_code == 1 and "Invalid value" in result.stderr


@pytest.mark.parametrize("campaigns", ["../..", "/", "../sibling"])
def test_campaigns_outside_the_project_are_refused(tmp_path: Path, campaigns: str) -> None:
    """`campaigns: /` read the whole disk; a base's `../..` let diff read outside git."""
    project(tmp_path)
    text = (
        (tmp_path / "xpdeploy.yaml")
        .read_text()
        .replace("campaigns: campaigns", f"campaigns: {campaigns}")
    )
    (tmp_path / "xpdeploy.yaml").write_text(text)
    result = cli(["lint"])
    assert result.exit_code == 1 and "is outside the project's folder" in result.stderr
    assert result.stderr.startswith("Error: xpdeploy.yaml:2:")


def test_files_init_and_render_write_are_readable_by_others(tmp_path: Path) -> None:
    assert cli(["init", str(tmp_path / "p")]).exit_code == 0
    assert (tmp_path / "p" / "xpdeploy.yaml").stat().st_mode & 0o777 == 0o644
