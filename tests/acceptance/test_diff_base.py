"""`xpdeploy diff --base REF`: getting the base out of git (SPEC §4). The repository is
left as it was; a base that does not lint or has no project is a note; a bad ref, no git
repository or a work tree that does not lint is an error; the project may sit in a
subfolder, and git attributes do not change the base.

What changed, in each format, and the exit codes: test_diff.py. The shared builders are
in helpers.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from helpers import (
    ENVS,
    changed,
    cli,
    commit,
    diff_json,
    git,
    make_tree,
    project,
    project_text,
    spec,
    write_spec,
)

# --- the repository is left as it was -------------------------------------------------


def repo_state(root: Path) -> tuple[str, ...]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts)
    return (
        git(root, "status", "--porcelain", "--untracked-files=all"),
        git(root, "diff", "--cached"),
        git(root, "diff"),
        git(root, "rev-parse", "HEAD"),
        git(root, "stash", "list"),
        *(f"{p}:{p.read_text(encoding='utf-8')}" for p in files),
    )


def test_work_tree_and_index_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path.parent / f"{tmp_path.name}-tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    project(tmp_path, {f"{n}.yaml": spec(n) for n in ("staged", "unstaged", "same")}, ENVS)
    commit(tmp_path)
    write_spec(tmp_path, "staged", text="staged edit")
    git(tmp_path, "add", "campaigns/staged.yaml")
    write_spec(tmp_path, "unstaged", text="unstaged edit")
    write_spec(tmp_path, "untracked")
    before = repo_state(tmp_path)
    assert "M  campaigns/staged.yaml" in before[0] and " M campaigns/unstaged.yaml" in before[0]
    for fmt in ("text", "json", "markdown"):
        assert cli(["diff", "--base", "HEAD", "--format", fmt]).exit_code == 0
    assert repo_state(tmp_path) == before
    assert list(scratch.iterdir()) == []  # the checkout of the base is cleaned up
    document = diff_json()
    assert changed(document) == {
        (env, name, kind)
        for env in ENVS
        for name, kind in (("staged", "modified"), ("unstaged", "modified"), ("untracked", "added"))
    }


# --- a base that does not lint, bad refs, a broken work tree ------------------------------

BROKEN = {
    "yaml": "name: bad\nexecute: [\n",
    "undefined-variable": spec("bad", text="{{ not_defined_anywhere }}"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_base_that_does_not_lint_is_a_note(tmp_path: Path, kind: str) -> None:
    project(tmp_path, {"good.yaml": spec("good"), "bad.yaml": BROKEN[kind]}, ENVS)
    commit(tmp_path)
    write_spec(tmp_path, "bad", text="fixed")
    document = diff_json()
    assert changed(document) == {(env, "bad", "added") for env in ENVS}
    assert any("HEAD" in note for note in document["notes"]), document["notes"]
    text = cli(["diff", "--base", "HEAD", "--detailed-exitcode"])
    assert text.exit_code == 2 and "note:" in text.stdout
    assert "+ local/bad added" in text.stdout
    markdown = cli(["diff", "--base", "HEAD", "--format", "markdown"]).stdout
    assert "\n> " in markdown and "HEAD" in markdown


def test_base_project_file_invalid_is_a_note(tmp_path: Path) -> None:
    project(tmp_path, {"a.yaml": spec("a")}, ENVS)
    make_tree(tmp_path, {"xpdeploy.yaml": "version: 1\nenvironments: {}\nbogus: 1\n"})
    commit(tmp_path)
    make_tree(tmp_path, {"xpdeploy.yaml": project_text(ENVS)})
    document = diff_json()
    assert changed(document) == {(env, "a", "added") for env in ENVS}
    assert len(document["notes"]) == 1 and "HEAD" in document["notes"][0]


def test_base_project_file_note_names_no_temporary_folder(tmp_path: Path) -> None:
    project(tmp_path, {"a.yaml": spec("a")}, ENVS)
    make_tree(tmp_path, {"xpdeploy.yaml": "version: 1\nenvironments: {}\nbogus: 1\n"})
    commit(tmp_path)
    make_tree(tmp_path, {"xpdeploy.yaml": project_text(ENVS)})
    note = diff_json()["notes"][0]
    assert "xpdeploy-base-" not in note and "the above" not in note


def test_project_missing_at_base_makes_everything_added(tmp_path: Path) -> None:
    make_tree(tmp_path, {"README.md": "nothing here yet\n"})
    commit(tmp_path)
    project(tmp_path, {"a.yaml": spec("a"), "b.yaml": spec("b")}, ENVS)
    document = diff_json()
    assert changed(document) == {(e, n, "added") for e in ENVS for n in ("a", "b")}
    assert len(document["notes"]) == 1 and "xpdeploy.yaml" in document["notes"][0]


def test_unknown_ref_is_an_error_naming_it(tmp_path: Path) -> None:
    project(tmp_path, {"a.yaml": spec("a")}, ENVS)
    commit(tmp_path)
    result = cli(["diff", "--base", "no-such-branch"])
    assert result.exit_code == 1
    assert "no-such-branch" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_outside_a_git_repository_is_an_error(tmp_path: Path) -> None:
    project(tmp_path, {"a.yaml": spec("a")}, ENVS)
    result = cli(["diff", "--base", "HEAD"])
    assert result.exit_code == 1 and "Error" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_work_tree_that_does_not_lint_fails_with_the_findings(tmp_path: Path) -> None:
    project(tmp_path, {"a.yaml": spec("a")}, ENVS)
    commit(tmp_path)
    make_tree(tmp_path, {"campaigns/a.yaml": spec("a", text="{{ missing_var }}")})
    result = cli(["diff", "--base", "HEAD", "--detailed-exitcode"])
    assert result.exit_code == 1
    assert "campaigns/a.yaml" in result.stderr and "undefined-variable" in result.stderr
    assert "missing_var" in result.stderr and result.stdout == ""


# --- where it runs from ---------------------------------------------------------------------


def test_project_in_a_subfolder_of_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "deploy" / "xp"
    project(sub, {"a.yaml": spec("a"), "b.yaml": spec("b")}, ENVS)
    make_tree(tmp_path, {"README.md": "repo\n", "other/notes.txt": "x\n"})
    commit(tmp_path)
    write_spec(sub, "a", text="edited")
    expected = {(env, "a", "modified") for env in ENVS}
    assert changed(diff_json("--project", "deploy/xp/xpdeploy.yaml")) == expected
    assert changed(diff_json("--project", "deploy/xp")) == expected
    monkeypatch.chdir(sub / "campaigns")  # found in a parent folder
    assert changed(diff_json()) == expected
    monkeypatch.chdir(tmp_path / "other")
    assert changed(diff_json("--project", "../deploy/xp/xpdeploy.yaml")) == expected


def test_export_ignore_attribute_does_not_hide_the_base(tmp_path: Path) -> None:
    project(tmp_path / "ops", {"a.yaml": spec("a")}, ENVS)
    make_tree(tmp_path, {".gitattributes": "ops export-ignore\n"})
    commit(tmp_path)
    document = diff_json("--project", "ops/xpdeploy.yaml")
    assert document["changes"] == [] and document["notes"] == []


def test_export_subst_attribute_does_not_change_the_base(tmp_path: Path) -> None:
    project(tmp_path, {"a.yaml": spec("a", text="$Format:%H$")}, ENVS)
    make_tree(tmp_path, {".gitattributes": "*.yaml export-subst\n"})
    commit(tmp_path)
    assert diff_json()["changes"] == []


def test_git_variables_of_a_hook_do_not_change_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a git hook GIT_DIR is set; the base still comes from the project's repository."""
    other = tmp_path.parent / f"{tmp_path.name}-other"
    other.mkdir()
    commit(other, "unrelated")
    project(tmp_path, {"a.yaml": spec("a")}, ENVS)
    commit(tmp_path)
    write_spec(tmp_path, "a", text="changed")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    assert changed(diff_json()) == {("local", "a", "modified"), ("staging", "a", "modified")}
