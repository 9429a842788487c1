"""What the GitHub workflows do: the plan workflow reads only and has no secrets; apply runs
staging before production, is never cancelled and always commits the ledger; every script
runs under bash with pipefail, actions are pinned, and CI runs every check.

Whether they pass actionlint and call only real xpdeploy commands: test_workflows.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, WORKFLOW_FILES, WORKFLOWS, load_workflow, workflow_jobs, workflow_steps

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
    workflow = load_workflow(path)
    uses = [s for s in _strings(workflow) if re.search(r"\bsecrets\b\s*[.\[]", s)]
    assert not uses, f"the plan workflow must not read secrets: {uses}"
    assert not any(
        "secrets" in job or "secrets" in job.get("with", {})
        for job in workflow_jobs(workflow).values()
    )
    assert set(workflow["on"]) == {"pull_request"}, "never pull_request_target"
    assert "permissions" in workflow, "set workflow permissions: the default token may write"
    assert _permissions_read_only(workflow["permissions"], set()) == []
    for job_id, job in workflow_jobs(workflow).items():
        assert _permissions_read_only(job.get("permissions", {}), {"pull-requests"}) == [], job_id
    plan = workflow_jobs(workflow)["plan"]
    assert plan["permissions"]["pull-requests"] == "write"
    assert plan["strategy"]["matrix"]["environment"] == ["staging", "production"]
    checkouts = [
        s for _, s in workflow_steps(workflow) if s.get("uses", "").startswith("actions/checkout")
    ]
    assert all(s.get("with", {}).get("fetch-depth") == 0 for s in checkouts)


def test_plan_workflow_comments_by_marker() -> None:
    workflow = load_workflow(WORKFLOWS / "campaigns-plan.yml")
    scripts = [
        s["with"]["script"]
        for _, s in workflow_steps(workflow)
        if s.get("uses", "").startswith("actions/github-script@")
    ]
    assert len(scripts) == 1
    script = scripts[0]
    assert "<!-- xpdeploy plan: ${env} -->" in script
    assert "updateComment" in script and "createComment" in script
    assert 'readFileSync("plan.md"' in script
    runs = "\n".join(s.get("run", "") for _, s in workflow_steps(workflow))
    assert "--detailed-exitcode" not in runs, "plan/diff exit 2 would fail the job"


# --- the apply workflow: ordered, never cancelled, ledger always committed ---------------


def _apply_jobs() -> dict[str, Any]:
    return workflow_jobs(load_workflow(WORKFLOWS / "campaigns-apply.yml"))


def _project() -> Any:
    return load_workflow(REPO / "xpdeploy.yaml")


def _ci_environments() -> list[str]:
    """The project's environments that talk to a real API: the ones CI must plan and apply."""
    environments = _project()["environments"]
    return [name for name, env in environments.items() if env.get("api_url") != "emulator"]


def test_workflows_cover_exactly_the_projects_real_environments() -> None:
    """An environment added to xpdeploy.yaml but not to the workflows is never applied."""
    plan = workflow_jobs(load_workflow(WORKFLOWS / "campaigns-plan.yml"))["plan"]
    assert plan["strategy"]["matrix"]["environment"] == _ci_environments()
    assert list(_apply_jobs()) == _ci_environments()


def test_apply_workflow_triggers() -> None:

    on = load_workflow(WORKFLOWS / "campaigns-apply.yml")["on"]
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
        assert load_workflow(path)["defaults"]["run"]["shell"] == "bash", path.name


def test_actions_are_pinned_to_a_major() -> None:
    for path in WORKFLOW_FILES:
        for where, step in workflow_steps(load_workflow(path)):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), f"{path.name}:{where}"


def test_ci_runs_the_checks_on_every_python() -> None:
    workflow = load_workflow(WORKFLOWS / "ci.yml")
    job = workflow_jobs(workflow)["test"]
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
