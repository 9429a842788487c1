"""What a merge would change: the project at a git ref against the work tree (SPEC §4 diff)."""

from __future__ import annotations

import difflib
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from xpdeploy.canonical import pretty_json
from xpdeploy.errors import FindingsError, UserError
from xpdeploy.execution import Execution
from xpdeploy.git import environment
from xpdeploy.lint import CheckResult
from xpdeploy.redact import redact
from xpdeploy.session import Session


@dataclass(frozen=True)
class Change:
    environment: str
    name: str
    change: str  # added | removed | modified
    diff: str
    redacted_only: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "environment": self.environment,
            "name": self.name,
            "change": self.change,
            "diff": self.diff,
            "redacted_only": self.redacted_only,
        }


@dataclass
class DiffResult:
    base: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _git(args: Sequence[str], cwd: Path) -> bytes:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=environment(), capture_output=True, check=True
        ).stdout
    except FileNotFoundError:
        raise UserError("diff needs git on the PATH") from None
    except subprocess.CalledProcessError as exc:
        message = exc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UserError(f"git {' '.join(args)}: {message[-1] if message else 'failed'}") from None


@contextmanager
def checkout(root: Path, ref: str) -> Iterator[Path]:
    """The repository's tree at ``ref`` in a temporary folder; the work tree and index untouched."""
    try:
        top = Path(_git(["rev-parse", "--show-toplevel"], root).decode().strip())
    except UserError as exc:
        raise UserError(f"diff compares against git history: {exc.message}") from None
    try:
        _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], top)
    except UserError:
        raise UserError(
            f"unknown git ref {ref!r} (in CI, check out with fetch-depth: 0 so the base branch exists)"
        ) from None
    prefix = root.resolve().relative_to(top.resolve()).as_posix()
    with tempfile.TemporaryDirectory(prefix="xpdeploy-base-") as folder:
        _write_tree(top, ref, "" if prefix == "." else prefix, Path(folder))
        yield Path(folder) / prefix


def _write_tree(top: Path, ref: str, prefix: str, folder: Path) -> None:
    """The blobs under ``prefix`` at ``ref``, byte for byte.

    Read with ls-tree and cat-file rather than ``git archive``, whose export-ignore
    and export-subst attributes would hide or rewrite files.
    """
    listing = _git(["ls-tree", "-r", "-z", "--full-tree", ref, "--", prefix or "."], top)
    entries = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, _, raw_name = record.partition(b"\t")
        mode, kind, sha = meta.split()
        if kind == b"blob" and mode in (b"100644", b"100755"):  # no links, no submodules
            entries.append((sha.decode(), raw_name.decode("utf-8", "surrogateescape")))
    if not entries:
        return
    shas = "".join(f"{sha}\n" for sha, _ in entries).encode()
    try:
        out = subprocess.run(
            ["git", "cat-file", "--batch"],
            cwd=top,
            env=environment(),
            input=shas,
            capture_output=True,
            check=True,
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise UserError(f"git cat-file: {exc.stderr.decode('utf-8', 'replace').strip()}") from None
    position = 0
    base = folder.resolve()
    for _sha, name in entries:
        header_end = out.index(b"\n", position)
        size = int(out[position:header_end].split()[2])
        content = out[header_end + 1 : header_end + 1 + size]
        position = header_end + 1 + size + 1  # the content is followed by a newline
        target = (base / name).resolve()
        if base not in target.parents:
            continue  # git paths are relative; be sure anyway
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def _bodies(result: CheckResult, environments: Sequence[str]) -> dict[tuple[str, str], Execution]:
    return {(env, ex.name): ex for env in environments for ex in result.executions.get(env, [])}


def _lines(ex: Execution | None, paths: Sequence[str]) -> list[str]:
    if ex is None:
        return []
    return pretty_json(redact(ex.body, paths)).splitlines(keepends=True)


def compare(session: Session, base: str, environments: Sequence[str] | None = None) -> DiffResult:
    """Every execution whose request body differs between ``base`` and the work tree."""
    project = session.project
    envs = list(environments or project.config.environments)
    head = session.check(envs)
    if head.errors:
        raise FindingsError(head.findings)
    result = DiffResult(base)
    base_result = CheckResult()
    relative = project.file.relative_to(project.root)
    with checkout(project.root, base) as folder:
        if not (folder / relative).is_file():
            result.notes.append(f"{relative} does not exist at {base}: everything is new")
        else:
            base_session = Session(folder / relative, None, session.overrides, session.now)
            try:
                known = [e for e in envs if e in base_session.project.config.environments]
                base_result = base_session.check(known)
            except FindingsError as exc:
                first = exc.findings[0]
                result.notes.append(
                    f"{relative} at {base} is not valid ({first.rule}: {first.message}, line"
                    f" {first.line}): its executions show as added"
                )
            except UserError as exc:
                result.notes.append(f"the project at {base} cannot be read: {exc.message}")
            if base_result.errors:
                result.notes.append(
                    f"the project at {base} has {len(base_result.errors)} lint error(s);"
                    " executions that did not render there show as added"
                )
    paths = project.config.review.redact
    before, after = _bodies(base_result, envs), _bodies(head, envs)
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None and old.sha256 == new.sha256:
            continue
        change = "added" if old is None else "removed" if new is None else "modified"
        env, name = key
        text = "".join(
            difflib.unified_diff(
                _lines(old, paths),
                _lines(new, paths),
                f"{base}/{env}/{name}",
                f"work-tree/{env}/{name}",
            )
        )
        result.changes.append(Change(env, name, change, text, redacted_only=not text))
    return result
