"""The checks of SPEC §5: per-execution rules, cross-execution rules, and the run of all."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from xpdeploy.execution import Execution, SpecSource, load_specs, render_execution
from xpdeploy.findings import Finding, Severity
from xpdeploy.loader import Document
from xpdeploy.model import Environment
from xpdeploy.project import Overrides, Project

Rule = Callable[[Execution, Document, Environment, datetime], Iterable[Finding]]
RULE_CHECKS: list[Rule] = []


def rule(check: Rule) -> Rule:
    """Register a per-execution rule."""
    RULE_CHECKS.append(check)
    return check


@rule
def target_conflict(
    ex: Execution, doc: Document, env: Environment, now: datetime
) -> Iterable[Finding]:
    if "target" in ex.body and "target_with_params" in ex.body:
        yield doc.at(
            ("execute", "target_with_params"),
            "target-conflict",
            "target and target_with_params are alternatives: keep one (target_with_params"
            " when recipients need their own variables)",
            key=True,
        )


@rule
def target_by(ex: Execution, doc: Document, env: Environment, now: datetime) -> Iterable[Finding]:
    targeted = "target" in ex.body or "target_with_params" in ex.body
    if targeted and "target_by" not in ex.body:
        yield doc.at(
            ("execute",),
            "target-by",
            "target_by is missing, so the API reads the identifiers as device ids;"
            " set target_by (usually user_id) to say what they are",
            key=True,
        )


@rule
def retry_period(
    ex: Execution, doc: Document, env: Environment, now: datetime
) -> Iterable[Finding]:
    has_for, has_period = "retry_for" in ex.body, "retry_for_period" in ex.body
    if has_for != has_period:
        present = "retry_for" if has_for else "retry_for_period"
        missing = "retry_for_period" if has_for else "retry_for"
        yield doc.at(
            ("execute", present),
            "retry-period",
            f"{present} needs {missing}: the retry window is a number and a unit (e.g. 2 weeks)",
            key=True,
        )


@rule
def audience(ex: Execution, doc: Document, env: Environment, now: datetime) -> Iterable[Finding]:
    if ex.audience is not None or env.guards.allow_segment_sends:
        return
    if ex.body.get("broadcast") == 1:
        who = "broadcast: 1 sends it to every user of the project"
    elif "conditions" in ex.body:
        who = "conditions pick the recipients: nobody can count them here"
    else:
        who = "no target or target_with_params: the campaign's own segment would receive it"
    yield doc.at(
        ("execute",),
        "no-audience",
        f"{who}; set guards.allow_segment_sends in the environment if that is meant",
        key=True,
    )


@rule
def max_targets(ex: Execution, doc: Document, env: Environment, now: datetime) -> Iterable[Finding]:
    limit = env.guards.max_targets
    if limit is not None and ex.audience is None and not env.guards.allow_segment_sends:
        yield doc.at(
            ("execute",),
            "max-targets",
            f"a send without explicit recipients cannot be checked against guards.max_targets"
            f" ({limit}) of environment {ex.environment!r}: list the recipients, or set"
            " guards.allow_segment_sends",
            key=True,
        )
    if limit is not None and ex.audience is not None and ex.audience > limit:
        field_name = "target_with_params" if "target_with_params" in ex.body else "target"
        yield doc.at(
            ("execute", field_name),
            "max-targets",
            f"{ex.audience} recipients exceed guards.max_targets ({limit}) of environment"
            f" {ex.environment!r}: split the execution or raise the guard",
            key=True,
        )


@rule
def time_past(ex: Execution, doc: Document, env: Environment, now: datetime) -> Iterable[Finding]:
    scheduled = ex.scheduled_at()
    if scheduled is not None and scheduled < now:
        yield doc.at(
            ("execute", "time"),
            "time-past",
            f"time {ex.body['time']} is in the past: a send would be blocked; move it"
            " (plan blocks it; an execution already applied keeps its time)",
        )


def duplicate_external_ids(
    executions: list[Execution], documents: dict[str, Document]
) -> list[Finding]:
    """Executions of one environment that share params.external_message_id."""
    seen: dict[str, Execution] = {}
    found = []
    for ex in executions:
        params = ex.body.get("params")
        value = params.get("external_message_id") if isinstance(params, dict) else None
        if value is None:
            continue
        key = str(value)
        if key in seen:
            first = seen[key]
            found.append(
                documents[ex.name].at(
                    ("execute", "params", "external_message_id"),
                    "duplicate-external-message-id",
                    f"external_message_id {key!r} is also used by {first.name!r}"
                    f" ({first.path}:{first.line}) in environment {ex.environment!r};"
                    " webhooks could not tell the two apart",
                )
            )
        else:
            seen[key] = ex
    return found


@dataclass
class CheckResult:
    """Findings of a run, and the executions that rendered, per environment."""

    findings: list[Finding] = field(default_factory=list)
    executions: dict[str, list[Execution]] = field(default_factory=dict)
    sources: list[SpecSource] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]


def check(
    project: Project,
    environments: Iterable[str],
    overrides: Overrides,
    now: datetime,
    files: Iterable[Path] | None = None,
) -> CheckResult:
    """Load, render and check every spec for each environment."""
    environments = list(environments)
    spec_files = list(files) if files is not None else project.spec_files
    sources, findings = load_specs(spec_files, project.config.environments)
    documents = {s.name: s.document for s in sources}
    result = CheckResult(sources=sources)
    unique: set[Finding] = {*findings, *project.warnings}
    for name in environments:
        env = project.environment(name)
        layer = project.var_layer(name, overrides)
        unique.update(layer.findings)
        rendered: list[Execution] = []
        for source in sources:
            if not source.applies_to(name):
                continue
            execution, problems = render_execution(source, name, layer.values)
            unique.update(problems)
            if execution is None:
                continue
            rendered.append(execution)
            for check_rule in RULE_CHECKS:
                unique.update(check_rule(execution, source.document, env, now))
        unique.update(duplicate_external_ids(rendered, documents))
        result.executions[name] = rendered
    result.findings = sorted(unique)
    return result
