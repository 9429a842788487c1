"""The one exception family for problems the user must fix, and the exit codes."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from xpdeploy.findings import Finding, Severity


class ExitCode(IntEnum):
    """Process exit codes; SPEC §4 is the contract."""

    OK = 0
    ERROR = 1
    CHANGES = 2  # --detailed-exitcode: something to send / something differs


class UserError(Exception):
    """Something the user must fix. Caught once, at the CLI boundary.

    The message says what is wrong and what to do; ``path``/``line`` say where.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = self.path
            if self.line:
                where += f":{self.line}"
                if self.column:
                    where += f":{self.column}"
            where += ": "
        return where + self.message


class FindingsError(UserError):
    """Lint errors that stop a command; the findings travel with the error."""

    def __init__(self, findings: Sequence[Finding], message: str | None = None) -> None:
        errors = [f for f in findings if f.severity is Severity.ERROR]
        super().__init__(
            message
            or f"{len(errors)} lint error(s): fix them first (run `xpdeploy lint` to see them all)"
        )
        self.findings = sorted(findings)
