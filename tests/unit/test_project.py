"""The project file: discovery, environments, variable precedence, --var and --var-file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import CLEAN_SPEC, cli, make_tree, project, project_text

from xpdeploy.errors import UserError
from xpdeploy.project import Overrides, deep_merge, find_project_file, load_project

# Variable v<i> is defined by layers 0..i, each setting it to the layer's own name, so the
# value each v<i> renders to names the layer that won it.
LAYERS = ["spec", "project", "vars-file-1", "vars-file-2", "env-vars", "var-file", "var"]


def defines(layer: int) -> dict[str, str]:
    return {f"v{i}": LAYERS[layer] for i in range(layer, len(LAYERS))}


def yaml_of(mapping: dict[str, Any]) -> str:
    return json.dumps(mapping) + "\n"


PRECEDENCE_SPEC = """\
name: layered
vars: {vars}
execute:
  id: 42
  target_by: user_id
  target: [u1]
  params:
{params}
    built_in: "{{{{ env }}}}/{{{{ name }}}}"
    merged: "{{{{ m }}}}"
"""


def render_params(*args: str) -> dict[str, Any]:
    result = cli(["render", *args])
    assert result.exit_code == 0, result.output
    [execution] = json.loads(result.stdout)["executions"]
    return execution["body"]["params"]


@pytest.fixture
def layered(tmp_path: Path) -> Path:
    spec_vars = {**defines(0), "m": {"a": "spec", "b": "spec", "keep": [1, 2]}}
    params = "\n".join(f'    v{i}: "{{{{ v{i} }}}}"' for i in range(len(LAYERS)))
    return project(
        tmp_path,
        specs={"layered.yaml": PRECEDENCE_SPEC.format(vars=json.dumps(spec_vars), params=params)},
        vars={**defines(1), "m": {"b": "project", "c": "project", "keep": [3]}},
        environments={
            "local": {
                "api_url": "emulator",
                "vars_files": ["vars/one.yaml", "vars/two.yaml"],
                "vars": {**defines(4), "m": {"d": "env"}},
            }
        },
        files={
            "vars/one.yaml": yaml_of({**defines(2), "m": {"c": "file-1", "e": "file-1"}}),
            "vars/two.yaml": yaml_of({**defines(3), "m": {"e": "file-2"}}),
            "cli.yaml": yaml_of({**defines(5), "m": {"f": "var-file"}}),
        },
    )


def test_variable_precedence_in_full(layered: Path) -> None:
    params = render_params("--var-file", "cli.yaml", "--var", "v6=var", "--var", "m.g=7")
    assert [params[f"v{i}"] for i in range(len(LAYERS))] == LAYERS
    assert params["merged"] == {
        "a": "spec",
        "b": "project",
        "c": "file-1",
        "e": "file-2",
        "keep": [3],  # lists replace, they do not merge
        "d": "env",
        "f": "var-file",
        "g": 7,
    }
    assert params["built_in"] == "local/layered"


def test_without_command_line_variables_the_environment_wins(layered: Path) -> None:
    params = render_params()
    assert params["v6"] == params["v5"] == "env-vars"


def test_built_ins_cannot_be_overridden(layered: Path) -> None:
    assert render_params("--var", "env=other", "--var", "name=x")["built_in"] == "local/layered"


def test_repeated_var_files_apply_in_order(layered: Path) -> None:
    make_tree(layered, {"later.yaml": yaml_of({"v5": "later"})})
    params = render_params("--var-file", "cli.yaml", "--var-file", "later.yaml")
    assert (params["v5"], params["v6"]) == ("later", "var-file")


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (("a=1",), {"a": 1}),
        (("a.b=3",), {"a": {"b": 3}}),
        (("a.b=3", "a.c=x", "a.b=4"), {"a": {"b": 4, "c": "x"}}),
        (
            ("x=yes", "y=true", "z=", "w=~", "h=0x10", "f=1.5"),
            {"x": "yes", "y": True, "z": "", "w": None, "h": 16, "f": 1.5},
        ),
        (("code='007'", 'q="00 7"', "n=0"), {"code": "007", "q": "00 7", "n": 0}),
        (("l=[1, b]", "m={k: v}"), {"l": [1, "b"], "m": {"k": "v"}}),
        (("url=https://a.example/?q=1",), {"url": "https://a.example/?q=1"}),
        ((" k =v",), {"k": "v"}),
    ],
)
def test_var_parsing(items: tuple[str, ...], expected: dict[str, Any]) -> None:
    assert Overrides(vars=items).parsed_vars() == expected


@pytest.mark.parametrize("item", ["novalue", "=1", " =1"])
def test_var_without_a_key_is_an_error(item: str) -> None:
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        Overrides(vars=(item,)).parsed_vars()


@pytest.mark.parametrize("value", ["007", "+3538"])
def test_var_that_would_lose_its_text_is_an_error_not_a_silent_number(value: str) -> None:
    with pytest.raises(UserError, match=re.escape(f"quote it: --var 'n=\"{value}\"'")):
        Overrides(vars=(f"n={value}",)).parsed_vars()


def test_leading_zeros_in_the_project_file_are_warnings_lint_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(tmp_path, {"a.yaml": CLEAN_SPEC.format(name="a")})
    text = project_text(vars={"store": "0042"}).replace('"0042"', "0042")
    (tmp_path / "xpdeploy.yaml").write_text(text)
    assert load_project(tmp_path / "xpdeploy.yaml").config.vars["store"] == 42
    monkeypatch.chdir(tmp_path)
    result = cli(["lint", "--format", "json"])
    assert result.exit_code == 0
    [found] = json.loads(result.stdout)["findings"]
    assert (found["path"], found["line"], found["rule"], found["severity"]) == (
        "xpdeploy.yaml",
        3,
        "lossy-number",
        "warning",
    )


def test_var_with_a_huge_number_is_an_error() -> None:
    with pytest.raises(UserError, match="--var n:"):
        Overrides(vars=("n=" + "9" * 100,)).parsed_vars()


def test_deep_merge_does_not_change_its_inputs() -> None:
    base, override = {"a": {"b": 1}}, {"a": {"c": 2}}
    assert deep_merge(base, override) == {"a": {"b": 1, "c": 2}}
    assert base == {"a": {"b": 1}} and override == {"a": {"c": 2}}


# --- discovery ---------------------------------------------------------------------------------


def test_discovery_from_a_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project(tmp_path, {"deep/x.yaml": CLEAN_SPEC.format(name="x")})
    sub = tmp_path / "campaigns" / "deep"
    assert find_project_file(sub) == tmp_path / "xpdeploy.yaml"
    monkeypatch.chdir(sub)
    result = cli(["lint", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert load_project().root == tmp_path


def test_the_nearest_project_file_wins(tmp_path: Path) -> None:
    project(tmp_path)
    project(tmp_path / "inner")
    assert (
        find_project_file(tmp_path / "inner" / "campaigns") == tmp_path / "inner" / "xpdeploy.yaml"
    )


@pytest.mark.parametrize("given", ["other/xpdeploy.yaml", "other", "other/custom.yaml"])
def test_project_option(tmp_path: Path, given: str) -> None:
    project(tmp_path / "other", {"x.yaml": CLEAN_SPEC.format(name="from-other")})
    (tmp_path / "other" / "custom.yaml").write_text(project_text())
    result = cli(["render", "--project", given])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["executions"][0]["name"] == "from-other"


def test_missing_project_option_is_an_error(tmp_path: Path) -> None:
    result = cli(["lint", "--project", "nowhere.yaml"])
    assert result.exit_code == 1
    assert "project file nowhere.yaml not found" in result.stderr


def test_no_project_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="xpdeploy init"):
        find_project_file(tmp_path)


# --- environments -------------------------------------------------------------------------------

TWO_ENVS = {"local": {"api_url": "emulator"}, "production": {"state": "state/prod.jsonl"}}


def test_unknown_environment_is_an_error(tmp_path: Path) -> None:
    project(tmp_path, {"x.yaml": CLEAN_SPEC.format(name="x")}, environments=TWO_ENVS)
    result = cli(["lint", "-e", "staging"])
    assert result.exit_code == 1
    assert "unknown environment 'staging'; the project has local, production" in result.stderr
    assert "Traceback" not in result.output


def test_default_environment(tmp_path: Path) -> None:
    project(tmp_path, environments=TWO_ENVS, default_environment="production")
    assert load_project().environment_name(None) == "production"
    assert load_project().environment_name("local") == "local"


def test_no_default_among_several_is_an_error(tmp_path: Path) -> None:
    project(tmp_path, environments=TWO_ENVS, default_environment=None)
    with pytest.raises(UserError, match="use -e NAME"):
        load_project().environment_name(None)


def test_a_single_environment_needs_no_default(tmp_path: Path) -> None:
    project(tmp_path, environments={"only": {}}, default_environment=None)
    assert load_project().environment_name(None) == "only"


def test_default_environment_must_exist(tmp_path: Path) -> None:
    project(tmp_path, environments=TWO_ENVS, default_environment="staging")
    with pytest.raises(UserError, match="default_environment 'staging' is not one of") as caught:
        load_project()
    assert caught.value.line == 4


def test_state_path_and_api_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project(tmp_path, environments=TWO_ENVS)
    loaded = load_project()
    assert loaded.state_path("local") == tmp_path / ".xpdeploy" / "local.jsonl"
    assert loaded.state_path("production") == tmp_path / "state" / "prod.jsonl"
    assert loaded.uses_emulator("local")
    assert loaded.api_url("production") == "https://external-api.xtremepush.com"
    monkeypatch.setenv("XPDEPLOY_API_URL", "http://127.0.0.1:9")
    assert loaded.api_url("local") == "http://127.0.0.1:9" and not loaded.uses_emulator("local")


# --- vars files ----------------------------------------------------------------------------------


def test_missing_vars_file_is_an_error(tmp_path: Path) -> None:
    env = {"local": {"api_url": "emulator", "vars_files": ["vars/missing.yaml"]}}
    project(tmp_path, {"x.yaml": CLEAN_SPEC.format(name="x")}, environments=env)
    result = cli(["lint"])
    assert result.exit_code == 1
    assert (
        "vars file vars/missing.yaml (from vars_files of environment 'local') does not exist"
        in result.stderr
    )


def test_missing_var_file_option_exits_1(tmp_path: Path) -> None:
    project(tmp_path, {"x.yaml": CLEAN_SPEC.format(name="x")})
    result = cli(["lint", "--var-file", "missing.yaml"])
    assert result.exit_code == 1


def test_a_vars_file_that_is_not_a_mapping_is_a_finding(tmp_path: Path) -> None:
    env = {"local": {"api_url": "emulator", "vars_files": ["vars/list.yaml"]}}
    project(
        tmp_path,
        {"x.yaml": CLEAN_SPEC.format(name="x")},
        environments=env,
        files={"vars/list.yaml": "- a\n- b\n"},
    )
    result = cli(["lint"])
    assert result.exit_code == 1
    assert "vars/list.yaml:1:1: error schema a vars file must be a mapping" in result.stdout


# --- the project file itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("version: 2\nenvironments: {local: {}}\n", "xpdeploy.yaml:1:10", "version"),
        ("version: 1\nenvironments: {}\n", "xpdeploy.yaml:2:15", "environments"),
        (
            "version: 1\nenvironments:\n  local: {api_ur: emulator}\n",
            "xpdeploy.yaml:3:11",
            "unknown-field environments.local.api_ur: unknown field",
        ),
        ("version: 1\nenvironments: {Local: {}}\n", "xpdeploy.yaml:2:16", "pattern"),
        ("- version: 1\n", "xpdeploy.yaml:1", "must be a mapping"),
        ("version: 1\n---\nversion: 1\n", "xpdeploy.yaml", "exactly one YAML document"),
        ("version: [1\n", "xpdeploy.yaml:2:1", "yaml-syntax"),
    ],
)
def test_invalid_project_files_are_positioned_errors(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    make_tree(tmp_path, {"xpdeploy.yaml": text, "campaigns/x.yaml": CLEAN_SPEC.format(name="x")})
    result = cli(["render"])  # lint reports these on stdout, in its format; see test_lint
    assert result.exit_code == 1
    assert where in result.stderr and message in result.stderr
    assert "internal error" not in result.stderr


def test_unknown_environment_keys_get_a_hint(tmp_path: Path) -> None:
    text = "version: 1\nenvironments:\n  local: {guards: {max_target: 3}}\n"
    make_tree(tmp_path, {"xpdeploy.yaml": text, "campaigns/x.yaml": CLEAN_SPEC.format(name="x")})
    assert "did you mean 'max_targets'?" in cli(["lint"]).stdout


def test_campaigns_folder_must_exist(tmp_path: Path) -> None:
    make_tree(tmp_path, {"xpdeploy.yaml": project_text(campaigns="specs")})
    result = cli(["lint"])
    assert result.exit_code == 1
    assert "campaigns folder specs does not exist" in result.stderr


def test_spec_files_are_found_recursively_and_only_yaml(tmp_path: Path) -> None:
    project(
        tmp_path,
        {"a.yaml": "x", "b/c.yml": "x", "b/d/e.yaml": "x", "notes.md": "x", "f.json": "{}"},
    )
    names = [p.relative_to(tmp_path / "campaigns").as_posix() for p in load_project().spec_files]
    assert names == ["a.yaml", "b/c.yml", "b/d/e.yaml"]


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://api.example.com", "https://api.example.com"),
        ("https://API.Example.com:443/", "https://api.example.com"),
        ("https://api.example.com:", "https://api.example.com"),
        ("https://api.example.com:8443/x", "https://api.example.com:8443"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("http://[::1]:8787", "http://[::1]:8787"),
        ("emulator", "emulator"),
    ],
)
def test_one_api_has_one_endpoint_spelling(tmp_path: Path, url: str, endpoint: str) -> None:
    """The ledger compares endpoints as text: a default port must not make another API."""
    project(tmp_path, environments={"real": {"api_url": url}}, default_environment=None)
    assert load_project(tmp_path / "xpdeploy.yaml").endpoint("real") == endpoint
