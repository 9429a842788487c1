"""What a merge would change: the project at a git ref against the work tree (SPEC §4 diff)."""

from __future__ import annotations

import difflib
import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from xpdeploy.canonical import pretty_json
from xpdeploy.errors import UserError
from xpdeploy.execution import Execution
from xpdeploy.lint import CheckResult
from xpdeploy.redact import redact
from xpdeploy.session import FindingsError, Session


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
        }


@dataclass
class DiffResult:
    base: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _git(args: Sequence[str], cwd: Path) -> bytes:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True).stdout
    except FileNotFoundError:
        raise UserError("diff needs git on the PATH") from None
    except subprocess.CalledProcessError as exc:
        message = exc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UserError(f"git {' '.join(args)}: {message[-1] if message else 'failed'}") from None


@contextmanager
def checkout(root: Path, ref: str) -> Iterator[Path]:
    """The repository's tree at ``ref`` in a temporary folder; the work tree and index untouched."""
    top = Path(_git(["rev-parse", "--show-toplevel"], root).decode().strip())
    try:
        _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], top)
    except UserError:
        raise UserError(
            f"unknown git ref {ref!r} (in CI, check out with fetch-depth: 0 so the base branch exists)"
        ) from None
    archive = _git(["archive", "--format=tar", ref], top)
    with tempfile.TemporaryDirectory(prefix="xpdeploy-base-") as folder:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            _extract(tar, folder)
        yield Path(folder) / root.resolve().relative_to(top.resolve())


def _extract(tar: tarfile.TarFile, folder: str) -> None:
    if hasattr(tarfile, "data_filter"):
        tar.extractall(folder, filter="data")
        return
    # Pythons before the extraction filters: git archives hold no absolute or .. paths,
    # but check rather than trust.
    for member in tar.getmembers():
        if (
            member.name.startswith("/")
            or ".." in Path(member.name).parts
            or member.issym()
            or member.islnk()
        ):
            continue
        tar.extract(member, folder)


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
            except UserError as exc:
                result.notes.append(f"the project at {base} cannot be read: {exc}")
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
