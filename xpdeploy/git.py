"""Questions asked of the git repository around the project.

`diff --base` reads whole trees and reports git's errors itself (:mod:`xpdeploy.diff`);
these are the small questions whose answer may be "no repository here".
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Variables that point git at another repository than the folder it runs in (set in
# git hooks, or exported by hand); `git rev-parse --local-env-vars` lists them.
_REPOSITORY_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_PREFIX",
    "GIT_NAMESPACE",
    "GIT_SHALLOW_FILE",
    "GIT_IMPLICIT_WORK_TREE",
)
# What git says, with LC_ALL=C, when a question has no answer rather than a problem.
_NO_REPOSITORY = "not a git repository"
_NO_UPSTREAM = (
    "no upstream configured",  # a branch that tracks nothing
    "does not point to a branch",  # a detached HEAD
    "no such branch",  # no commit yet
    "unknown revision",  # the upstream was never fetched (a clone of an empty repository)
)


def environment() -> dict[str, str]:
    """The environment for git about the folder it runs in, with its messages in English."""
    env = {k: v for k, v in os.environ.items() if k not in _REPOSITORY_VARIABLES}
    env["LC_ALL"] = "C"
    env.pop("LANGUAGE", None)
    return env


@dataclass(frozen=True)
class Answer:
    ok: bool
    out: str
    err: str


def ask(args: list[str], cwd: Path) -> Answer | None:
    """``git ARGS`` in ``cwd``; None when git is not installed."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=environment(), capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return Answer(done.returncode == 0, done.stdout.strip(), done.stderr.strip())


def head_commit(folder: Path) -> str | None:
    """HEAD of the repository holding ``folder``, with ``-dirty`` for uncommitted changes."""
    head = ask(["rev-parse", "HEAD"], folder)
    dirty = ask(["status", "--porcelain", "--untracked-files=no"], folder)
    if not (head and head.ok and dirty and dirty.ok):
        return None
    return f"{head.out}-dirty" if dirty.out else head.out


def upstream_changes(path: Path) -> str | None:
    """Why the checkout's copy of ``path`` may be behind: the upstream branch, as last
    fetched, has commits that change it and are not in HEAD, or git cannot tell. None
    when it has none, or when there is no repository, no upstream or no git to ask."""
    path = path.resolve()
    folder = path.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    upstream = ask(["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}"], folder)
    if upstream is None:
        return None
    if not upstream.ok:
        return None if _unknowable(upstream.err) else _cannot_tell(upstream)
    log = ["--literal-pathspecs", "log", "--format=%h", "HEAD..@{upstream}", "--", str(path)]
    commits = ask(log, folder)
    if commits is None or not commits.ok:
        return _cannot_tell(commits)
    count = len(commits.out.splitlines())
    if not count:
        return None
    return (
        f"{upstream.out} has {count} commit(s) changing the ledger that this checkout does"
        " not have (as of the last fetch): pull them first, or executions they record as"
        " sent would be sent again"
    )


def _unknowable(message: str) -> bool:
    return _NO_REPOSITORY in message or any(reason in message for reason in _NO_UPSTREAM)


def _cannot_tell(answer: Answer | None) -> str:
    problem = answer.err.splitlines()[-1] if answer and answer.err else "git failed"
    return (
        "git cannot tell whether the upstream branch has ledger commits this checkout lacks,"
        f" which would be sent again ({problem})"
    )


def tracked_in_head(path: Path) -> bool:
    """Whether ``path`` is a file in the HEAD commit of the repository around it."""
    folder = path.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    answer = ask(["ls-tree", "--name-only", "HEAD", "--", os.path.relpath(path, folder)], folder)
    return bool(answer and answer.ok and answer.out)
