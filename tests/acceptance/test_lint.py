"""`xpdeploy lint` through the real CLI: every rule, exit codes, output formats, PATHS.

Each folder under tests/cases/lint/ is a case: a project tree (the default project
file below is added when the folder has none) and ``expected.txt``, one finding a
line as ``PATH:LINE:COL: SEVERITY RULE [text the message contains]``. Header lines
``# args: ...``, ``# env: NAME=VALUE`` and ``# xfail: BUG ...`` tune the run. A new
case is a new folder.

SARIF output is checked against tests/fixtures/sarif-2.1.0.schema.json, the OASIS
SARIF 2.1.0 schema (oasis-tcs/sarif-spec, Documents/CommitteeSpecifications/2.1.0/
sarif-schema-2.1.0.json, commit 3682e9ee648f2f3e11ba1fcd47fc390a0b8f9dab).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest
from helpers import CASES, CLEAN_SPEC, cli, lint_json, make_tree, project, project_text

from xpdeploy.cli import LINT_FORMATS
from xpdeploy.findings import RULES
from xpdeploy.report.findings import REPORTERS

LINT_CASES = CASES / "lint"
SARIF_SCHEMA = Path(__file__).resolve().parent.parent / "fixtures" / "sarif-2.1.0.schema.json"
NOW = "2026-06-01T00:00:00Z"  # "now" for every case unless the case says otherwise
DEFAULT_PROJECT = project_text(vars={"brand": "Acme", "cid": 42})
_LINE = re.compile(
    r"^(?P<loc>\S+:\d+:\d+): (?P<severity>error|warning) (?P<rule>\S+)(?: (?P<text>.+))?$"
)


@dataclass
class Case:
    folder: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=lambda: {"XPDEPLOY_NOW": NOW})
    expected: list[tuple[str, str, str, str]] = field(default_factory=list)
    xfail: str | None = None


def read_case(folder: Path) -> Case:
    case = Case(folder)
    for line in (folder / "expected.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("# args:"):
            case.args += line.partition(":")[2].split()
        elif line.startswith("# env:"):
            name, _, value = line.partition(":")[2].strip().partition("=")
            case.env[name] = value
        elif line.startswith("# xfail:"):
            case.xfail = line.partition(":")[2].strip()
        elif line.strip() and not line.startswith("#"):
            match = _LINE.match(line)
            assert match, f"{folder.name}/expected.txt: cannot read {line!r}"
            case.expected.append(
                (match["loc"], match["severity"], match["rule"], match["text"] or "")
            )
    return case


def _params() -> list[object]:
    params = []
    for folder in sorted(p for p in LINT_CASES.iterdir() if p.is_dir()):
        case = read_case(folder)
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        params.append(pytest.param(case, id=folder.name, marks=marks))
    return params


@pytest.mark.parametrize("case", _params())
def test_lint_case(case: Case, tmp_path: Path) -> None:
    shutil.copytree(case.folder, tmp_path, dirs_exist_ok=True, ignore=lambda *_: ["expected.txt"])
    if not (tmp_path / "xpdeploy.yaml").exists():
        (tmp_path / "xpdeploy.yaml").write_text(DEFAULT_PROJECT)

    code, document = lint_json(case.args, case.env)

    got = {
        (f"{f['path']}:{f['line']}:{f['column']}", f["severity"], f["rule"]): f["message"]
        for f in document["findings"]
    }
    assert sorted(got) == sorted((loc, sev, rule) for loc, sev, rule, _ in case.expected)
    for loc, sev, rule, text in case.expected:
        assert text in got[(loc, sev, rule)]
    assert code == (1 if any(sev == "error" for _, sev, _, _ in case.expected) else 0)


def test_every_rule_has_a_negative_case_and_there_is_a_clean_one() -> None:
    folders = {p.name for p in LINT_CASES.iterdir() if p.is_dir()}
    for rule_id, rule in RULES.items():
        assert rule_id in folders, f"no case folder for rule {rule_id}"
        case = read_case(LINT_CASES / rule_id)
        assert (rule.severity.value, rule_id) in {(s, r) for _, s, r, _ in case.expected}
    assert read_case(LINT_CASES / "ok").expected == []


def test_lint_formats_are_the_reporters() -> None:
    assert LINT_FORMATS == REPORTERS.names == ["text", "json", "github", "sarif"]


# --- exit codes ---------------------------------------------------------------------

WARNING_SPEC = "name: devices\nexecute:\n  id: 42\n  target: [123456]\n"
ERROR_SPEC = (
    "name: promo\nexecute:\n  id: 42\n  target_by: user_id\n  target: [u1]\n"
    '  push_title: "{{ bonus }} EUR"\n'
)
TARGET_BY = (
    "target_by is missing, so the API reads the identifiers as device ids;"
    " set target_by (usually user_id) to say what they are"
)
UNDEFINED = (
    "'bonus' is not defined for environment 'local' (define it in the project's vars,"
    " the environment's vars or vars_files, or the spec's vars)"
)


@pytest.mark.parametrize(
    ("specs", "strict", "code"),
    [
        ({"ok.yaml": CLEAN_SPEC.format(name="ok")}, False, 0),
        ({"ok.yaml": CLEAN_SPEC.format(name="ok")}, True, 0),
        ({"devices.yaml": WARNING_SPEC}, False, 0),
        ({"devices.yaml": WARNING_SPEC}, True, 1),
        ({"promo.yaml": ERROR_SPEC}, False, 1),
    ],
    ids=["clean", "clean-strict", "warning", "warning-strict", "error"],
)
def test_exit_codes(tmp_path: Path, specs: dict[str, str], strict: bool, code: int) -> None:
    project(tmp_path, specs)
    result = cli(["lint", *(["--strict"] if strict else [])])
    assert result.exit_code == code, result.output


# --- formats, exact ---------------------------------------------------------------


@pytest.fixture
def two_findings(tmp_path: Path) -> Path:
    return project(tmp_path, {"devices.yaml": WARNING_SPEC, "promo.yaml": ERROR_SPEC})


def test_text_format(two_findings: Path) -> None:
    result = cli(["lint"])
    assert result.exit_code == 1
    assert result.stdout == (
        f"campaigns/devices.yaml:2:1: warning target-by {TARGET_BY}\n"
        f"campaigns/promo.yaml:6:15: error undefined-variable {UNDEFINED}\n"
        "2 spec file(s) checked: 1 error(s), 1 warning(s)\n"
    )


def test_json_format(two_findings: Path) -> None:
    code, document = lint_json()
    assert code == 1
    assert document == {
        "format_version": 1,
        "findings": [
            {
                "path": "campaigns/devices.yaml",
                "line": 2,
                "column": 1,
                "severity": "warning",
                "rule": "target-by",
                "message": TARGET_BY,
            },
            {
                "path": "campaigns/promo.yaml",
                "line": 6,
                "column": 15,
                "severity": "error",
                "rule": "undefined-variable",
                "message": UNDEFINED,
            },
        ],
    }


def test_github_format(two_findings: Path) -> None:
    result = cli(["lint", "--format", "github"])
    assert result.exit_code == 1
    assert result.stdout == (
        f"::warning file=campaigns/devices.yaml,line=2,col=1,title=target-by::{TARGET_BY}\n"
        "::error file=campaigns/promo.yaml,line=6,col=15,title=undefined-variable::"
        f"{UNDEFINED}\n"
    )


def test_github_format_escapes_properties(tmp_path: Path) -> None:
    project(tmp_path, {"a,b:c.yaml": WARNING_SPEC})
    result = cli(["lint", "--format", "github"])
    assert result.stdout.startswith("::warning file=campaigns/a%2Cb%3Ac.yaml,line=2,col=1,")


def test_sarif_format_is_valid_sarif_2_1_0(two_findings: Path) -> None:
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    result = cli(["lint", "--format", "sarif"])
    assert result.exit_code == 1
    log = json.loads(result.stdout)
    jsonschema.Draft7Validator(schema).validate(log)
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(RULES)
    assert [
        (
            r["ruleId"],
            rules[r["ruleIndex"]]["id"],
            r["level"],
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"],
            r["message"]["text"],
        )
        for r in run["results"]
    ] == [
        (
            "target-by",
            "target-by",
            "warning",
            "campaigns/devices.yaml",
            {"startLine": 2, "startColumn": 1},
            TARGET_BY,
        ),
        (
            "undefined-variable",
            "undefined-variable",
            "error",
            "campaigns/promo.yaml",
            {"startLine": 6, "startColumn": 15},
            UNDEFINED,
        ),
    ]


def test_sarif_schema_rejects_a_broken_log() -> None:
    """The fixture is a real schema: a log without ``runs`` is not SARIF."""
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate({"version": "2.1.0"})


def test_sarif_with_no_findings_is_valid(tmp_path: Path) -> None:
    project(tmp_path, {"ok.yaml": CLEAN_SPEC.format(name="ok")})
    result = cli(["lint", "--format", "sarif"])
    log = json.loads(result.stdout)
    jsonschema.Draft7Validator(json.loads(SARIF_SCHEMA.read_text())).validate(log)
    assert (result.exit_code, log["runs"][0]["results"]) == (0, [])


# --- PATHS, broken files, the project file -----------------------------------------------


def test_lint_paths_reports_only_the_files_named(two_findings: Path) -> None:
    code, document = lint_json(["campaigns/devices.yaml"])
    assert [(f["path"], f["rule"]) for f in document["findings"]] == [
        ("campaigns/devices.yaml", "target-by")
    ]
    assert code == 0  # the error is in a file not named


def test_lint_paths_accepts_a_folder(tmp_path: Path) -> None:
    project(tmp_path, {"a/devices.yaml": WARNING_SPEC, "b/promo.yaml": ERROR_SPEC})
    code, document = lint_json(["campaigns/b"])
    assert [(f["path"], f["rule"]) for f in document["findings"]] == [
        ("campaigns/b/promo.yaml", "undefined-variable")
    ]
    assert code == 1


def test_lint_paths_still_sees_names_in_other_files(tmp_path: Path) -> None:
    """Names are project-wide: a name also used in a file not named is still an error."""
    spec = CLEAN_SPEC.format(name="same")
    project(tmp_path, {"a.yaml": spec, "b.yaml": spec})
    everywhere = [(f["path"], f["rule"]) for f in lint_json()[1]["findings"]]
    assert everywhere == [
        ("campaigns/a.yaml", "duplicate-name"),
        ("campaigns/b.yaml", "duplicate-name"),
    ]
    code, document = lint_json(["campaigns/b.yaml"])
    assert [(f["path"], f["line"], f["rule"]) for f in document["findings"]] == [
        ("campaigns/b.yaml", 1, "duplicate-name")
    ]
    assert code == 1


def test_a_file_that_fails_to_parse_is_a_finding_and_the_others_are_checked(
    tmp_path: Path,
) -> None:
    project(
        tmp_path,
        {"broken.yaml": "name: x\nexecute: {id: 1\n", "devices.yaml": WARNING_SPEC},
        files={"campaigns/binary.yml": b"\x00\x01\x02"},
    )
    code, document = lint_json(
        ["campaigns/broken.yaml", "campaigns/devices.yaml", "campaigns/binary.yml"]
    )
    assert sorted((f["path"], f["severity"], f["rule"]) for f in document["findings"]) == [
        ("campaigns/binary.yml", "error", "yaml-syntax"),
        ("campaigns/broken.yaml", "error", "yaml-syntax"),
        ("campaigns/devices.yaml", "warning", "target-by"),
    ]
    assert code == 1


def test_unknown_field_hint_and_line(tmp_path: Path) -> None:
    project(tmp_path, {"typo.yaml": "name: typo\nexecute:\n  id: 42\n  targte: [u1]\n"})
    code, document = lint_json()
    [found] = document["findings"]
    assert (code, found["line"], found["rule"]) == (1, 4, "unknown-field")
    assert found["message"] == "execute.targte: unknown field; did you mean 'target'?"


def test_undefined_variable_is_checked_for_the_environment_chosen(tmp_path: Path) -> None:
    shutil.copytree(LINT_CASES / "undefined-variable.all-envs", tmp_path, dirs_exist_ok=True)
    assert lint_json()[1]["findings"] == []  # local defines host
    code, document = lint_json(["-e", "production"])
    assert code == 1
    assert [(f["line"], f["rule"]) for f in document["findings"]] == [(6, "undefined-variable")]
    assert "'production'" in document["findings"][0]["message"]


APPTOKEN_PROJECT = project_text() + "vars:\n  brand: Acme\n  apptoken: s3cr3t\n"


def test_apptoken_in_the_project_file_fails_lint(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {"xpdeploy.yaml": APPTOKEN_PROJECT, "campaigns/ok.yaml": CLEAN_SPEC.format(name="ok")},
    )
    result = cli(["lint"])
    assert result.exit_code == 1
    assert "xpdeploy.yaml:7:3: error apptoken-in-file never write the apptoken" in result.stdout
    assert "s3cr3t" not in result.output


def test_apptoken_in_the_project_file_is_a_json_finding(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {"xpdeploy.yaml": APPTOKEN_PROJECT, "campaigns/ok.yaml": CLEAN_SPEC.format(name="ok")},
    )
    code, document = lint_json()
    assert code == 1
    assert [
        (f["path"], f["line"], f["column"], f["severity"], f["rule"]) for f in document["findings"]
    ] == [("xpdeploy.yaml", 7, 3, "error", "apptoken-in-file")]


def test_no_project_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    result = cli(["lint"])
    assert result.exit_code == 1
    assert "no xpdeploy.yaml" in result.stderr and "Traceback" not in result.output


def test_colour_only_on_a_terminal(two_findings: Path) -> None:
    assert "\x1b[" not in cli(["lint"]).stdout  # CliRunner's stdout is not a TTY
