"""`xpdeploy render`: the exact request bodies, the reference examples, and the JSON Schemas."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import REPO, cli, lint_json, project
from ruamel.yaml import YAML

from xpdeploy.loader import load_file
from xpdeploy.schema import render_all

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "reference_bodies.json"
PAGE = REPO.parent / "shared" / "reference" / "execute-campaign-page.txt"
REFERENCE = json.loads(FIXTURE.read_text(encoding="utf-8"))["examples"]

SPEC = """\
name: {name}
execute:
  id: "{{{{ cid }}}}"
  target_by: user_id
  target_with_params:
    u1: {{fname: Ana, bonus: "{{{{ bonus }}}} EUR"}}
  params: {{external_message_id: "{name}-{{{{ env }}}}"}}
  push_text: !raw "Hi {{{{fname}}}}"
  time: "2031-06-01T14:00:00+02:00"
"""


def body(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "apptoken": "***",
        "id": 42,
        "target_by": "user_id",
        "target_with_params": {"u1": {"fname": "Ana", "bonus": "100 EUR"}},
        "params": {"external_message_id": f"{name}-local"},
        "push_text": "Hi {{fname}}",
        "time": "2031-06-01 12:00 UTC",
        **extra,
    }


@pytest.fixture
def two(tmp_path: Path) -> Path:
    return project(
        tmp_path,
        {"a.yaml": SPEC.format(name="alpha"), "b.yaml": SPEC.format(name="beta")},
        vars={"cid": 42, "bonus": 100},
    )


def test_render_json(two: Path) -> None:
    result = cli(["render", "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document == {
        "format_version": 1,
        "environment": "local",
        "executions": [
            {"name": "alpha", "revision": 1, "body": body("alpha")},
            {"name": "beta", "revision": 1, "body": body("beta")},
        ],
    }
    assert next(iter(document["executions"][0]["body"])) == "apptoken"


def test_render_is_json_by_default_and_yaml_on_request(two: Path) -> None:
    as_json = json.loads(cli(["render"]).stdout)
    result = cli(["render", "--format", "yaml"])
    assert result.exit_code == 0
    assert YAML(typ="safe", pure=True).load(io.StringIO(result.stdout)) == as_json
    assert result.stdout.startswith("format_version: 1\n")


def test_render_names(two: Path) -> None:
    document = json.loads(cli(["render", "beta"]).stdout)
    assert [e["name"] for e in document["executions"]] == ["beta"]


def test_render_unknown_name_is_an_error(two: Path) -> None:
    result = cli(["render", "beta", "gamma"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no spec named 'gamma'" in result.stderr


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_render_out_writes_one_file_per_execution(two: Path, fmt: str) -> None:
    result = cli(["render", "--format", fmt, "--out", "out/bodies"])
    assert result.exit_code == 0, result.output
    folder = two / "out" / "bodies"
    assert sorted(p.name for p in folder.iterdir()) == [f"alpha.{fmt}", f"beta.{fmt}"]
    text = (folder / f"alpha.{fmt}").read_text(encoding="utf-8")
    loaded = json.loads(text) if fmt == "json" else YAML(typ="safe", pure=True).load(text)
    assert loaded == body("alpha")
    assert result.stdout == ""
    assert f"wrote out/bodies/beta.{fmt}" in result.stderr


@pytest.mark.parametrize(
    ("out", "fmt", "message"),
    [
        ("campaigns", "yaml", "is in the specs' folder"),
        ("campaigns/rendered", "json", "is in the specs' folder"),
        (".", "yaml", "would overwrite"),  # a spec named like the project file
    ],
)
def test_render_out_never_writes_over_the_project(
    two: Path, out: str, fmt: str, message: str
) -> None:
    """Found by fuzzing: --out campaigns --format yaml replaced the specs with bodies."""
    (two / "campaigns" / "xpdeploy.yaml").write_text(SPEC.format(name="xpdeploy"))
    before = {p: p.read_bytes() for p in two.rglob("*") if p.is_file()}
    result = cli(["render", "--format", fmt, "--out", out])
    assert (
        result.exit_code == 1
        and message in result.stderr
        and "nothing was written" in result.stderr
    )
    assert {p: p.read_bytes() for p in two.rglob("*") if p.is_file()} == before


def test_render_out_never_writes_over_a_var_file_option(two: Path) -> None:
    (two / "vf").mkdir()
    (two / "vf" / "alpha.yaml").write_text("bonus: 5\n")
    result = cli(["render", "--format", "yaml", "--var-file", "vf/alpha.yaml", "--out", "vf"])
    assert result.exit_code == 1 and "would overwrite" in result.stderr
    assert (two / "vf" / "alpha.yaml").read_text() == "bonus: 5\n"


def test_render_out_checks_every_target_before_writing_any(two: Path) -> None:
    (two / "out" / "beta.json").mkdir(parents=True)
    result = cli(["render", "--out", "out"])
    assert result.exit_code == 1 and "is not a regular file" in result.stderr
    assert not (two / "out" / "alpha.json").exists()


def test_render_refuses_when_lint_has_errors(two: Path) -> None:
    (two / "campaigns" / "c.yaml").write_text(SPEC.format(name="gamma").replace("cid", "nope"))
    result = cli(["render", "alpha"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "campaigns/c.yaml:3:7: error undefined-variable 'nope'" in result.stderr


def test_render_shows_warnings_on_stderr(tmp_path: Path) -> None:
    project(tmp_path, {"d.yaml": "name: d\nexecute: {id: 1, target: [123456]}\n"})
    result = cli(["render"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["executions"][0]["body"] == {
        "apptoken": "***",
        "id": 1,
        "target": [123456],
    }
    assert "campaigns/d.yaml:2:1: warning target-by" in result.stderr


def test_render_for_another_environment(two: Path) -> None:
    (two / "xpdeploy.yaml").write_text(
        (two / "xpdeploy.yaml").read_text().replace('"emulator"}', '"emulator"}, "prod": {}')
    )
    document = json.loads(cli(["render", "-e", "prod", "alpha"]).stdout)
    assert document["environment"] == "prod"
    assert document["executions"][0]["body"]["params"] == {"external_message_id": "alpha-prod"}


def test_review_redact_hides_values(two: Path) -> None:
    with (two / "xpdeploy.yaml").open("a") as handle:
        handle.write("review: {redact: ['target_with_params.*.bonus']}\n")
    shown = json.loads(cli(["render", "alpha"]).stdout)["executions"][0]["body"]
    assert shown["target_with_params"] == {"u1": {"fname": "Ana", "bonus": "(redacted)"}}


# --- the reference examples ---------------------------------------------------------------------


def test_the_repository_project_renders_the_five_reference_bodies() -> None:
    names = [example["name"] for example in REFERENCE]
    result = cli(["render", "--project", str(REPO), "-e", "local", *names])
    assert result.exit_code == 0, result.output
    rendered = {e["name"]: e["body"] for e in json.loads(result.stdout)["executions"]}
    assert sorted(rendered) == sorted(names)
    for example in REFERENCE:
        got = dict(rendered[example["name"]])
        assert got.pop("apptoken") == "***"
        assert got == example["body"], f"example {example['example']}"
        assert set(got) == set(example["body"])


def _page_bodies(text: str) -> list[dict[str, Any]]:
    """Every JSON object of the page that starts with "apptoken", in page order."""
    decoder = json.JSONDecoder()
    found = []
    position = text.find("{")
    while position != -1:
        if text[position + 1 :].lstrip().startswith('"apptoken"'):
            value, end = decoder.raw_decode(text, position)
            found.append(value)
            position = end
        position = text.find("{", position + 1)
    return found


@pytest.mark.skipif(not PAGE.exists(), reason="the reference page is not beside the repository")
def test_the_fixture_matches_the_reference_page() -> None:
    bodies = _page_bodies(PAGE.read_text(encoding="utf-8"))
    assert len(bodies) == len(REFERENCE) == 5
    for page_body, example in zip(bodies, REFERENCE, strict=True):
        assert page_body.pop("apptoken") == "YOURAPPTOKEN"
        if example["example"] == 2:
            assert page_body.pop("time") == "2021-01-01 12:00 UTC"
            assert example["body"]["time"] == "2031-01-01 12:00 UTC"
            page_body["time"] = example["body"]["time"]
        assert page_body == example["body"], f"example {example['example']}"
        assert list(page_body) == list(example["body"])


# --- schema and init --------------------------------------------------------------------------------


def test_schema_prints_the_generated_schemas() -> None:
    result = cli(["schema"])
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    generated = {name: json.loads(text) for name, text in render_all().items()}
    assert printed == generated
    assert sorted(printed) == ["payload.schema.json", "project.schema.json", "spec.schema.json"]
    for schema in printed.values():
        jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("folder", ["schema", "xpdeploy/schemas"])
def test_committed_schemas_are_up_to_date(folder: str) -> None:
    committed = {p.name: p.read_text(encoding="utf-8") for p in (REPO / folder).glob("*.json")}
    assert committed == render_all(), f"run `python -m xpdeploy.schema` to refresh {folder}/"


def test_schema_write(tmp_path: Path) -> None:
    result = cli(["schema", "--write", "--dir", "out"])
    assert result.exit_code == 0
    assert {p.name: p.read_text() for p in (tmp_path / "out").iterdir()} == render_all()


SPEC_VALIDATOR = jsonschema.Draft202012Validator(
    json.loads((REPO / "schema" / "spec.schema.json").read_text(encoding="utf-8"))
)


def _repo_spec_documents() -> list[Any]:
    documents = []
    for path in sorted((REPO / "campaigns").rglob("*.y*ml")):
        loaded = load_file(path, path.name)
        assert loaded.findings == []
        documents += [pytest.param(d.value, id=f"{path.stem}-{d.index}") for d in loaded.documents]
    assert len(documents) >= 8
    return documents


@pytest.mark.parametrize("document", _repo_spec_documents())
def test_every_repository_spec_validates_against_the_spec_schema(document: Any) -> None:
    SPEC_VALIDATOR.validate(document)


def test_a_spec_with_an_unknown_key_does_not_validate() -> None:
    spec = {"name": "x", "execute": {"id": 1, "target": ["u"], "targte_by": "user_id"}}
    assert [e.validator for e in SPEC_VALIDATOR.iter_errors(spec)] == ["additionalProperties"]
    SPEC_VALIDATOR.validate({**spec, "execute": {"id": 1, "extra": {"targte_by": 1}}})


def test_init_writes_a_project_that_lints_clean(tmp_path: Path) -> None:
    result = cli(["init", "new"])
    assert result.exit_code == 0, result.output
    root = tmp_path / "new"
    assert (
        (root / "xpdeploy.yaml")
        .read_text()
        .startswith("# yaml-language-server: $schema=schema/project.schema.json\n")
    )
    [spec] = (root / "campaigns").glob("*.yaml")
    assert spec.read_text().startswith(
        "# yaml-language-server: $schema=../schema/spec.schema.json\n"
    )
    assert (root / "schema" / "spec.schema.json").read_text() == render_all()["spec.schema.json"]
    assert lint_json(["--project", "new", "--all-envs"]) == (
        0,
        {"format_version": 1, "findings": []},
    )


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    assert cli(["init"]).exit_code == 0
    (tmp_path / "xpdeploy.yaml").write_text("# mine\n")
    result = cli(["init"])
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.stderr
    assert (tmp_path / "xpdeploy.yaml").read_text() == "# mine\n"
