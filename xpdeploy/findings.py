"""Findings are data: a frozen, sortable record per problem, and the rule registry."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    summary: str


_RULES = [
    Rule(
        "yaml-syntax",
        Severity.ERROR,
        "The file is not valid YAML, or uses a feature xpdeploy refuses.",
    ),
    Rule("duplicate-key", Severity.ERROR, "A mapping has the same key twice."),
    Rule(
        "lossy-number",
        Severity.WARNING,
        "A number whose text YAML does not keep: 00123 is read as 123, +3538 as 3538.",
    ),
    Rule("schema", Severity.ERROR, "The spec or request body does not match the JSON Schema."),
    Rule(
        "unknown-field",
        Severity.ERROR,
        "A key the schema does not know (put new API fields under execute.extra).",
    ),
    Rule(
        "template-syntax", Severity.ERROR, "A Jinja template does not compile or fails to render."
    ),
    Rule(
        "undefined-variable", Severity.ERROR, "A Jinja variable is not defined for the environment."
    ),
    Rule("target-conflict", Severity.ERROR, "Both target and target_with_params are set."),
    Rule("target-by", Severity.WARNING, "target_by is missing: the API falls back to device ids."),
    Rule(
        "time-format",
        Severity.ERROR,
        "time is neither 'YYYY-MM-DD HH:MM UTC' nor ISO-8601 with an offset.",
    ),
    Rule("time-past", Severity.WARNING, "time is in the past: plan blocks a send of it."),
    Rule(
        "retry-period",
        Severity.ERROR,
        "retry_for and retry_for_period must come together, with a known unit.",
    ),
    Rule(
        "message-type", Severity.ERROR, "messages keys must be message types 1, 2, 3, 6, 7, 8 or 9."
    ),
    Rule(
        "apptoken-in-file",
        Severity.ERROR,
        "An apptoken is written in a file; it belongs in an environment variable.",
    ),
    Rule(
        "secret-in-file",
        Severity.ERROR,
        "A password is written in a `state:` URL; libpq reads it from PGPASSWORD or ~/.pgpass.",
    ),
    Rule("duplicate-name", Severity.ERROR, "Two specs share a name."),
    Rule(
        "duplicate-external-message-id",
        Severity.ERROR,
        "Two executions in one environment share params.external_message_id.",
    ),
    Rule(
        "no-audience",
        Severity.WARNING,
        "No target of any kind: the campaign's own segment would be used.",
    ),
    Rule(
        "max-targets", Severity.ERROR, "More recipients than the environment's guards.max_targets."
    ),
]

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}


@dataclass(frozen=True, order=True)
class Finding:
    """One problem at a 1-based line and column of a source file."""

    path: str
    line: int
    column: int
    severity: Severity
    rule: str
    message: str

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown rule id {self.rule!r}")

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "severity": self.severity.value,
            "rule": self.rule,
            "message": self.message,
        }


def finding(
    rule: str,
    message: str,
    path: str,
    line: int = 1,
    column: int = 1,
    severity: Severity | None = None,
) -> Finding:
    """A finding with the rule's default severity unless one is given."""
    return Finding(path, line, column, severity or RULES[rule].severity, rule, message)
