"""What every command starts from: the project, the environment, the variables, the clock."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from xpdeploy.errors import FindingsError, UserError
from xpdeploy.execution import Execution
from xpdeploy.lint import CheckResult, check
from xpdeploy.project import Overrides, Project, load_project
from xpdeploy.when import utcnow


@dataclass
class Session:
    """Options shared by every command, resolved once."""

    project_path: Path | None = None
    environment: str | None = None
    overrides: Overrides = field(default_factory=Overrides)
    now: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        self._project: Project | None = None
        self._checked: dict[tuple[str, ...], CheckResult] = {}

    @property
    def project(self) -> Project:
        if self._project is None:
            self._project = load_project(self.project_path)
        return self._project

    @property
    def env_name(self) -> str:
        return self.project.environment_name(self.environment)

    def check(
        self, environments: Iterable[str] | None = None, files: Iterable[Path] | None = None
    ) -> CheckResult:
        envs = list(environments) if environments is not None else [self.env_name]
        if files is not None:
            return check(self.project, envs, self.overrides, self.now, files)
        key = tuple(envs)  # apply checks before taking the lock and plans under it: once
        if key not in self._checked:
            self._checked[key] = check(self.project, envs, self.overrides, self.now)
        return self._checked[key]

    def executions(self, names: Sequence[str] = ()) -> tuple[list[Execution], CheckResult]:
        """The rendered executions of the environment; lint errors stop here."""
        result = self.check()
        if result.errors:
            raise FindingsError(result.findings)
        executions = result.executions[self.env_name]
        if names:
            executions = select(executions, names, {s.name for s in result.sources})
        return executions, result


def select(executions: list[Execution], names: Sequence[str], known: set[str]) -> list[Execution]:
    """Only the executions named; a name that no spec has is an error."""
    missing = sorted(set(names) - known)
    if missing:
        raise UserError(f"no spec named {', '.join(repr(n) for n in missing)}")
    wanted = set(names)
    return [e for e in executions if e.name in wanted]
