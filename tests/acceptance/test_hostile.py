"""Hostile input: each is a clean finding with exit 1, never a crash, a hang or code execution."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli, lint_json, lint_one, project, templated

LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi", strict=True)
)
pytestmark = pytest.mark.usefixtures("deadline")
HOSTILE_YAML: dict[str, tuple[str | bytes, str, str, int]] = {
    # name: (content, rule, message fragment, line)
    "billion-laughs": (LAUGHS, "yaml-syntax", "alias bomb", 6),
    "python-object-apply": (
        "name: x\nexecute: !!python/object/apply:os.system ['touch pwned']\n",
        "yaml-syntax",
        "unsupported tag !!python/object/apply:os.system",
        2,
    ),
    "python-name": (
        "name: !!python/name:os.system x\nexecute: {id: 1}\n",
        "yaml-syntax",
        "unsupported tag !!python/name:os.system",
        1,
    ),
    "python-object-new-key": (
        "? !!python/object/new:os.system [pwd]\n: 1\n",
        "yaml-syntax",
        "mapping keys must be untagged scalars",
        1,
    ),
    "custom-tag": ("name: x\nexecute: !include /etc/passwd\n", "yaml-syntax", "!include", 2),
    "set-tag": ("name: x\nexecute: !!set {a, b}\n", "yaml-syntax", "unsupported tag !!set", 2),
    "binary-tag": ("name: !!binary aGk=\n", "yaml-syntax", "unsupported tag !!binary", 1),
    "bad-int-tag": ("name: x\nrevision: !!int two\n", "yaml-syntax", "not a valid !!int", 2),
    "undefined-alias": ("name: *nowhere\n", "yaml-syntax", "alias *nowhere has no anchor", 1),
    "nul-bytes": (b"name: x\x00\x01\nexecute: {}\n", "yaml-syntax", "binary file", 1),
    "invalid-utf8": (
        b"name: x\nexecute:\n  push_text: caf\xe9\n",
        "yaml-syntax",
        "not UTF-8 text",
        3,
    ),
    "list-document": ("- name: x\n- execute: {}\n", "schema", "must be a mapping", 1),
    "scalar-document": ("just some text\n", "schema", "must be a mapping", 1),
    "second-document-scalar": (
        "name: x\nexecute: {id: 1, target_by: user_id, target: [u1]}\n---\n42\n",
        "schema",
        "must be a mapping",
        4,
    ),
}


@pytest.mark.parametrize(
    ("content", "rule", "fragment", "line"),
    list(HOSTILE_YAML.values()),
    ids=list(HOSTILE_YAML),
)
def test_hostile_yaml_is_a_finding(
    tmp_path: Path, content: str | bytes, rule: str, fragment: str, line: int
) -> None:
    found = lint_one(tmp_path, content)
    assert (found["rule"], found["severity"], found["line"]) == (rule, "error", line)
    assert fragment in str(found["message"])


CODE_EXECUTION = [
    "a: !!python/object/apply:os.system ['touch {marker}']\n",
    "a: !!python/object/apply:subprocess.call [[touch, {marker}]]\n",
    "a: !!python/object/new:subprocess.Popen [[touch, {marker}]]\n",
    "? !!python/object/apply:os.system ['touch {marker}']\n: 1\n",
]


@pytest.mark.parametrize("where", ["campaigns/x.yaml", "vars/local.yaml"])
@pytest.mark.parametrize("payload", CODE_EXECUTION)
def test_python_tags_execute_nothing(tmp_path: Path, where: str, payload: str) -> None:
    marker = tmp_path / "pwned"
    project(
        tmp_path,
        environments={"local": {"api_url": "emulator", "vars_files": ["vars/local.yaml"]}},
        files={
            "vars/local.yaml": "a: 1\n",
            "campaigns/x.yaml": "name: x\nexecute: {id: 1, target_by: user_id, target: [u]}\n",
            where: payload.format(marker=marker),
        },
    )
    code, document = lint_json()
    assert [(f["path"], f["line"], f["rule"]) for f in document["findings"]] == [
        (where, 1, "yaml-syntax")
    ]
    assert code == 1
    assert not marker.exists()


HOSTILE_TEMPLATES = {
    "str-mro": ("{{ ''.__class__.__mro__ }}", "unsafe"),
    "cycler-globals": ("{{ cycler.__init__.__globals__ }}", "unsafe"),
    "lipsum-globals": ("{{ lipsum.__globals__['os'] }}", "unsafe"),
    "namespace-globals": ("{{ namespace.__init__.__globals__ }}", "unsafe"),
    "self-reference": ("{{ self.__init__ }}", "unsafe"),
    "format-escape": ("{{ '{0.__class__}'.format(1) }}", "unsafe"),
    "include-file": ("{% include '/etc/passwd' %}", "no loader"),
    "import-module": ("{% import 'os' as os %}", "no loader"),
    "huge-range": ("{{ range(10**9)|list }}", "1000000000"),
    "nested-loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "loop at most 1000000 times",
    ),
    "string-times": ("{{ 'a' * 10**9 }}", "result longer than 1000000"),
    "times-string": ("x{{ 10**9 * 'a' }}", "result longer than 1000000"),
    "list-times": ("{{ [0] * 10**9 }}", "result longer than 1000000"),
    "growing-product": ("{{ ('a' * 999999) * 999999 }}", "result longer than 1000000"),
    "huge-power": ("{{ 7 ** 1000000 }}", "power too large"),
    "macro-recursion": (
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "templates may not recurse this deep",
    ),
    "deep-brackets": ("{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}", "may not recurse this deep"),
    "concat-doubling": (
        "{% set a = 'x' * 999999 %}" + "{% set a = a ~ a %}" * 11,
        "result longer than 1000000",
    ),
    "plus-doubling": (
        "{% set a = 'x' * 999999 %}" + "{% set a = a + a %}" * 11,
        "result longer than 1000000",
    ),
}


@pytest.mark.parametrize(
    ("expression", "fragment"), list(HOSTILE_TEMPLATES.values()), ids=list(HOSTILE_TEMPLATES)
)
def test_hostile_template_is_a_finding(tmp_path: Path, expression: str, fragment: str) -> None:
    found = lint_one(tmp_path, templated(expression))
    assert (found["rule"], found["line"], found["column"]) == ("template-syntax", 6, 14)
    assert fragment in str(found["message"])


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, "a: " + "{a: " * 100_000, "- " * 5_000 + "x\n", "[" * 66 + "]" * 66],
    ids=["flow-sequences", "flow-mappings", "block-sequences", "just-over-the-limit"],
)
def test_deep_nesting_is_a_finding_not_a_segfault(tmp_path: Path, text: str) -> None:
    """In a subprocess: a crash of the C composer must fail this test, not kill pytest."""
    project(tmp_path, files={"campaigns/deep.yaml": text})
    run = subprocess.run(
        [sys.executable, "-c", "from xpdeploy.cli import main; main()", "lint", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1, (
        f"exit {run.returncode} (negative: killed by a signal)\n{run.stderr}"
    )
    [found] = json.loads(run.stdout)["findings"]
    assert (found["path"], found["rule"]) == ("campaigns/deep.yaml", "yaml-syntax")
    assert "nesting deeper than 64 levels" in found["message"]


def test_nesting_within_the_limit_is_fine(tmp_path: Path) -> None:
    deep = "[" * 60 + "1" + "]" * 60
    spec = (
        f"name: x\nexecute: {{id: 1, target_by: user_id, target: [u1], extra: {{deep: {deep}}}}}\n"
    )
    project(tmp_path, {"x.yaml": spec})
    assert lint_json() == (0, {"format_version": 1, "findings": []})


def test_hostile_project_file_is_a_message(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / "xpdeploy.yaml").write_text(LAUGHS)
    result = cli(["lint"])
    assert result.exit_code == 1
    assert "xpdeploy.yaml:6:8: error yaml-syntax aliases expand to more than" in result.stdout
    assert "internal error" not in result.output


# --- limits beyond * and ** (fixed in 70a6791) -------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "{{ 'a'|center(10**7) }}",
        "{{ 'a'.ljust(10**7) }}",
        "{{ 'a'|indent(10**7, true) }}",
        "{{ '{:>10000000}'.format(1) }}",
        "{{ '%10000000s' % 'a' }}",
        "{{ '{:>\u0669\u0669\u0669\u0669\u0669\u0669\u0669\u0669}'.format(1) }}",  # width 99999999
        "{% for i in range(20) %}{{ 'a' * 99999 }}{% endfor %}",
    ],
)
def test_string_growth_by_filters_and_methods_is_limited(tmp_path: Path, expression: str) -> None:
    found = lint_one(tmp_path, templated(expression))
    assert (found["rule"], found["line"]) == ("template-syntax", 6)
    assert "not allowed in a template" in str(found["message"])


def test_huge_integer_scalar_is_a_finding(tmp_path: Path) -> None:
    found = lint_one(tmp_path, "name: x\nexecute:\n  id: " + "1" * 5000 + "\n")
    assert (found["rule"], found["line"], found["column"]) == ("yaml-syntax", 3, 7)


def test_template_folding_to_infinity_is_a_finding(tmp_path: Path) -> None:
    assert lint_one(tmp_path, templated("{{ 1e999 }}"))["rule"] == "template-syntax"


@pytest.mark.parametrize(
    "value", ['"{{ 9 ** 25000 }}"', '"{{ 2 ** 64 }}"', ".inf", '"{{ -1e308 * 10 }}"']
)
def test_numbers_json_cannot_carry_are_findings(tmp_path: Path, value: str) -> None:
    """Lint catches them, so render never crashes on them nor prints Infinity."""
    project(
        tmp_path,
        {
            "x.yaml": f"name: x\nexecute: {{id: 1, target_by: user_id, target: [u], params: {{n: {value}}}}}\n"
        },
    )
    lint, render = cli(["lint"]), cli(["render"])
    assert "internal error" not in lint.stderr + render.stderr
    assert (lint.exit_code, render.exit_code) == (1, 1)
    assert "Infinity" not in render.stdout


@pytest.mark.parametrize(
    "template",
    [
        "{% set l = ['a' * 999999] * 999999 %}{{ l | join }}",  # small in memory, huge joined
        "x{% set l = ['a' * 999999] * 999 %}{{ l }}",
        "{{ ['a' * 999999] * 999 }}",
    ],
)
def test_lists_of_long_strings_count_their_characters(tmp_path: Path, template: str) -> None:
    project(
        tmp_path,
        {
            "l.yaml": f"name: l\nexecute: {{id: 1, target: [u], push_text: {json.dumps(template)}}}\n"
        },
    )
    result = cli(["lint"])
    assert result.exit_code == 1
    assert "template-syntax" in result.stdout and "internal error" not in result.output


@pytest.mark.parametrize("template", ["{{ [1, 2, 3] | random }}", "{{ lipsum() }}"])
def test_templates_are_deterministic(tmp_path: Path, template: str) -> None:
    """What a pull request reviewed is what CI re-renders and sends."""
    project(
        tmp_path,
        {
            "r.yaml": f"name: r\nexecute: {{id: 1, target: [u], push_text: {json.dumps(template)}}}\n"
        },
    )
    result = cli(["lint"])
    assert result.exit_code == 1
    assert "would not be the body reviewed" in result.stdout
