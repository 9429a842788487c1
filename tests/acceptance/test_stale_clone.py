"""A checkout whose ledger is behind its upstream branch: plan warns, apply refuses.

The file ledger is shared through git. A clone that has fetched the ledger commits
of another apply, but not merged them, would send those executions again; as far
as git knows (the last fetch), xpdeploy says so and sends nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import STATE, Deploy, make_project, output
from helpers import git

from xpdeploy.emulator import Emulator
from xpdeploy.git import upstream_changes


@pytest.fixture(name="clones")
def clones_fixture(tmp_path: Path, deploy_env: Emulator) -> tuple[Deploy, Deploy]:
    """Two clones of one campaigns repository, both up to date, nothing applied yet."""
    git(tmp_path, "init", "-q", "--bare", "origin.git")
    first = tmp_path / "first"
    git(tmp_path, "clone", "-q", "origin.git", "first")
    make_project(first, ["s01", "s02"])
    git(first, "add", "-A")
    git(first, "commit", "-q", "-m", "campaigns")
    git(first, "push", "-q", "origin", "HEAD:main")
    git(tmp_path, "clone", "-q", "origin.git", "second")
    return Deploy(first, deploy_env), Deploy(tmp_path / "second", deploy_env)


def _apply_and_push(deploy: Deploy) -> None:
    assert deploy.run("apply", "--auto-approve", "--project", str(deploy.root)).exit_code == 0
    git(deploy.root, "add", STATE)
    git(deploy.root, "commit", "-q", "-m", "ledger")
    git(deploy.root, "push", "-q", "origin", "HEAD:main")


def test_a_fetched_but_unmerged_ledger_blocks_apply(clones: tuple[Deploy, Deploy]) -> None:
    first, second = clones
    _apply_and_push(first)
    assert len(first.accepted) == 2

    git(second.root, "fetch", "-q")
    plan = second.plan_json("--project", str(second.root))
    assert "origin/main has 1 commit(s) changing the ledger" in plan["ledger_behind"]
    text = second.run("plan", "--project", str(second.root)).stdout
    assert "Warning: origin/main has 1 commit(s)" in text and "apply refuses" in text

    refused = second.run("apply", "--auto-approve", "--project", str(second.root))
    assert refused.exit_code == 1
    assert f"{STATE}: origin/main has 1 commit(s)" in output(refused)
    assert "pull them first" in output(refused) and "nothing was sent" in output(refused)
    assert len(first.accepted) == 2  # the second clone sent nothing
    assert not (second.root / STATE).exists()

    git(second.root, "pull", "-q", "--ff-only")
    plan = second.plan_json("--project", str(second.root))
    assert plan["ledger_behind"] is None
    assert {a["name"]: a["action"] for a in plan["actions"]} == {
        "s01": "unchanged",
        "s02": "unchanged",
    }
    assert second.run("apply", "--auto-approve", "--project", str(second.root)).exit_code == 0
    assert len(first.accepted) == 2


def test_what_was_not_fetched_is_not_known(clones: tuple[Deploy, Deploy]) -> None:
    """The limit of the check: it reads the last fetch, it does not go to the network."""
    first, second = clones
    _apply_and_push(first)
    assert second.plan_json("--project", str(second.root))["ledger_behind"] is None


def test_local_commits_of_the_ledger_are_not_behind(clones: tuple[Deploy, Deploy]) -> None:
    first, _ = clones
    assert first.run("apply", "--auto-approve", "--project", str(first.root)).exit_code == 0
    git(first.root, "add", STATE)
    git(first.root, "commit", "-q", "-m", "ledger, not pushed yet")
    assert git(first.root, "rev-parse", "--abbrev-ref", "@{upstream}").strip() == "origin/main"
    assert upstream_changes(first.root / STATE) is None
    assert first.plan_json("--project", str(first.root))["ledger_behind"] is None


def test_no_repository_or_no_upstream_is_not_behind(tmp_path: Path) -> None:
    assert upstream_changes(tmp_path / "state" / "x.jsonl") is None
    git(tmp_path, "init", "-q")
    assert upstream_changes(tmp_path / "state" / "x.jsonl") is None
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "first")
    assert upstream_changes(tmp_path / "state" / "x.jsonl") is None


def _fetched_behind(clones: tuple[Deploy, Deploy]) -> Deploy:
    first, second = clones
    _apply_and_push(first)
    git(second.root, "fetch", "-q")
    return second


def test_a_relative_project_path_is_checked_too(
    clones: tuple[Deploy, Deploy], monkeypatch: pytest.MonkeyPatch
) -> None:
    second = _fetched_behind(clones)
    monkeypatch.chdir(second.root.parent)
    for project in ("second", "second/xpdeploy.yaml", "./second/../second"):
        refused = second.run("apply", "--auto-approve", "--project", project)
        assert refused.exit_code == 1 and "pull them first" in output(refused), project
    assert len(second.accepted) == 2


def test_git_variables_of_a_hook_do_not_hide_the_upstream(
    clones: tuple[Deploy, Deploy], monkeypatch: pytest.MonkeyPatch
) -> None:
    second = _fetched_behind(clones)
    monkeypatch.chdir(second.root)
    for git_dir in (str(second.root / ".git"), ".git"):
        monkeypatch.setenv("GIT_DIR", git_dir)
        refused = second.run("apply", "--auto-approve")
        assert refused.exit_code == 1 and "pull them first" in output(refused), git_dir
    assert len(second.accepted) == 2


def test_when_git_cannot_tell_apply_sends_nothing(clones: tuple[Deploy, Deploy]) -> None:
    second = _fetched_behind(clones)
    fetched = git(second.root, "rev-parse", "origin/main").strip()
    (second.root / ".git" / "objects" / fetched[:2] / fetched[2:]).unlink()  # a broken clone
    refused = second.run("apply", "--auto-approve", "--project", str(second.root))
    assert refused.exit_code == 1
    assert "git cannot tell" in output(refused) and "nothing was sent" in output(refused)
    assert len(second.accepted) == 2


def test_an_upstream_never_fetched_is_not_behind(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--bare", "origin.git")
    git(tmp_path, "clone", "-q", "origin.git", "empty")
    assert upstream_changes(tmp_path / "empty" / STATE) is None
    git(tmp_path / "empty", "commit", "-q", "--allow-empty", "-m", "first")
    assert upstream_changes(tmp_path / "empty" / STATE) is None
