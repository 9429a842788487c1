"""Questions asked of the git repository around the project; git missing is no error.

`diff --base` reads whole trees and reports git's errors itself (:mod:`xpdeploy.diff`);
these are the small questions whose answer is "unknown" outside a repository.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def output(args: list[str], cwd: Path) -> str | None:
    """What ``git ARGS`` prints, or None when git is missing or the command fails."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def head_commit(folder: Path) -> str | None:
    """HEAD of the repository holding ``folder``, with ``-dirty`` for uncommitted changes."""
    head = output(["rev-parse", "HEAD"], folder)
    dirty = output(["status", "--porcelain", "--untracked-files=no"], folder)
    if head is None or dirty is None:
        return None
    return f"{head}-dirty" if dirty else head


def upstream_changes(path: Path) -> str | None:
    """Why the checkout's copy of ``path`` is behind: the upstream branch, as last fetched,
    has commits that change it and are not in HEAD. None when it has none, or when there
    is no repository, no upstream or no git to ask."""
    folder = path.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    commits = output(
        ["--literal-pathspecs", "log", "--format=%h", "HEAD..@{upstream}", "--", str(path)], folder
    )
    if not commits:
        return None
    upstream = output(["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}"], folder)
    count = len(commits.splitlines())
    return (
        f"{upstream or 'the upstream branch'} has {count} commit(s) changing the ledger that"
        " this checkout does not have (as of the last fetch): pull them first, or executions"
        " they record as sent would be sent again"
    )
